#include "pipeline/scheduler_common.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

// Last: float32 arithmetic below rounds op by op like torch (no FMA contraction).
#include "pipeline/scheduler_strict_fp.h"

namespace sdpal::sched {

// ---- config ---------------------------------------------------------------------------------

SchedulerConfig::SchedulerConfig(const nlohmann::json& base, const nlohmann::json& overrides,
                                 std::string class_name)
    : values_(nlohmann::json::object()), class_name_(std::move(class_name)) {
  if (!base.is_null() && !base.is_object()) this->fail("scheduler config is not a JSON object");
  if (!overrides.is_null() && !overrides.is_object())
    this->fail("scheduler config overrides are not a JSON object");
  std::vector<std::string> used_defaults;
  if (base.is_object() && base.contains("_use_default_values") &&
      base["_use_default_values"].is_array())
    for (const auto& k : base["_use_default_values"])
      if (k.is_string()) used_defaults.push_back(k.get<std::string>());
  if (base.is_object())
    for (auto it = base.begin(); it != base.end(); ++it) {
      const std::string& k = it.key();
      if (k.empty() || k[0] == '_') continue;
      if (std::find(used_defaults.begin(), used_defaults.end(), k) != used_defaults.end()) continue;
      values_[k] = it.value();
    }
  if (overrides.is_object())
    for (auto it = overrides.begin(); it != overrides.end(); ++it) values_[it.key()] = it.value();
}

void SchedulerConfig::fail(const std::string& message) const {
  ::sdpal::fail(class_name_ + ": " + message);
}

const nlohmann::json* SchedulerConfig::find(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end() || it->is_null()) return nullptr;
  return &*it;
}

namespace {
// Python's json writes non-finite floats as bare words; load_scheduler_config keeps them as
// strings.
std::optional<double> non_finite_word(const std::string& s) {
  if (s == "-Infinity" || s == "-inf") return -std::numeric_limits<double>::infinity();
  if (s == "Infinity" || s == "inf") return std::numeric_limits<double>::infinity();
  if (s == "NaN" || s == "nan") return std::numeric_limits<double>::quiet_NaN();
  return std::nullopt;
}
}  // namespace

double SchedulerConfig::number(const std::string& key, double class_default) const {
  auto v = optional_number(key);
  return v ? *v : class_default;
}

std::optional<double> SchedulerConfig::optional_number(const std::string& key) const {
  const nlohmann::json* v = find(key);
  if (!v) return std::nullopt;
  if (v->is_number()) return v->get<double>();
  if (v->is_string())
    if (auto w = non_finite_word(v->get<std::string>())) return w;
  fail("config value '" + key + "' must be a number, got " + v->dump());
}

int64_t SchedulerConfig::integer(const std::string& key, int64_t class_default) const {
  const nlohmann::json* v = find(key);
  if (!v) return class_default;
  // Bounded so that timestep arithmetic on them (i * ratio + steps_offset) fits an int.
  constexpr int64_t kBound = int64_t(1) << 30;
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(kBound))
    fail("config value '" + key + "' " + v->dump() + " is beyond the bound " +
         std::to_string(kBound));
  if (v->is_number_integer()) {
    const int64_t n = v->get<int64_t>();
    if (n < -kBound || n > kBound)
      fail("config value '" + key + "' " + v->dump() + " is beyond the bound +-" +
           std::to_string(kBound));
    return n;
  }
  if (v->is_number_float()) {
    double d = v->get<double>();
    if (d == std::floor(d) && std::fabs(d) <= static_cast<double>(kBound))
      return static_cast<int64_t>(d);
  }
  fail("config value '" + key + "' must be an integer (at most " + std::to_string(kBound) +
       " in magnitude), got " + v->dump());
}

bool SchedulerConfig::boolean(const std::string& key, bool class_default) const {
  const nlohmann::json* v = find(key);
  if (!v) return class_default;
  if (v->is_boolean()) return v->get<bool>();
  fail("config value '" + key + "' must be true or false, got " + v->dump());
}

std::string SchedulerConfig::string(const std::string& key,
                                    const std::string& class_default) const {
  auto v = optional_string(key);
  return v ? *v : class_default;
}

std::optional<std::string> SchedulerConfig::optional_string(const std::string& key) const {
  const nlohmann::json* v = find(key);
  if (!v) return std::nullopt;
  if (v->is_string()) return v->get<std::string>();
  fail("config value '" + key + "' must be a string, got " + v->dump());
}

