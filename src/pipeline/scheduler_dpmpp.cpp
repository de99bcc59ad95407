// DPMSolverMultistepScheduler (diffusers v0.24): DPM-Solver++ / DPM-Solver, orders 1-3, midpoint
// or heun, optional SDE variants, Karras or Lu lambdas, lower_order_final. Multistep state (the
// last `solver_order` converted model outputs) lives between step() calls.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "pipeline/scheduler_common.h"

// Last: float32 arithmetic below rounds op by op like torch (no FMA contraction).
#include "pipeline/scheduler_strict_fp.h"

namespace sdpal::sched {
namespace {

class DpmMultistepScheduler final : public Scheduler {
 public:
  DpmMultistepScheduler(const SchedulerConfig& cfg, const std::string& name)
      : Scheduler(name, cfg.prediction_type()),
        ns_(make_noise_schedule(cfg, false)),
        train_sigmas_(training_sigmas(ns_.alphas_cumprod)),
        spacing_(timestep_spacing(cfg, "linspace")),
        steps_offset_(cfg.integer("steps_offset", 0)),
        solver_order_(static_cast<int>(cfg.integer("solver_order", 2))),
        lower_order_final_(cfg.boolean("lower_order_final", true)),
        euler_at_final_(cfg.boolean("euler_at_final", false)),
        karras_(cfg.boolean("use_karras_sigmas", false)),
        lu_lambdas_(cfg.boolean("use_lu_lambdas", false)),
        lambda_min_clipped_(
            cfg.number("lambda_min_clipped", -std::numeric_limits<double>::infinity())),
        sigma_min_(cfg.optional_number("sigma_min")),
        sigma_max_(cfg.optional_number("sigma_max")) {
    std::string algorithm = cfg.string("algorithm_type", "dpmsolver++");
    if (algorithm == "deis") algorithm = "dpmsolver++";  // as diffusers re-registers it
    if (algorithm == "dpmsolver++")
      algorithm_ = Algorithm::DpmSolverPP;
    else if (algorithm == "dpmsolver")
      algorithm_ = Algorithm::DpmSolver;
    else if (algorithm == "sde-dpmsolver++")
      algorithm_ = Algorithm::SdeDpmSolverPP;
    else if (algorithm == "sde-dpmsolver")
      algorithm_ = Algorithm::SdeDpmSolver;
    else
      cfg.fail("unknown algorithm_type '" + algorithm + "'");
    const std::string solver = cfg.string("solver_type", "midpoint");
    if (solver == "heun")
      heun_ = true;
    else if (solver != "midpoint" && solver != "logrho" && solver != "bh1" && solver != "bh2")
      cfg.fail("unknown solver_type '" + solver + "' (expected midpoint or heun)");
    if (solver_order_ < 1 || solver_order_ > 3)
      cfg.fail("solver_order must be 1, 2 or 3, got " + std::to_string(solver_order_));
    if (solver_order_ == 3 && sde())
      cfg.fail("third-order updates are not defined for the SDE variants");
    if (cfg.boolean("thresholding", false))
      cfg.fail("dynamic thresholding is not supported (it is meant for pixel-space models)");
    if (auto v = cfg.optional_string("variance_type");
        v && (*v == "learned" || *v == "learned_range"))
      cfg.fail("variance_type '" + *v + "' (learned variance) is not supported");
    if (karras_ && lu_lambdas_) cfg.fail("use_karras_sigmas and use_lu_lambdas are exclusive");
    // Karras sigmas take powers of these: NaN timesteps otherwise.
    for (const auto& [key, v] :
         {std::pair{"sigma_min", sigma_min_}, std::pair{"sigma_max", sigma_max_}})
      if (v && !(std::isfinite(*v) && *v > 0))
        cfg.fail(std::string(key) + " must be a positive finite number, got " + std::to_string(*v));
  }

