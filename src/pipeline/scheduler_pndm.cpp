// PNDMScheduler with skip_prk_steps (PLMS, diffusers v0.24): linear multistep over the history of
// model outputs ("ets"). The second timestep is repeated: N steps take N + 1 model calls, the
// first two calls together make one second-order (Heun-like) step.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "pipeline/scheduler_common.h"

// Last: float32 arithmetic below rounds op by op like torch (no FMA contraction).
#include "pipeline/scheduler_strict_fp.h"

namespace sdpal::sched {
namespace {

class PndmScheduler final : public Scheduler {
 public:
  explicit PndmScheduler(const SchedulerConfig& cfg)
      : Scheduler("pndm", cfg.prediction_type()),
        ns_(make_noise_schedule(cfg, false)),
        spacing_(timestep_spacing(cfg, "leading")),
        steps_offset_(cfg.integer("steps_offset", 0)) {
    if (!cfg.boolean("skip_prk_steps", false))
      cfg.fail("only PLMS (skip_prk_steps true) is supported, not the Runge-Kutta warm-up");
    if (prediction_type() == PredictionType::Sample)
      cfg.fail("prediction_type 'sample' is not supported by PNDM");
    final_alpha_cumprod_ =
        cfg.boolean("set_alpha_to_one", false) ? 1.0f : ns_.alphas_cumprod.front();
  }

  void set_timesteps(int n) override {
    const int train = ns_.num_train_timesteps;
    check_num_inference_steps(n, train, "PNDMScheduler");
    num_inference_steps_ = n;
    std::vector<int64_t> base;  // ascending
    if (spacing_ == "linspace") {
      for (double v : np_linspace(0, train - 1, n))
        base.push_back(static_cast<int64_t>(np_round(v)));
    } else if (spacing_ == "leading") {
      const int ratio = train / n;
      for (int i = 0; i < n; ++i) base.push_back(static_cast<int64_t>(i) * ratio + steps_offset_);
    } else {
      for (double v : np_arange(train, 0, -static_cast<double>(train) / n))
        base.push_back(static_cast<int64_t>(np_round(v)) - 1);
      std::reverse(base.begin(), base.end());
    }
    // plms = concat(base[:-1], base[-2:-1], base[-1:])[::-1]: the second-largest repeats.
    std::vector<int64_t> plms(base.begin(), base.end() - 1);
    if (base.size() >= 2) plms.push_back(base[base.size() - 2]);
    plms.push_back(base.back());
    timesteps_.assign(plms.rbegin(), plms.rend());
    sigmas_.clear();
    start_at(0);
  }

  Tensor step(const Tensor& model_output, int call_index, const Tensor& sample,
              const Tensor* /*noise*/) override {
    check_call_index(call_index, "PNDM step");
    check_same_shape(model_output, sample, "PNDM step");
    if (call_index != next_call_)
      fail("pndm: step() calls must follow the schedule in order (expected call " +
           std::to_string(next_call_) + ", got " + std::to_string(call_index) + ")");
    const int ratio = ns_.num_train_timesteps / num_inference_steps_;
    int t = static_cast<int>(timesteps_[call_index]);
    int prev_t = t - ratio;
    if (counter_ != 1) {
      if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
      ets_.push_back(model_output);
    } else {
      // The repeated timestep: redo the first step from its start with averaged outputs.
      prev_t = t;
      t = t + ratio;
    }

    Tensor combined;
    const Tensor* x = &sample;
    const size_t n = ets_.size();
    if (n == 1 && counter_ == 0) {
      combined = model_output;
      cur_sample_ = sample;
    } else if (n == 1 && counter_ == 1) {
      combined =
          elementwise([](float m, float e) { return (m + e) / 2.0f; }, model_output, ets_[0]);
      held_sample_ = std::move(cur_sample_);
      cur_sample_ = Tensor();
      x = &held_sample_;
    } else if (n == 2) {
      combined =
          elementwise([](float e1, float e2) { return (3.0f * e1 - e2) / 2.0f; }, ets_[1], ets_[0]);
    } else if (n == 3) {
      combined = elementwise([](float e1, float e2,
                                float e3) { return (23.0f * e1 - 16.0f * e2 + 5.0f * e3) / 12.0f; },
                             ets_[2], ets_[1], ets_[0]);
    } else {
      const float c = static_cast<float>(1.0 / 24.0);
      combined = elementwise(
          [c](float e1, float e2, float e3, float e4) {
            return c * (55.0f * e1 - 59.0f * e2 + 37.0f * e3 - 9.0f * e4);
          },
          ets_[3], ets_[2], ets_[1], ets_[0]);
    }
    Tensor prev = previous_sample(*x, t, prev_t, combined);
    ++counter_;
    ++next_call_;
    return prev;
  }

  Tensor add_noise(const Tensor& original, const Tensor& noise, int call_index) const override {
    check_call_index(call_index, "PNDM add_noise");
    const float a = alpha_cumprod_at(static_cast<int>(timesteps_[call_index]));
    const float sqrt_a = std::sqrt(a), sqrt_one_minus_a = std::sqrt(1.0f - a);
    return elementwise([&](float v, float z) { return sqrt_a * v + sqrt_one_minus_a * z; },
                       original, noise);
  }

 protected:
  void start_at(int call_index) override {
    next_call_ = call_index;
    counter_ = 0;
    ets_.clear();
    cur_sample_ = held_sample_ = Tensor();
  }

 private:
  float alpha_cumprod_at(int t) const {
    if (t < 0 || t >= ns_.num_train_timesteps)
      fail("PNDM: timestep " + std::to_string(t) + " is outside the training schedule");
    return ns_.alphas_cumprod[t];
  }

  // diffusers' _get_prev_sample (formula (9) of the PNDM paper), float32.
  Tensor previous_sample(const Tensor& sample, int t, int prev_t,
                         const Tensor& model_output) const {
    const float alpha_prod_t = alpha_cumprod_at(t);
    const float alpha_prod_prev = prev_t >= 0 ? alpha_cumprod_at(prev_t) : final_alpha_cumprod_;
    const float beta_prod_t = 1.0f - alpha_prod_t;
    const float beta_prod_prev = 1.0f - alpha_prod_prev;
    Tensor eps;
    const Tensor* e = &model_output;
    if (prediction_type() == PredictionType::VPrediction) {
      const float sa = std::sqrt(alpha_prod_t), sb = std::sqrt(beta_prod_t);
      eps = elementwise([&](float m, float x) { return sa * m + sb * x; }, model_output, sample);
      e = &eps;
    }
    const float sample_coeff = std::sqrt(alpha_prod_prev / alpha_prod_t);
    const float denom = alpha_prod_t * std::sqrt(beta_prod_prev) +
                        std::sqrt(alpha_prod_t * beta_prod_t * alpha_prod_prev);
    const float diff = alpha_prod_prev - alpha_prod_t;
    return elementwise([&](float x, float m) { return sample_coeff * x - diff * m / denom; },
                       sample, *e);
  }

  NoiseSchedule ns_;
  std::string spacing_;
  int64_t steps_offset_;
  float final_alpha_cumprod_ = 1.f;
  int num_inference_steps_ = 0;
  int counter_ = 0, next_call_ = 0;
  std::vector<Tensor> ets_;  // model outputs, oldest first (at most 4)
  Tensor cur_sample_, held_sample_;
};

}  // namespace

std::unique_ptr<Scheduler> make_pndm(const SchedulerConfig& cfg) {
  return std::make_unique<PndmScheduler>(cfg);
}

}  // namespace sdpal::sched
