// EulerDiscreteScheduler and EulerAncestralDiscreteScheduler (diffusers v0.24). Timesteps are
// float32 values, sigmas are interpolated in float64 (np.interp) and stored as float32; the step
// arithmetic is float32 in diffusers' operation order.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "pipeline/scheduler_common.h"

// Last: float32 arithmetic below rounds op by op like torch (no FMA contraction).
#include "pipeline/scheduler_strict_fp.h"

namespace sdpal::sched {
namespace {

class EulerScheduler final : public Scheduler {
 public:
  EulerScheduler(const SchedulerConfig& cfg, bool ancestral)
      : Scheduler(ancestral ? "euler_a" : "euler", cfg.prediction_type()),
        ancestral_(ancestral),
        who_(cfg.class_name()),
        ns_(make_noise_schedule(cfg, false)),
        train_sigmas_(training_sigmas(ns_.alphas_cumprod)),
        spacing_(timestep_spacing(cfg, "linspace")),
        steps_offset_(cfg.integer("steps_offset", 0)) {
    if (ancestral) {
      if (prediction_type() == PredictionType::Sample)
        cfg.fail("prediction_type 'sample' is not implemented for Euler ancestral");
      return;
    }
    karras_ = cfg.boolean("use_karras_sigmas", false);
    const std::string interpolation = cfg.string("interpolation_type", "linear");
    if (interpolation != "linear")
      cfg.fail("interpolation_type '" + interpolation + "' is not supported (only 'linear')");
    const std::string timestep_type = cfg.string("timestep_type", "discrete");
    if (timestep_type != "discrete" && timestep_type != "continuous")
      cfg.fail("unknown timestep_type '" + timestep_type + "' (expected discrete or continuous)");
    continuous_timesteps_ =
        timestep_type == "continuous" && prediction_type() == PredictionType::VPrediction;
    sigma_min_ = cfg.optional_number("sigma_min");
    sigma_max_ = cfg.optional_number("sigma_max");
  }

  void set_timesteps(int n) override {
    const int train = ns_.num_train_timesteps;
    check_num_inference_steps(n, train, who_);
    std::vector<double> t;  // float32 values
    if (spacing_ == "linspace") {
      for (double v : np_linspace(0, train - 1, n)) t.push_back(static_cast<float>(v));
      std::reverse(t.begin(), t.end());
    } else if (spacing_ == "leading") {
      const int ratio = train / n;
      for (int i = n - 1; i >= 0; --i)
        t.push_back(static_cast<float>(i * ratio) + static_cast<float>(steps_offset_));
    } else {
      for (double v : np_arange(train, 0, -static_cast<double>(train) / n))
        t.push_back(static_cast<float>(np_round(v)) - 1.0f);
    }

    std::vector<double> sig = np_interp_table(t, train_sigmas_);
    if (karras_) {
      sig = karras_sigmas(sigma_min_ ? *sigma_min_ : sig.back(),
                          sigma_max_ ? *sigma_max_ : sig.front(), n);
      const std::vector<float> log_sigmas = log_of(train_sigmas_);
      t.clear();
      for (double s : sig) t.push_back(static_cast<float>(sigma_to_t(s, log_sigmas)));
    }
    sigmas_f32_.clear();
    for (double s : sig) sigmas_f32_.push_back(static_cast<float>(s));
    if (continuous_timesteps_)
      for (size_t i = 0; i < t.size(); ++i) t[i] = 0.25f * std::log(sigmas_f32_[i]);
    sigmas_f32_.push_back(0.0f);

    timesteps_ = std::move(t);
    sigmas_.assign(sigmas_f32_.begin(), sigmas_f32_.end());
    start_at(0);
  }

  float init_noise_sigma() const override {
    if (sigmas_f32_.empty()) fail(who_ + ": call set_timesteps before init_noise_sigma");
    const float max_sigma = *std::max_element(sigmas_f32_.begin(), sigmas_f32_.end());
    if (spacing_ == "linspace" || spacing_ == "trailing") return max_sigma;
    return std::sqrt(max_sigma * max_sigma + 1.0f);
  }