  void set_timesteps(int n) override {
    const int train = ns_.num_train_timesteps;
    check_num_inference_steps(n, train, "DPMSolverMultistepScheduler");
    const int last = train - clipped_lambda_count();
    std::vector<double> t;
    if (spacing_ == "linspace") {
      std::vector<double> v = np_linspace(0, last - 1, n + 1);
      for (int i = n; i >= 1; --i) t.push_back(np_round(v[i]));
    } else if (spacing_ == "leading") {
      const int ratio = last / (n + 1);
      for (int i = n; i >= 1; --i) t.push_back(static_cast<double>(i * ratio + steps_offset_));
    } else {
      for (double v : np_arange(last, 0, -static_cast<double>(train) / n))
        t.push_back(static_cast<double>(static_cast<int64_t>(np_round(v)) - 1));
    }

    std::vector<double> sig;
    if (karras_ || lu_lambdas_) {
      const std::vector<float> log_sigmas = log_of(train_sigmas_);
      if (karras_) {
        sig = karras_sigmas(sigma_min_ ? *sigma_min_ : train_sigmas_.front(),
                            sigma_max_ ? *sigma_max_ : train_sigmas_.back(), n);
      } else {
        // diffusers' _convert_to_lu over the (flipped) log-sigma table, rho = 1.
        const double lambda_min = log_sigmas.front(), lambda_max = log_sigmas.back();
        for (double r : np_linspace(0, 1, n))
          sig.push_back(std::exp(lambda_max + r * (lambda_min - lambda_max)));
      }
      t.clear();
      for (double s : sig) t.push_back(np_round(sigma_to_t(s, log_sigmas)));
      sig.push_back(sig.back());
    } else {
      sig = np_interp_table(t, train_sigmas_);
      const float a0 = ns_.alphas_cumprod.front();
      sig.push_back(std::sqrt((1.0f - a0) / a0));
    }
    sigmas_f32_.clear();
    for (double s : sig) sigmas_f32_.push_back(static_cast<float>(s));
    for (double& v : t) {
      // A NaN (or huge) timestep cannot be converted to an integer: refuse the schedule.
      if (!std::isfinite(v) || std::fabs(v) > 1e9)
        fail("DPMSolverMultistepScheduler: the scheduler config gives timestep " +
             std::to_string(v) + " (check its betas and sigma_min/sigma_max)");
      v = static_cast<double>(static_cast<int64_t>(v));  // int64 timesteps
    }
    timesteps_ = std::move(t);
    sigmas_.assign(sigmas_f32_.begin(), sigmas_f32_.end());
    start_at(0);
  }

  bool needs_noise() const override { return sde(); }

  Tensor step(const Tensor& model_output, int call_index, const Tensor& sample,
              const Tensor* noise) override {
    check_call_index(call_index, "DPM step");
    check_same_shape(model_output, sample, "DPM step");
    if (call_index != next_call_)
      fail(name() + ": step() calls must follow the schedule in order (expected call " +
           std::to_string(next_call_) + ", got " + std::to_string(call_index) + ")");
    if (sde() && !noise) fail(name() + ": the SDE solver needs a noise tensor in every step");
    const int k = call_index + index_shift_;  // diffusers' step_index
    const int len = num_calls();
    if (k + 1 >= static_cast<int>(sigmas_f32_.size()))
      fail(name() + ": call " + std::to_string(call_index) + " runs past the end of the schedule");
    const bool lower_order_final =
        k == len - 1 && (euler_at_final_ || (lower_order_final_ && len < 15));
    const bool lower_order_second = k == len - 2 && lower_order_final_ && len < 15;

    Tensor converted = convert_model_output(model_output, sample, k);
    for (int i = 0; i + 1 < solver_order_; ++i) history_[i] = std::move(history_[i + 1]);
    history_.back() = std::move(converted);

    Tensor prev;
    if (solver_order_ == 1 || lower_order_nums_ < 1 || lower_order_final)
      prev = first_order_update(sample, k, noise);
    else if (solver_order_ == 2 || lower_order_nums_ < 2 || lower_order_second)
      prev = second_order_update(sample, k, noise);
    else
      prev = third_order_update(sample, k);
    if (lower_order_nums_ < solver_order_) ++lower_order_nums_;
    ++next_call_;
    return prev;
  }

