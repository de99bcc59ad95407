// Diffusion schedulers (samplers) with the semantics and float32 rounding of diffusers v0.24:
// DDIMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler,
// DPMSolverMultistepScheduler (DPM++ 2M, optional Karras sigmas) and PNDMScheduler (PLMS).
//
// A scheduler is built like `<Class>.from_config(scheduler_config.json, **overrides)`: options the
// config does not set take that class's own defaults (e.g. timestep_spacing "leading" for DDIM/PNDM
// but "linspace" for Euler/DPM), keys listed in the config's "_use_default_values" count as unset.
//
// Usage (txt2img): set_timesteps(n); x = noise * init_noise_sigma(); for each call i in
// [0, timesteps().size()): eps = unet(scale_model_input(x, i), timesteps()[i]); x = step(eps, i, x,
// noise_or_null). PNDM makes n + 1 calls for n steps (it repeats its second timestep).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sdpal {

enum class PredictionType { Epsilon, VPrediction, Sample };
// "epsilon" | "v_prediction" | "sample"; throws sdpal::Error otherwise.
PredictionType parse_prediction_type(const std::string& s);
const char* prediction_type_name(PredictionType p);

struct SchedulerOptions {
  // "ddim", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_sde" or "pndm".
  std::string name;
  // true forces use_karras_sigmas (euler, dpmpp_*); false keeps the config's value.
  bool karras = false;
  std::optional<PredictionType> prediction_type;  // overrides the config's prediction_type
  float eta = 0.f;                                // DDIM only: 0 = deterministic
  // Further from_config keyword overrides, e.g. {"timestep_spacing": "trailing"}; applied after
  // the sampler's own ones (dpmpp_2m: algorithm_type dpmsolver++, solver_order 2; pndm:
  // skip_prk_steps true) and before karras / prediction_type.
  nlohmann::json config_overrides = nlohmann::json::object();
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // Builds the schedule for `num_inference_steps` steps and resets the multistep state.
  virtual void set_timesteps(int num_inference_steps) = 0;
  // Timesteps of the model calls, in order (PNDM: steps + 1 for steps > 1), as diffusers has them
  // (integers for DDIM/PNDM/DPM, float32 values for Euler). PNDM repeats its second timestep.
  const std::vector<double>& timesteps() const { return timesteps_; }
  // The sigma table (timesteps().size() + 1 entries) for Euler/DPM; empty for DDIM/PNDM.
  const std::vector<double>& sigmas() const { return sigmas_; }
  int num_calls() const { return static_cast<int>(timesteps_.size()); }

  // Standard deviation of the initial txt2img noise (latents = N(0,1) * init_noise_sigma()).
  virtual float init_noise_sigma() const { return 1.f; }
  // The UNet input for call `call_index`: x / sqrt(sigma^2 + 1) for Euler-type, x otherwise.
  virtual Tensor scale_model_input(const Tensor& x, int call_index) const;
  // One update with the (guided) model output of call `call_index`. `noise` is a fresh N(0,1)
  // tensor of the sample's shape when needs_noise() (ancestral / eta > 0 / SDE), else nullptr.
  // Multistep schedulers (DPM, PNDM) keep history: calls must follow the schedule in order.
  virtual Tensor step(const Tensor& model_output, int call_index, const Tensor& sample,
                      const Tensor* noise) = 0;
  virtual bool needs_noise() const { return false; }

  // img2img (StableDiffusionImg2ImgPipeline): sets the timesteps for `num_inference_steps`, keeps
  // the last int(steps * strength) steps and returns the first call index to run. `strength` is
  // read as the decimal it prints as (0.3f -> 0.3), as Python would see it.
  virtual int img2img_start(int num_inference_steps, float strength);
  // Clean latents noised to the timestep of call `call_index` (diffusers' add_noise).
  virtual Tensor add_noise(const Tensor& original, const Tensor& noise, int call_index) const = 0;

  PredictionType prediction_type() const { return prediction_type_; }
  const std::string& name() const { return name_; }

 protected:
  Scheduler(std::string name, PredictionType p) : name_(std::move(name)), prediction_type_(p) {}
  // Called when a run starts at `call_index` (0 after set_timesteps, t_start for img2img).
  virtual void start_at(int call_index) { (void)call_index; }
  void check_call_index(int call_index, const char* what) const;

  std::vector<double> timesteps_, sigmas_;

 private:
  std::string name_;
  PredictionType prediction_type_;
};

// Builds the scheduler `opt.name` from a diffusers scheduler_config.json (any scheduler class's
// config works, as with from_config). Throws sdpal::Error for unknown samplers, unknown or
// unsupported options, and values of the wrong type.
std::unique_ptr<Scheduler> make_scheduler(const SchedulerOptions& opt,
                                          const nlohmann::json& scheduler_config);

// Reads a scheduler_config.json. Python writes -Infinity / Infinity / NaN (e.g. DPM's
// lambda_min_clipped), which is not JSON; they are read as the strings "-Infinity" etc., which
// the schedulers accept wherever a number is expected.
nlohmann::json load_scheduler_config(const std::string& path);

}  // namespace sdpal
