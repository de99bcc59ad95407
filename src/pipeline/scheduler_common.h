// Shared pieces of the scheduler implementations (internal to src/pipeline/scheduler_*.cpp):
// the effective config, the training noise schedule, and numpy/torch emulations that make the
// sigma and timestep tables come out bit-identical to diffusers v0.24.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/scheduler.h"

namespace sdpal::sched {

// The config one scheduler class sees after `<Class>.from_config(base, **overrides)`: private
// keys ("_...") and keys listed in base["_use_default_values"] are dropped, overrides win. Getters
// take the class default for keys that are absent or null.
class SchedulerConfig {
 public:
  SchedulerConfig(const nlohmann::json& base, const nlohmann::json& overrides,
                  std::string class_name);
  const std::string& class_name() const { return class_name_; }

  double number(const std::string& key, double class_default) const;
  int64_t integer(const std::string& key, int64_t class_default) const;
  bool boolean(const std::string& key, bool class_default) const;
  std::string string(const std::string& key, const std::string& class_default) const;
  std::optional<double> optional_number(const std::string& key) const;
  std::optional<std::string> optional_string(const std::string& key) const;
  std::optional<std::vector<double>> optional_number_list(const std::string& key) const;
  PredictionType prediction_type() const;  // class default "epsilon" for every class here

  // Throws "<Class>: <message>".
  [[noreturn]] void fail(const std::string& message) const;

 private:
  const nlohmann::json* find(const std::string& key) const;  // nullptr when absent or null
  nlohmann::json values_;
  std::string class_name_;
};

// The training noise schedule, float32 as diffusers builds it with torch.
struct NoiseSchedule {
  int num_train_timesteps = 0;
  std::vector<float> betas, alphas_cumprod;
};
// beta_schedule linear / scaled_linear / squaredcos_cap_v2 or trained_betas; the common class
// defaults (1000 steps, betas 0.0001..0.02 linear) apply.
NoiseSchedule make_noise_schedule(const SchedulerConfig& cfg, bool rescale_zero_terminal_snr);
// sqrt((1 - alphas_cumprod) / alphas_cumprod) in float32, indexed by training timestep.
std::vector<float> training_sigmas(const std::vector<float>& alphas_cumprod);
// np.log of the float32 sigma table (stays float32).
std::vector<float> log_of(const std::vector<float>& v);

// torch.linspace(start, end, steps, dtype=float32) as torch 1.13 computes it on x86 CPUs.
std::vector<float> torch_linspace_f32(double start, double end, int64_t steps);
// numpy float64 helpers with numpy's exact arithmetic.
std::vector<double> np_linspace(double start, double stop, int64_t num);
std::vector<double> np_arange(double start, double stop, double step);
double np_round(double x);  // round half to even
// np.interp(x, arange(len(table)), table) for each x.
std::vector<double> np_interp_table(const std::vector<double>& x, const std::vector<float>& table);
// diffusers' _convert_to_karras (rho 7) from sigma_max down to sigma_min.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int num_inference_steps);
// diffusers' _sigma_to_t: fractional training timestep of `sigma` in the log-sigma table.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);

// Index that diffusers' _init_step_index picks for timestep `t` (the second match when `t`
// repeats, `fallback` when absent).
int diffusers_step_index(const std::vector<double>& timesteps, double t, int fallback);
// First index of `t` (diffusers' add_noise lookup).
int first_index_of(const std::vector<double>& timesteps, double t, const std::string& who);

// "linspace" | "leading" | "trailing", else throws.
std::string timestep_spacing(const SchedulerConfig& cfg, const std::string& class_default);
void check_num_inference_steps(int n, int num_train_timesteps, const std::string& who);
void check_same_shape(const Tensor& a, const Tensor& b, const std::string& what);

std::unique_ptr<Scheduler> make_ddim(const SchedulerConfig& cfg, float eta);
std::unique_ptr<Scheduler> make_euler(const SchedulerConfig& cfg, bool ancestral);
std::unique_ptr<Scheduler> make_dpm_multistep(const SchedulerConfig& cfg, const std::string& name);
std::unique_ptr<Scheduler> make_pndm(const SchedulerConfig& cfg);

}  // namespace sdpal::sched
