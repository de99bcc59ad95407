#include "compression/quality.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "pipeline/generate.h"

namespace sdpal {

double psnr(const Tensor& reference, const Tensor& test) {
  SDPAL_CHECK(
      reference.shape() == test.shape(),
      "psnr: shapes differ, " + shape_str(reference.shape()) + " vs " + shape_str(test.shape()));
  double peak = 0, se = 0;
  for (int64_t i = 0; i < test.numel(); ++i) {
    peak = std::max(peak, std::fabs(double(test[i])));
    const double d = double(reference[i]) - test[i];
    se += d * d;
  }
  if (se == 0) return std::numeric_limits<double>::infinity();
  return 20.0 * std::log10(peak / std::sqrt(se / test.numel()));
}

const std::vector<std::string>& default_compare_prompts() {
  static const std::vector<std::string> p = {
      "a photo of an astronaut riding a horse on mars",
      "a cozy wooden cabin in a snowy forest at dusk, digital art",
      "a bowl of fruit on a kitchen table, oil painting",
      "portrait of an old fisherman with a grey beard, studio lighting",
  };
  return p;
}

CompareResult compare_models(const StableDiffusion& reference, const StableDiffusion& test,
                             const CompareOptions& opt) {
  const auto& prompts = opt.prompts.empty() ? default_compare_prompts() : opt.prompts;
  SDPAL_CHECK(!opt.seeds.empty(), "compare: no seeds");
  CompareResult r;
  for (const auto& prompt : prompts)
    for (uint64_t seed : opt.seeds) {
      GenerateParams p;
      p.prompts = {prompt};
      p.steps = opt.steps;
      p.cfg_scale = opt.cfg_scale;
      p.sampler = opt.sampler;
      p.seed = seed;
      p.width = opt.width > 0 ? opt.width : default_image_size(reference);
      p.height = opt.height > 0 ? opt.height : default_image_size(reference);
      GenerateResult a = generate(reference, p);
      GenerateResult b = generate(test, p);
      CompareRun run{prompt, seed, psnr(a.latents, b.latents), psnr(a.image01, b.image01)};
      r.runs.push_back(run);
      r.mean_psnr_latents += run.psnr_latents / double(prompts.size() * opt.seeds.size());
      r.mean_psnr_image += run.psnr_image / double(prompts.size() * opt.seeds.size());
    }
  return r;
}

}  // namespace sdpal