  Tensor add_noise(const Tensor& original, const Tensor& noise, int call_index) const override {
    check_call_index(call_index, "DPM add_noise");
    const float sigma =
        sigmas_f32_[first_index_of(timesteps_, timesteps_[call_index], "DPMSolverMultistep")];
    const AlphaSigma as = alpha_sigma(sigma);
    return elementwise([&](float x, float z) { return as.alpha * x + as.sigma * z; }, original,
                       noise);
  }

 protected:
  void start_at(int call_index) override {
    const int last = num_calls() - 1;
    index_shift_ = diffusers_step_index(timesteps_, timesteps_[call_index], last) - call_index;
    next_call_ = call_index;
    history_.assign(solver_order_, Tensor());
    lower_order_nums_ = 0;
  }

 private:
  enum class Algorithm { DpmSolverPP, DpmSolver, SdeDpmSolverPP, SdeDpmSolver };
  struct AlphaSigma {
    float alpha, sigma, lambda;
  };

  bool sde() const {
    return algorithm_ == Algorithm::SdeDpmSolverPP || algorithm_ == Algorithm::SdeDpmSolver;
  }
  bool data_prediction() const {
    return algorithm_ == Algorithm::DpmSolverPP || algorithm_ == Algorithm::SdeDpmSolverPP;
  }

  // diffusers' _sigma_to_alpha_sigma_t plus lambda = log(alpha) - log(sigma), in float32.
  static AlphaSigma alpha_sigma(float sigma) {
    const float alpha = 1.0f / std::sqrt(sigma * sigma + 1.0f);
    const float sigma_t = sigma * alpha;
    return {alpha, sigma_t, std::log(alpha) - std::log(sigma_t)};
  }

  // Number of training timesteps whose lambda is below lambda_min_clipped (searchsorted on the
  // flipped float32 lambda table).
  int clipped_lambda_count() const {
    const float limit = static_cast<float>(lambda_min_clipped_);
    const int n = ns_.num_train_timesteps;
    int count = 0;
    for (int i = n - 1; i >= 0; --i) {
      const float a = ns_.alphas_cumprod[i];
      const float lambda = std::log(std::sqrt(a)) - std::log(std::sqrt(1.0f - a));
      if (!(lambda < limit)) break;
      ++count;
    }
    return count;
  }

  // The model output as x0 (DPM-Solver++) or epsilon (DPM-Solver).
  Tensor convert_model_output(const Tensor& m, const Tensor& sample, int k) const {
    const AlphaSigma as = alpha_sigma(sigmas_f32_[k]);
    const float a = as.alpha, s = as.sigma;
    const PredictionType p = prediction_type();
    if (data_prediction()) {
      if (p == PredictionType::Epsilon)
        return elementwise([&](float mo, float x) { return (x - s * mo) / a; }, m, sample);
      if (p == PredictionType::VPrediction)
        return elementwise([&](float mo, float x) { return a * x - s * mo; }, m, sample);
      return m;
    }
    if (p == PredictionType::Epsilon) return m;
    if (p == PredictionType::VPrediction)
      return elementwise([&](float mo, float x) { return a * mo + s * x; }, m, sample);
    return elementwise([&](float mo, float x) { return (x - a * mo) / s; }, m, sample);
  }