std::optional<std::vector<double>> SchedulerConfig::optional_number_list(
    const std::string& key) const {
  const nlohmann::json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_array()) fail("config value '" + key + "' must be a list of numbers");
  std::vector<double> r;
  for (const auto& e : *v) {
    if (!e.is_number()) fail("config value '" + key + "' must be a list of numbers");
    r.push_back(e.get<double>());
  }
  return r;
}

PredictionType SchedulerConfig::prediction_type() const {
  const std::string p = string("prediction_type", "epsilon");
  if (p == "epsilon") return PredictionType::Epsilon;
  if (p == "v_prediction") return PredictionType::VPrediction;
  if (p == "sample") return PredictionType::Sample;
  fail("unknown prediction_type '" + p + "' (expected epsilon, v_prediction or sample)");
}

// ---- torch / numpy emulation ------------------------------------------------------------------

// torch 1.13 fills linspace with its AVX2/AVX-512 kernel: per vector a base start + step * idx
// (or end - step * (steps - idx - 1) past halfway), then base + k * step per lane, all compiled
// with FMA contraction; the tail that does not fill two vectors is done one element at a time.
// The fixtures' sigma tables match this bit for bit (and not a plain start + i * step).
std::vector<float> torch_linspace_f32(double start_d, double end_d, int64_t steps) {
  SDPAL_CHECK(steps >= 1, "linspace needs at least one step");
  const float start = static_cast<float>(start_d), end = static_cast<float>(end_d);
  std::vector<float> out(steps);
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int64_t halfway = steps / 2;
  auto at = [&](int64_t idx) {
    return idx < halfway ? std::fma(step, static_cast<float>(idx), start)
                         : std::fma(-step, static_cast<float>(steps - idx - 1), end);
  };
  constexpr int64_t kLanes = 8;  // 16 on AVX-512 gives the same values (vectors start alike)
  int64_t idx = 0;
  for (; idx + 2 * kLanes <= steps; idx += kLanes) {
    const float base = at(idx);
    for (int64_t k = 0; k < kLanes; ++k) out[idx + k] = std::fma(static_cast<float>(k), step, base);
  }
  for (; idx < steps; ++idx) out[idx] = at(idx);
  return out;
}

std::vector<double> np_linspace(double start, double stop, int64_t num) {
  std::vector<double> y(std::max<int64_t>(num, 0));
  if (num <= 0) return y;
  if (num == 1) {
    y[0] = start;
    return y;
  }
  const double div = static_cast<double>(num - 1);
  const double delta = stop - start;
  const double step = delta / div;
  for (int64_t i = 0; i < num; ++i) {
    const double v =
        step == 0 ? (static_cast<double>(i) / div) * delta : static_cast<double>(i) * step;
    y[i] = v + start;
  }
  y[num - 1] = stop;
  return y;
}

std::vector<double> np_arange(double start, double stop, double step) {
  SDPAL_CHECK(step != 0, "arange with step 0");
  const double len_d = std::ceil((stop - start) / step);
  if (!(len_d > 0)) return {};
  const auto len = static_cast<int64_t>(len_d);
  std::vector<double> a(len);
  a[0] = start;
  if (len > 1) a[1] = start + step;
  const double delta = len > 1 ? a[1] - a[0] : step;
  for (int64_t i = 2; i < len; ++i) a[i] = start + static_cast<double>(i) * delta;
  return a;
}

double np_round(double x) { return std::nearbyint(x); }

