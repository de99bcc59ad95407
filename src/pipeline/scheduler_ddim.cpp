// DDIMScheduler (diffusers v0.24): deterministic for eta = 0, with the given variance noise for
// eta > 0. Scalar coefficients are float32 like diffusers' 0-d torch tensors.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "pipeline/scheduler_common.h"

// Last: float32 arithmetic below rounds op by op like torch (no FMA contraction).
#include "pipeline/scheduler_strict_fp.h"

namespace sdpal::sched {
namespace {

class DdimScheduler final : public Scheduler {
 public:
  DdimScheduler(const SchedulerConfig& cfg, float eta)
      : Scheduler("ddim", cfg.prediction_type()),
        ns_(make_noise_schedule(cfg, cfg.boolean("rescale_betas_zero_snr", false))),
        spacing_(timestep_spacing(cfg, "leading")),
        steps_offset_(cfg.integer("steps_offset", 0)),
        clip_sample_(cfg.boolean("clip_sample", true)),
        clip_range_(static_cast<float>(cfg.number("clip_sample_range", 1.0))),
        eta_(eta) {
    if (cfg.boolean("thresholding", false))
      cfg.fail("dynamic thresholding is not supported (it is meant for pixel-space models)");
    if (!(eta >= 0)) cfg.fail("eta must be >= 0, got " + std::to_string(eta));
    final_alpha_cumprod_ =
        cfg.boolean("set_alpha_to_one", true) ? 1.0f : ns_.alphas_cumprod.front();
  }

  void set_timesteps(int n) override {
    const int train = ns_.num_train_timesteps;
    check_num_inference_steps(n, train, "DDIMScheduler");
    num_inference_steps_ = n;
    std::vector<double> t;
    if (spacing_ == "linspace") {
      for (double v : np_linspace(0, train - 1, n)) t.push_back(np_round(v));
      std::reverse(t.begin(), t.end());
    } else if (spacing_ == "leading") {
      const int ratio = train / n;
      for (int i = n - 1; i >= 0; --i) t.push_back(static_cast<double>(i * ratio + steps_offset_));
    } else {
      for (double v : np_arange(train, 0, -static_cast<double>(train) / n))
        t.push_back(static_cast<double>(static_cast<int64_t>(np_round(v)) - 1));
    }
    timesteps_ = std::move(t);
    sigmas_.clear();
  }

  bool needs_noise() const override { return eta_ > 0; }

  Tensor step(const Tensor& model_output, int call_index, const Tensor& sample,
              const Tensor* noise) override {
    check_call_index(call_index, "DDIM step");
    check_same_shape(model_output, sample, "DDIM step");
    const int t = static_cast<int>(timesteps_[call_index]);
    const int prev_t = t - ns_.num_train_timesteps / num_inference_steps_;
    const float alpha_prod_t = alpha_cumprod_at(t);
    const float alpha_prod_prev = prev_t >= 0 ? alpha_cumprod_at(prev_t) : final_alpha_cumprod_;
    const float beta_prod_t = 1.0f - alpha_prod_t;
    const float sqrt_alpha = std::sqrt(alpha_prod_t), sqrt_beta = std::sqrt(beta_prod_t);

    // Predicted x0 and epsilon from the model output.
    Tensor x0, eps;
    switch (prediction_type()) {
      case PredictionType::Epsilon:
        x0 = elementwise([&](float m, float s) { return (s - sqrt_beta * m) / sqrt_alpha; },
                         model_output, sample);
        eps = model_output;
        break;
      case PredictionType::Sample:
        x0 = model_output;
        eps = elementwise([&](float x, float s) { return (s - sqrt_alpha * x) / sqrt_beta; }, x0,
                          sample);
        break;
      case PredictionType::VPrediction:
        x0 = elementwise([&](float m, float s) { return sqrt_alpha * s - sqrt_beta * m; },
                         model_output, sample);
        eps = elementwise([&](float m, float s) { return sqrt_alpha * m + sqrt_beta * s; },
                          model_output, sample);
        break;
    }
    if (clip_sample_) {
      const float r = clip_range_;
      x0 = elementwise([&](float x) { return std::min(std::max(x, -r), r); }, x0);
    }

    const float beta_prod_prev = 1.0f - alpha_prod_prev;
    const float variance = (beta_prod_prev / beta_prod_t) * (1.0f - alpha_prod_t / alpha_prod_prev);
    const float std_dev = eta_ * std::sqrt(variance);
    const float direction_coef = std::sqrt(1.0f - alpha_prod_prev - std_dev * std_dev);
    const float sqrt_alpha_prev = std::sqrt(alpha_prod_prev);
    Tensor prev = elementwise(
        [&](float x, float e) { return sqrt_alpha_prev * x + direction_coef * e; }, x0, eps);
    if (eta_ > 0) {
      if (!noise) fail("DDIM step with eta > 0 needs a noise tensor");
      prev = elementwise([&](float p, float z) { return p + std_dev * z; }, prev, *noise);
    }
    return prev;
  }

  Tensor add_noise(const Tensor& original, const Tensor& noise, int call_index) const override {
    check_call_index(call_index, "DDIM add_noise");
    const float a = alpha_cumprod_at(static_cast<int>(timesteps_[call_index]));
    const float sqrt_a = std::sqrt(a), sqrt_one_minus_a = std::sqrt(1.0f - a);
    return elementwise([&](float x, float z) { return sqrt_a * x + sqrt_one_minus_a * z; },
                       original, noise);
  }

 private:
  float alpha_cumprod_at(int t) const {
    if (t < 0 || t >= ns_.num_train_timesteps)
      fail("DDIM: timestep " + std::to_string(t) + " is outside the training schedule");
    return ns_.alphas_cumprod[t];
  }

  NoiseSchedule ns_;
  std::string spacing_;
  int64_t steps_offset_;
  bool clip_sample_;
  float clip_range_;
  float eta_;
  float final_alpha_cumprod_ = 1.f;
  int num_inference_steps_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_ddim(const SchedulerConfig& cfg, float eta) {
  return std::make_unique<DdimScheduler>(cfg, eta);
}

}  // namespace sdpal::sched