  Tensor first_order_update(const Tensor& sample, int k, const Tensor* noise) const {
    const AlphaSigma t = alpha_sigma(sigmas_f32_[k + 1]), s = alpha_sigma(sigmas_f32_[k]);
    const float h = t.lambda - s.lambda;
    const Tensor& m = history_.back();
    switch (algorithm_) {
      case Algorithm::DpmSolverPP: {
        const float c_x = t.sigma / s.sigma, c_m = t.alpha * (std::exp(-h) - 1.0f);
        return elementwise([&](float x, float mo) { return c_x * x - c_m * mo; }, sample, m);
      }
      case Algorithm::DpmSolver: {
        const float c_x = t.alpha / s.alpha, c_m = t.sigma * (std::exp(h) - 1.0f);
        return elementwise([&](float x, float mo) { return c_x * x - c_m * mo; }, sample, m);
      }
      case Algorithm::SdeDpmSolverPP: {
        const float c_x = t.sigma / s.sigma * std::exp(-h);
        const float c_m = t.alpha * (1.0f - std::exp(-2.0f * h));
        const float c_z = t.sigma * std::sqrt(1.0f - std::exp(-2.0f * h));
        return elementwise([&](float x, float mo, float z) { return c_x * x + c_m * mo + c_z * z; },
                           sample, m, *noise);
      }
      case Algorithm::SdeDpmSolver: {
        const float c_x = t.alpha / s.alpha;
        const float c_m = 2.0f * (t.sigma * (std::exp(h) - 1.0f));
        const float c_z = t.sigma * std::sqrt(std::exp(2.0f * h) - 1.0f);
        return elementwise([&](float x, float mo, float z) { return c_x * x - c_m * mo + c_z * z; },
                           sample, m, *noise);
      }
    }
    return sample;
  }

  Tensor second_order_update(const Tensor& sample, int k, const Tensor* noise) const {
    const AlphaSigma t = alpha_sigma(sigmas_f32_[k + 1]), s0 = alpha_sigma(sigmas_f32_[k]),
                     s1 = alpha_sigma(sigmas_f32_[k - 1]);
    const Tensor &m0 = history_[solver_order_ - 1], &m1 = history_[solver_order_ - 2];
    const float h = t.lambda - s0.lambda, h_0 = s0.lambda - s1.lambda;
    const float r0 = h_0 / h;
    const float inv_r0 = 1.0f / r0;
    // D0 = m0, D1 = (1 / r0) * (m0 - m1).
    auto d1 = [inv_r0](float a, float b) { return inv_r0 * (a - b); };
    switch (algorithm_) {
      case Algorithm::DpmSolverPP: {
        const float c_x = t.sigma / s0.sigma, c_0 = t.alpha * (std::exp(-h) - 1.0f);
        if (heun_) {
          const float c_1 = t.alpha * ((std::exp(-h) - 1.0f) / h + 1.0f);
          return elementwise(
              [&](float x, float a, float b) { return c_x * x - c_0 * a + c_1 * d1(a, b); }, sample,
              m0, m1);
        }
        const float c_1 = 0.5f * c_0;
        return elementwise(
            [&](float x, float a, float b) { return c_x * x - c_0 * a - c_1 * d1(a, b); }, sample,
            m0, m1);
      }
      case Algorithm::DpmSolver: {
        const float c_x = t.alpha / s0.alpha, c_0 = t.sigma * (std::exp(h) - 1.0f);
        const float c_1 = heun_ ? t.sigma * ((std::exp(h) - 1.0f) / h - 1.0f) : 0.5f * c_0;
        return elementwise(
            [&](float x, float a, float b) { return c_x * x - c_0 * a - c_1 * d1(a, b); }, sample,
            m0, m1);
      }
      case Algorithm::SdeDpmSolverPP: {
        const float c_x = t.sigma / s0.sigma * std::exp(-h);
        const float c_0 = t.alpha * (1.0f - std::exp(-2.0f * h));
        const float c_1 =
            heun_ ? t.alpha * ((1.0f - std::exp(-2.0f * h)) / (-2.0f * h) + 1.0f) : 0.5f * c_0;
        const float c_z = t.sigma * std::sqrt(1.0f - std::exp(-2.0f * h));
        return elementwise([&](float x, float a, float b,
                               float z) { return c_x * x + c_0 * a + c_1 * d1(a, b) + c_z * z; },
                           sample, m0, m1, *noise);
      }
      case Algorithm::SdeDpmSolver: {
        const float c_x = t.alpha / s0.alpha;
        const float c_0 = 2.0f * (t.sigma * (std::exp(h) - 1.0f));
        const float c_1 = heun_ ? 2.0f * (t.sigma * ((std::exp(h) - 1.0f) / h - 1.0f))
                                : t.sigma * (std::exp(h) - 1.0f);
        const float c_z = t.sigma * std::sqrt(std::exp(2.0f * h) - 1.0f);
        return elementwise([&](float x, float a, float b,
                               float z) { return c_x * x - c_0 * a - c_1 * d1(a, b) + c_z * z; },
                           sample, m0, m1, *noise);
      }
    }
    return sample;
  }