std::vector<double> np_interp_table(const std::vector<double>& x, const std::vector<float>& table) {
  const int64_t n = static_cast<int64_t>(table.size());
  SDPAL_CHECK(n >= 1, "interpolation over an empty table");
  std::vector<double> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double xv = x[i];
    if (std::isnan(xv)) {
      r[i] = xv;
    } else if (xv >= static_cast<double>(n - 1)) {
      r[i] = table[n - 1];
    } else if (xv < 0) {
      r[i] = table[0];
    } else {
      const auto j = static_cast<int64_t>(std::floor(xv));
      if (static_cast<double>(j) == xv) {
        r[i] = table[j];
      } else {
        const double slope = (static_cast<double>(table[j + 1]) - table[j]) / 1.0;
        r[i] = slope * (xv - static_cast<double>(j)) + table[j];
      }
    }
  }
  return r;
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int num_inference_steps) {
  const double rho = 7.0;
  const std::vector<double> ramp = np_linspace(0, 1, num_inference_steps);
  const double min_inv_rho = std::pow(sigma_min, 1 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1 / rho);
  const double span = min_inv_rho - max_inv_rho;
  std::vector<double> s(ramp.size());
  for (size_t i = 0; i < ramp.size(); ++i) s[i] = std::pow(max_inv_rho + ramp[i] * span, rho);
  return s;
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const int64_t n = static_cast<int64_t>(log_sigmas.size());
  SDPAL_CHECK(n >= 2, "sigma table too short");
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  // numpy 1.x: float64 scalar - float32 array is computed in float32.
  const float log_sigma_f = static_cast<float>(log_sigma);
  // low_idx = cumsum(dists >= 0).argmax(), clipped to n - 2.
  int64_t count = 0, best = -1, low_idx = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (log_sigma_f - log_sigmas[i] >= 0.f) ++count;
    if (count > best) best = count, low_idx = i;
  }
  low_idx = std::min(low_idx, n - 2);
  const int64_t high_idx = low_idx + 1;
  const float low = log_sigmas[low_idx], high = log_sigmas[high_idx];
  double w = (static_cast<double>(low) - log_sigma) / static_cast<double>(low - high);
  w = std::clamp(w, 0.0, 1.0);
  return (1 - w) * static_cast<double>(low_idx) + w * static_cast<double>(high_idx);
}

int diffusers_step_index(const std::vector<double>& timesteps, double t, int fallback) {
  int found = 0, first = -1;
  for (size_t i = 0; i < timesteps.size(); ++i)
    if (timesteps[i] == t) {
      if (++found == 2) return static_cast<int>(i);
      if (first < 0) first = static_cast<int>(i);
    }
  return first >= 0 ? first : fallback;
}

int first_index_of(const std::vector<double>& timesteps, double t, const std::string& who) {
  for (size_t i = 0; i < timesteps.size(); ++i)
    if (timesteps[i] == t) return static_cast<int>(i);
  fail(who + ": timestep " + std::to_string(t) + " is not in the schedule");
}

// ---- noise schedule ---------------------------------------------------------------------------

namespace {

// diffusers' betas_for_alpha_bar (cosine), computed in Python floats.
std::vector<float> cosine_betas(int n) {
  const double pi = 3.141592653589793;
  auto alpha_bar = [&](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * pi / 2), 2.0); };
  std::vector<float> betas(n);
  for (int i = 0; i < n; ++i) {
    const double t1 = static_cast<double>(i) / n, t2 = static_cast<double>(i + 1) / n;
    betas[i] = static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return betas;
}

// torch.cumprod on CPU accumulates float32 in double and rounds each prefix.
std::vector<float> cumprod(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  double acc = 1;
  for (size_t i = 0; i < v.size(); ++i) {
    acc *= v[i];
    r[i] = static_cast<float>(acc);
  }
  return r;
}

std::vector<float> one_minus(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = 1.0f - v[i];
  return r;
}

// diffusers' rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1) in float32.
std::vector<float> rescale_zero_terminal_snr(const std::vector<float>& betas) {
  std::vector<float> sqrt_bar = cumprod(one_minus(betas));
  for (float& a : sqrt_bar) a = std::sqrt(a);
  const float first = sqrt_bar.front(), last = sqrt_bar.back();
  const float scale = first / (first - last);
  for (float& a : sqrt_bar) a = (a - last) * scale;
  std::vector<float> alphas(betas.size());
  for (size_t i = 0; i < sqrt_bar.size(); ++i) {
    const float bar = sqrt_bar[i] * sqrt_bar[i];
    alphas[i] = i == 0 ? bar : bar / (sqrt_bar[i - 1] * sqrt_bar[i - 1]);
  }
  return one_minus(alphas);
}

}  // namespace

