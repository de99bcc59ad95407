#include "support/golden_params.h"

#include <stdexcept>

namespace sdpal::test {

std::string sampler_of(const Case& c, bool* karras) {
  const std::string cls = c.params()["scheduler_class"];
  const auto& ov = c.params()["scheduler_overrides"];
  *karras = ov.contains("use_karras_sigmas") && ov["use_karras_sigmas"].get<bool>();
  if (cls == "DDIMScheduler") return "ddim";
  if (cls == "EulerDiscreteScheduler") return "euler";
  if (cls == "EulerAncestralDiscreteScheduler") return "euler_a";
  if (cls == "DPMSolverMultistepScheduler") return "dpmpp_2m";
  if (cls == "PNDMScheduler") return "pndm";
  throw std::runtime_error("unknown scheduler class " + cls);
}

GenerateParams golden_generate_params(const Case& c) {
  GenerateParams p;
  for (const auto& s : c.params()["prompts"]) p.prompts.push_back(s);
  if (!c.params()["negative_prompt"].is_null())
    p.negative_prompts = {c.params()["negative_prompt"].get<std::string>()};
  p.width = c.params()["width"];
  p.height = c.params()["height"];
  p.steps = c.params()["num_inference_steps"];
  p.cfg_scale = c.params()["guidance_scale"].get<float>();
  p.sampler = sampler_of(c, &p.karras);
  p.timestep_spacing = c.params()["scheduler_config"]["timestep_spacing"];
  p.init_noise = c.in("noise");
  if (c.file->has("in.step_noise")) p.step_noise = c.in("step_noise");
  return p;
}

}  // namespace sdpal::test
