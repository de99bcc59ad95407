// Scheduler base behaviour (img2img start, call checks), the factory that maps sampler names to
// diffusers classes, and reading scheduler_config.json.
#include "pipeline/scheduler.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "core/json_file.h"
#include "core/limits.h"
#include "pipeline/scheduler_common.h"

namespace sdpal {

PredictionType parse_prediction_type(const std::string& s) {
  if (s == "epsilon") return PredictionType::Epsilon;
  if (s == "v_prediction") return PredictionType::VPrediction;
  if (s == "sample") return PredictionType::Sample;
  fail("unknown prediction type '" + s + "' (expected epsilon, v_prediction or sample)");
}

const char* prediction_type_name(PredictionType p) {
  switch (p) {
    case PredictionType::Epsilon:
      return "epsilon";
    case PredictionType::VPrediction:
      return "v_prediction";
    case PredictionType::Sample:
      return "sample";
  }
  return "?";
}

// ---- Scheduler --------------------------------------------------------------------------------

Tensor Scheduler::scale_model_input(const Tensor& x, int call_index) const {
  check_call_index(call_index, "scale_model_input");
  return x;
}

void Scheduler::check_call_index(int call_index, const char* what) const {
  if (timesteps_.empty()) fail(name_ + ": " + what + " before set_timesteps");
  if (call_index < 0 || call_index >= num_calls())
    fail(name_ + ": " + what + ": call index " + std::to_string(call_index) +
         " is outside the schedule of " + std::to_string(num_calls()) + " calls");
}

namespace {
// The decimal a float prints as, as a double: 0.3f -> 0.3 (what a Python caller would pass).
double as_typed_decimal(float v) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::strtod(std::string(buf, res.ptr).c_str(), nullptr);
}
}  // namespace

int Scheduler::img2img_start(int num_inference_steps, float strength_f) {
  const double strength = as_typed_decimal(strength_f);
  if (!(strength >= 0 && strength <= 1))
    fail(name_ + ": img2img strength must be in [0, 1], got " + std::to_string(strength_f));
  set_timesteps(num_inference_steps);
  // StableDiffusionImg2ImgPipeline.get_timesteps (scheduler.order is 1 for all of ours).
  const int init_timestep = std::min(
      static_cast<int>(static_cast<double>(num_inference_steps) * strength), num_inference_steps);
  const int t_start = std::max(num_inference_steps - init_timestep, 0);
  if (t_start >= num_calls())
    fail(name_ + ": img2img strength " + std::to_string(strength_f) + " with " +
         std::to_string(num_inference_steps) + " steps leaves no denoising step");
  start_at(t_start);
  return t_start;
}

// ---- factory ----------------------------------------------------------------------------------

std::unique_ptr<Scheduler> make_scheduler(const SchedulerOptions& opt,
                                          const nlohmann::json& scheduler_config) {
  using sched::SchedulerConfig;
  struct Sampler {
    const char* name;
    const char* diffusers_class;
    nlohmann::json implied;  // from_config overrides the sampler stands for
  };
  const Sampler samplers[] = {
      {"ddim", "DDIMScheduler", nlohmann::json::object()},
      {"euler", "EulerDiscreteScheduler", nlohmann::json::object()},
      {"euler_a", "EulerAncestralDiscreteScheduler", nlohmann::json::object()},
      {"dpmpp_2m",
       "DPMSolverMultistepScheduler",
       {{"algorithm_type", "dpmsolver++"}, {"solver_order", 2}}},
      {"dpmpp_2m_sde",
       "DPMSolverMultistepScheduler",
       {{"algorithm_type", "sde-dpmsolver++"}, {"solver_order", 2}}},
      {"pndm", "PNDMScheduler", {{"skip_prk_steps", true}}},
  };
  if (!scheduler_config.is_object())
    fail("scheduler config is not a JSON object: " + scheduler_config.dump().substr(0, 80));
  const Sampler* s = nullptr;
  std::string known;
  for (const Sampler& c : samplers) {
    if (opt.name == c.name) s = &c;
    known += (known.empty() ? "" : ", ") + std::string(c.name);
  }
  if (!s) fail("unknown sampler '" + opt.name + "' (expected one of " + known + ")");
  const std::string who = std::string(s->diffusers_class) + " (" + s->name + ")";

  nlohmann::json overrides = s->implied;
  if (!opt.config_overrides.is_null()) {
    if (!opt.config_overrides.is_object()) fail(who + ": config overrides must be a JSON object");
    for (auto it = opt.config_overrides.begin(); it != opt.config_overrides.end(); ++it)
      overrides[it.key()] = it.value();
  }
  const bool karras_capable = opt.name == "euler" || opt.name.rfind("dpmpp", 0) == 0;
  if (opt.karras) {
    if (!karras_capable) fail(who + ": Karras sigmas are only available for euler and dpmpp_*");
    overrides["use_karras_sigmas"] = true;
  }
  if (opt.prediction_type)
    overrides["prediction_type"] = prediction_type_name(*opt.prediction_type);
  if (opt.eta != 0.f && opt.name != "ddim")
    fail(who + ": eta applies only to the ddim sampler, got eta " + std::to_string(opt.eta));

  const SchedulerConfig cfg(scheduler_config, overrides, who);
  if (opt.name == "ddim") return sched::make_ddim(cfg, opt.eta);
  if (opt.name == "euler") return sched::make_euler(cfg, false);
  if (opt.name == "euler_a") return sched::make_euler(cfg, true);
  if (opt.name == "pndm") return sched::make_pndm(cfg);
  return sched::make_dpm_multistep(cfg, opt.name);
}

nlohmann::json load_scheduler_config(const std::string& path) {
  const std::string text = read_text_file(path, limits::kMaxJsonFileBytes, "scheduler config");
  const std::string json = quote_python_number_words(text);
  check_json_depth(json, "scheduler config " + path);
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail("scheduler config " + path + " is not valid JSON");
  if (!j.is_object()) fail("scheduler config " + path + " is not a JSON object");
  return j;
}

}  // namespace sdpal