NoiseSchedule make_noise_schedule(const SchedulerConfig& cfg, bool rescale_zero_terminal_snr_) {
  NoiseSchedule ns;
  const int64_t n = cfg.integer("num_train_timesteps", 1000);
  if (n < 2 || n > 100000)
    cfg.fail("num_train_timesteps must be in [2, 100000], got " + std::to_string(n));
  ns.num_train_timesteps = static_cast<int>(n);
  if (auto trained = cfg.optional_number_list("trained_betas")) {
    if (static_cast<int64_t>(trained->size()) != n)
      cfg.fail("trained_betas has " + std::to_string(trained->size()) + " entries, expected " +
               std::to_string(n));
    for (double b : *trained) ns.betas.push_back(static_cast<float>(b));
  } else {
    const std::string schedule = cfg.string("beta_schedule", "linear");
    const double beta_start = cfg.number("beta_start", 0.0001);
    const double beta_end = cfg.number("beta_end", 0.02);
    if (schedule == "linear") {
      ns.betas = torch_linspace_f32(beta_start, beta_end, n);
    } else if (schedule == "scaled_linear") {
      ns.betas = torch_linspace_f32(std::pow(beta_start, 0.5), std::pow(beta_end, 0.5), n);
      for (float& b : ns.betas) b = b * b;
    } else if (schedule == "squaredcos_cap_v2") {
      ns.betas = cosine_betas(static_cast<int>(n));
    } else {
      cfg.fail("unknown beta_schedule '" + schedule +
               "' (expected linear, scaled_linear or squaredcos_cap_v2)");
    }
  }
  // A beta outside (0, 1) gives a negative or zero alpha: NaN sigmas (sqrt, log of negatives) and
  // NaN timesteps downstream (Karras sigmas). Zero-terminal-SNR rescaling then sets the last beta
  // to 1 on purpose.
  for (size_t i = 0; i < ns.betas.size(); ++i)
    if (!(ns.betas[i] > 0.f && ns.betas[i] < 1.f))
      cfg.fail("beta " + std::to_string(i) + " is " + std::to_string(ns.betas[i]) +
               ", outside (0, 1) (check beta_start, beta_end and trained_betas)");
  if (rescale_zero_terminal_snr_) ns.betas = rescale_zero_terminal_snr(ns.betas);
  ns.alphas_cumprod = cumprod(one_minus(ns.betas));
  // A schedule whose signal all but vanishes (many steps of large betas) has sigmas past 1e6,
  // whose fourth powers overflow float in the ancestral step. Real schedules end near 1e-9
  // (cosine, sigma 2e4) or 5e-3 (SD, sigma 14.6). Zero terminal SNR ends at 0 on purpose.
  if (!rescale_zero_terminal_snr_)
    for (size_t i = 0; i < ns.alphas_cumprod.size(); ++i)
      if (!(ns.alphas_cumprod[i] >= 1e-12f))
        cfg.fail("the noise schedule's alphas_cumprod falls to " +
                 std::to_string(ns.alphas_cumprod[i]) + " at step " + std::to_string(i) +
                 " (below 1e-12: sigmas beyond 1e6); check num_train_timesteps and the betas");
  return ns;
}

std::vector<float> training_sigmas(const std::vector<float>& alphas_cumprod) {
  std::vector<float> s(alphas_cumprod.size());
  for (size_t i = 0; i < s.size(); ++i)
    s[i] = std::sqrt((1.0f - alphas_cumprod[i]) / alphas_cumprod[i]);
  return s;
}

std::vector<float> log_of(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = std::log(v[i]);
  return r;
}

// ---- checks -----------------------------------------------------------------------------------

std::string timestep_spacing(const SchedulerConfig& cfg, const std::string& class_default) {
  std::string s = cfg.string("timestep_spacing", class_default);
  if (s != "linspace" && s != "leading" && s != "trailing")
    cfg.fail("unknown timestep_spacing '" + s + "' (expected linspace, leading or trailing)");
  return s;
}

void check_num_inference_steps(int n, int num_train_timesteps, const std::string& who) {
  if (n <= 0)
    fail(who + ": the number of inference steps must be positive, got " + std::to_string(n));
  if (n > num_train_timesteps)
    fail(who + ": " + std::to_string(n) + " inference steps exceed the " +
         std::to_string(num_train_timesteps) + " training timesteps");
}

void check_same_shape(const Tensor& a, const Tensor& b, const std::string& what) {
  if (a.shape() != b.shape())
    fail(what + ": tensor shapes differ, " + shape_str(a.shape()) + " vs " + shape_str(b.shape()));
}

}  // namespace sdpal::sched