  Tensor third_order_update(const Tensor& sample, int k) const {
    const AlphaSigma t = alpha_sigma(sigmas_f32_[k + 1]), s0 = alpha_sigma(sigmas_f32_[k]),
                     s1 = alpha_sigma(sigmas_f32_[k - 1]), s2 = alpha_sigma(sigmas_f32_[k - 2]);
    const Tensor &m0 = history_[2], &m1 = history_[1], &m2 = history_[0];
    const float h = t.lambda - s0.lambda, h_0 = s0.lambda - s1.lambda, h_1 = s1.lambda - s2.lambda;
    const float r0 = h_0 / h, r1 = h_1 / h;
    const float inv_r0 = 1.0f / r0, inv_r1 = 1.0f / r1;
    const float c_d1 = r0 / (r0 + r1), c_d2 = 1.0f / (r0 + r1);
    float c_x, c_0, c_1, c_2;
    if (algorithm_ == Algorithm::DpmSolverPP) {
      const float e = std::exp(-h);
      c_x = t.sigma / s0.sigma;
      c_0 = t.alpha * (e - 1.0f);
      c_1 = t.alpha * ((e - 1.0f) / h + 1.0f);
      c_2 = t.alpha * ((e - 1.0f + h) / (h * h) - 0.5f);
      return elementwise(
          [&](float x, float a, float b, float c) {
            const float d1_0 = inv_r0 * (a - b), d1_1 = inv_r1 * (b - c);
            const float d1 = d1_0 + c_d1 * (d1_0 - d1_1), d2 = c_d2 * (d1_0 - d1_1);
            return c_x * x - c_0 * a + c_1 * d1 - c_2 * d2;
          },
          sample, m0, m1, m2);
    }
    const float e = std::exp(h);
    c_x = t.alpha / s0.alpha;
    c_0 = t.sigma * (e - 1.0f);
    c_1 = t.sigma * ((e - 1.0f) / h - 1.0f);
    c_2 = t.sigma * ((e - 1.0f - h) / (h * h) - 0.5f);
    return elementwise(
        [&](float x, float a, float b, float c) {
          const float d1_0 = inv_r0 * (a - b), d1_1 = inv_r1 * (b - c);
          const float d1 = d1_0 + c_d1 * (d1_0 - d1_1), d2 = c_d2 * (d1_0 - d1_1);
          return c_x * x - c_0 * a - c_1 * d1 - c_2 * d2;
        },
        sample, m0, m1, m2);
  }

  NoiseSchedule ns_;
  std::vector<float> train_sigmas_;
  std::string spacing_;
  int64_t steps_offset_;
  int solver_order_;
  bool lower_order_final_, euler_at_final_, karras_, lu_lambdas_;
  double lambda_min_clipped_;
  std::optional<double> sigma_min_, sigma_max_;
  Algorithm algorithm_ = Algorithm::DpmSolverPP;
  bool heun_ = false;
  std::vector<float> sigmas_f32_;
  std::vector<Tensor> history_;  // converted model outputs, oldest first
  int lower_order_nums_ = 0, next_call_ = 0, index_shift_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_dpm_multistep(const SchedulerConfig& cfg, const std::string& name) {
  return std::make_unique<DpmMultistepScheduler>(cfg, name);
}

}  // namespace sdpal::sched
