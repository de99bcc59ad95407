#include "compression/calibrate.h"

#include "core/error.h"
#include "pipeline/generate.h"

namespace sdpal {

const std::vector<std::string>& default_calibration_prompts() {
  static const std::vector<std::string> p = {
      "a photo of an astronaut riding a horse on mars",
      "a watercolor painting of a lighthouse on a rocky coast, soft light",
  };
  return p;
}

Int8Calibration calibrate_int8(const StableDiffusion& m, const CalibrateOptions& o_in) {
  CalibrateOptions o = o_in;
  if (o.prompts.empty()) o.prompts = default_calibration_prompts();
  if (o.width == 0) o.width = default_image_size(m);
  if (o.height == 0) o.height = default_image_size(m);
  SDPAL_CHECK(o.steps >= 1 && o.steps <= 1000, "calibrate: --steps must be from 1 to 1000");
  SDPAL_CHECK(o.min_work_share >= 0 && o.min_work_share <= 1,
              "calibrate: --min-work-share must be from 0 to 1");
  SDPAL_CHECK(o.width > 0 && o.height > 0 && o.width % 8 == 0 && o.height % 8 == 0,
              "calibrate: width and height must be positive multiples of 8");

  const bool cfg = o.cfg_scale > 1.f;
  const Tensor uncond = encode_prompts(m, {""}, 1, nullptr);
  std::vector<std::string> layer_order;
  for (const WeightLayer* l : m.unet->weight_layers()) layer_order.push_back(l->name);

  RangeObserver observer;
  int calls = 0;
  for (size_t i = 0; i < o.prompts.size(); ++i) {
    const Tensor cond = encode_prompts(m, {o.prompts[i]}, 1, nullptr);
    GenerateParams p;
    p.prompts = {o.prompts[i]};
    p.seed = o.seed + i;
    p.width = o.width;
    p.height = o.height;
    p.steps = o.steps;
    p.cfg_scale = o.cfg_scale;
    p.sampler = o.sampler;
    int n = 0;
    {
      ScopedInputObserver scope(m.unet->weight_layers(), &observer);
      denoise_latents(m, *m.unet, cfg ? concat0({&uncond, &cond}) : cond, p, &n);
    }
    calls += n;
    if (o.progress) o.progress(static_cast<int>(i + 1), static_cast<int>(o.prompts.size()));
  }

  Int8Calibration c;
  c.model = m.name;
  c.settings["prompts"] = o.prompts;
  c.settings["steps"] = o.steps;
  c.settings["width"] = o.width;
  c.settings["height"] = o.height;
  c.settings["seed"] = o.seed;
  c.settings["cfg_scale"] = o.cfg_scale;
  c.settings["sampler"] = o.sampler;
  c.settings["unet_calls"] = calls;
  c.layers = observer.ranges(layer_order, calls);
  double total = 0;
  for (const auto& l : c.layers) total += l.gflops;
  // conv_in and conv_out (on the latents themselves) were among the most sensitive layers in every
  // model measured, and do little work: fp32 by default too.
  for (auto& l : c.layers)
    l.int8 = l.gflops >= o.min_work_share * total && l.name != "conv_in" && l.name != "conv_out";
  return c;
}

}  // namespace sdpal