  Tensor scale_model_input(const Tensor& x, int call_index) const override {
    const float sigma = sigmas_f32_[sigma_index(call_index)];
    const float denom = std::sqrt(sigma * sigma + 1.0f);
    return elementwise([&](float v) { return v / denom; }, x);
  }

  bool needs_noise() const override { return ancestral_; }

  Tensor step(const Tensor& model_output, int call_index, const Tensor& sample,
              const Tensor* noise) override {
    check_same_shape(model_output, sample, who_ + " step");
    const int k = sigma_index(call_index);
    const float sigma = sigmas_f32_[k], sigma_next = sigmas_f32_[k + 1];
    // Euler's sigma_hat = sigma * (gamma + 1) with gamma = 0 (no churn): sigma itself.
    Tensor x0 = denoised(model_output, sample, sigma);
    if (!ancestral_) {
      const float dt = sigma_next - sigma;
      return elementwise([&](float s, float x) { return s + ((s - x) / sigma) * dt; }, sample, x0);
    }
    const float sigma_from = sigma, sigma_to = sigma_next;
    const float sigma_up =
        std::sqrt(sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to) /
                  (sigma_from * sigma_from));
    const float sigma_down = std::sqrt(sigma_to * sigma_to - sigma_up * sigma_up);
    const float dt = sigma_down - sigma;
    Tensor prev =
        elementwise([&](float s, float x) { return s + ((s - x) / sigma) * dt; }, sample, x0);
    if (!noise) {
      if (sigma_up != 0.0f) fail("Euler ancestral step needs a noise tensor");
      return prev;
    }
    return elementwise([&](float p, float z) { return p + z * sigma_up; }, prev, *noise);
  }

  Tensor add_noise(const Tensor& original, const Tensor& noise, int call_index) const override {
    check_call_index(call_index, "Euler add_noise");
    const float sigma = sigmas_f32_[first_index_of(timesteps_, timesteps_[call_index], who_)];
    return elementwise([&](float x, float z) { return x + z * sigma; }, original, noise);
  }

 protected:
  void start_at(int call_index) override {
    index_shift_ =
        diffusers_step_index(timesteps_, timesteps_[call_index], call_index) - call_index;
  }

 private:
  // diffusers counts its own step index from the first timestep it sees (the second match when
  // that timestep repeats); call i of the run uses sigma i + shift.
  int sigma_index(int call_index) const {
    check_call_index(call_index, who_.c_str());
    const int k = call_index + index_shift_;
    if (k + 1 >= static_cast<int>(sigmas_f32_.size()))
      fail(who_ + ": call " + std::to_string(call_index) + " runs past the end of the schedule");
    return k;
  }

  Tensor denoised(const Tensor& model_output, const Tensor& sample, float sigma) const {
    switch (prediction_type()) {
      case PredictionType::Epsilon:
        return elementwise([&](float m, float s) { return s - sigma * m; }, model_output, sample);
      case PredictionType::VPrediction: {
        const float c_out = -sigma / std::sqrt(sigma * sigma + 1.0f);
        const float c_skip_denom = sigma * sigma + 1.0f;
        return elementwise([&](float m, float s) { return m * c_out + s / c_skip_denom; },
                           model_output, sample);
      }
      case PredictionType::Sample:
        break;
    }
    return model_output;
  }

  bool ancestral_;
  std::string who_;
  NoiseSchedule ns_;
  std::vector<float> train_sigmas_;
  std::string spacing_;
  int64_t steps_offset_;
  bool karras_ = false, continuous_timesteps_ = false;
  std::optional<double> sigma_min_, sigma_max_;
  std::vector<float> sigmas_f32_;
  int index_shift_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_euler(const SchedulerConfig& cfg, bool ancestral) {
  return std::make_unique<EulerScheduler>(cfg, ancestral);
}

}  // namespace sdpal::sched
