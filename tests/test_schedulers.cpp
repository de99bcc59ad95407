// Schedulers against diffusers v0.24:
// * the timestep / sigma tables of every pipeline case (tiny-sd1, tiny-sd2 v-prediction,
//   demo-fashion), built from the model folder's scheduler_config.json;
// * the Euler sampling loop on the recorded UNet inputs/outputs (no UNet involved);
// * every sampler's full txt2img loop with the repo's UNet on the recorded prompt embeddings,
//   step by step against the recorded latents;
// * update formulas on a perfect denoiser (each step must land on the noising trajectory), the
//   noise terms of the stochastic samplers, img2img start / add_noise, and error handling.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>

#include "core/error.h"
#include "models/config.h"
#include "models/unet.h"
#include "models/weights.h"
#include "pipeline/scheduler.h"
#include "support/fixtures.h"
// Last: no FMA contraction below, so the test's own float expressions (the classifier-free
// guidance) round like torch's separate ops.
#include "pipeline/scheduler_strict_fp.h"

namespace sdpal {
namespace {

using test::Case;

const char* const kFixtures[] = {"tiny-sd1", "tiny-sd2", "demo-fashion"};

std::vector<double> read_f64(const Case& c, const std::string& name) {
  const TensorView& v = c.file->get(name);
  EXPECT_EQ(v.dtype, DType::F64) << name;
  std::vector<double> r(v.numel());
  std::memcpy(r.data(), v.data, r.size() * sizeof(double));
  return r;
}

// The case's scheduler_class + scheduler_overrides as sampler options.
SchedulerOptions options_for(const Case& c) {
  const auto& p = c.params();
  const std::string cls = p["scheduler_class"];
  const auto& ov = p["scheduler_overrides"];
  SchedulerOptions o;
  if (cls == "DDIMScheduler") {
    o.name = "ddim";
    if (p.contains("pipeline_kwargs") && p["pipeline_kwargs"].contains("eta"))
      o.eta = p["pipeline_kwargs"]["eta"].get<float>();
  } else if (cls == "EulerDiscreteScheduler") {
    o.name = "euler";
  } else if (cls == "EulerAncestralDiscreteScheduler") {
    o.name = "euler_a";
  } else if (cls == "PNDMScheduler") {
    o.name = "pndm";
    EXPECT_EQ(ov.value("skip_prk_steps", false), true);
  } else if (cls == "DPMSolverMultistepScheduler") {
    o.name = "dpmpp_2m";
    EXPECT_EQ(ov.value("algorithm_type", ""), "dpmsolver++");
    EXPECT_EQ(ov.value("solver_order", 0), 2);
    o.karras = ov.value("use_karras_sigmas", false);
  } else {
    ADD_FAILURE() << "unmapped scheduler class " << cls;
  }
  return o;
}

std::vector<std::string> pipeline_cases(const std::string& fixture) {
  std::vector<std::string> ids;
  const nlohmann::json m = test::manifest(fixture);
  for (const auto& c : m["cases"])
    if (c["kind"] == "pipeline") ids.push_back(c["id"]);
  return ids;
}

nlohmann::json folder_config(const std::string& fixture) {
  return load_scheduler_config(test::model_dir(fixture) + "/scheduler/scheduler_config.json");
}

// The fixture generator called from_config on an in-memory config that lacked the keys each case
// lists in _use_default_values; the folder's scheduler_config.json was written afterwards with
// the saving class's defaults filled in (timestep_spacing "leading" from PNDM/DDIM). Dropping
// those keys from the folder config gives back the generator's base config, so the class defaults
// (Euler/DPM: "linspace", lower_order_final, ...) must come from our own tables.
nlohmann::json generator_base_config(const std::string& fixture, const Case& c) {
  nlohmann::json base = folder_config(fixture);
  for (const auto& k : c.params()["scheduler_config"]["_use_default_values"])
    base.erase(k.get<std::string>());
  return base;
}

// Tight (1e-4 relative) checks; the number of values that are not bit-identical is reported.
void expect_tables_match(const Scheduler& s, const Case& c, const std::string& label) {
  int inexact = 0;
  const std::vector<double> want_t = read_f64(c, "aux.timesteps");
  ASSERT_EQ(s.timesteps().size(), want_t.size()) << label;
  for (size_t i = 0; i < want_t.size(); ++i) {
    EXPECT_NEAR(s.timesteps()[i], want_t[i], 1e-4 * std::max(1.0, std::fabs(want_t[i])))
        << label << " timestep " << i;
    inexact += s.timesteps()[i] != want_t[i];
  }
  if (c.file->has("aux.sigmas")) {
    const std::vector<double> want_s = read_f64(c, "aux.sigmas");
    ASSERT_EQ(s.sigmas().size(), want_s.size()) << label;
    for (size_t i = 0; i < want_s.size(); ++i) {
      EXPECT_NEAR(s.sigmas()[i], want_s[i], 1e-4 * std::fabs(want_s[i])) << label << " sigma " << i;
      inexact += s.sigmas()[i] != want_s[i];
    }
  } else {
    EXPECT_TRUE(s.sigmas().empty()) << label;
  }
  const double want_init = c.params()["init_noise_sigma"].get<double>();
  EXPECT_NEAR(s.init_noise_sigma(), want_init, 1e-6 * want_init) << label;
  EXPECT_EQ(s.num_calls(), c.params()["unet_calls"].get<int>()) << label;
  if (inexact) std::printf("[ tables ] %s: %d values not bit-identical\n", label.c_str(), inexact);
}

TEST(Schedulers, TablesFromModelFolderConfigMatchEveryPipelineCase) {
  SDPAL_REQUIRE_FIXTURES();
  int checked = 0;
  for (const char* fixture : kFixtures) {
    for (const std::string& id : pipeline_cases(fixture)) {
      const Case c = test::load_case(fixture, id);
      auto s = make_scheduler(options_for(c), generator_base_config(fixture, c));
      s->set_timesteps(c.params()["num_inference_steps"].get<int>());
      expect_tables_match(*s, c, std::string(fixture) + "/" + id);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 17);  // 6 + 6 + 5 (demo-fashion has no Karras case)
}

// diffusers' own effective config (with its _use_default_values) gives the same tables.
TEST(Schedulers, TablesFromEffectiveConfigMatchEveryPipelineCase) {
  SDPAL_REQUIRE_FIXTURES();
  for (const char* fixture : kFixtures)
    for (const std::string& id : pipeline_cases(fixture)) {
      const Case c = test::load_case(fixture, id);
      auto s = make_scheduler(options_for(c), c.params()["scheduler_config"]);
      s->set_timesteps(c.params()["num_inference_steps"].get<int>());
      expect_tables_match(*s, c, std::string(fixture) + "/" + id + " (effective config)");
    }
}

// DDIM and PNDM default to "leading" like the saved folder config, so the untouched file (the way
// diffusers loads the folder from disk) gives their recorded tables too.
TEST(Schedulers, LeadingSpacingClassesMatchFromTheUntouchedFolderConfig) {
  SDPAL_REQUIRE_FIXTURES();
  for (const char* fixture : kFixtures)
    for (const char* id : {"pipeline_ddim", "pipeline_pndm"}) {
      const Case c = test::load_case(fixture, id);
      auto s = make_scheduler(options_for(c), folder_config(fixture));
      s->set_timesteps(c.params()["num_inference_steps"].get<int>());
      expect_tables_match(*s, c, std::string(fixture) + "/" + id + " (folder config)");
    }
}

Tensor guide(const Tensor& unet_out, int64_t batch, float scale) {
  Tensor uncond = unet_out.slice0(0, batch), cond = unet_out.slice0(batch, 2 * batch);
  Tensor guided(uncond.shape());
  for (int64_t j = 0; j < guided.numel(); ++j)
    guided[j] = uncond[j] + scale * (cond[j] - uncond[j]);
  return guided;
}

Tensor row(const Tensor& stacked, int64_t i, const Shape& shape) {
  return stacked.slice0(i, i + 1).reshaped(shape);
}

// The Euler txt2img loop on the recorded UNet outputs: model inputs and latents of every step.
TEST(Schedulers, EulerLoopReproducesRecordedRun) {
  SDPAL_REQUIRE_FIXTURES();
  for (const char* fixture : kFixtures) {
    const Case c = test::load_case(fixture, "pipeline_euler");
    const std::string label = std::string(fixture) + "/pipeline_euler";
    auto s = make_scheduler(options_for(c), generator_base_config(fixture, c));
    s->set_timesteps(c.params()["num_inference_steps"].get<int>());
    const float g = c.params()["guidance_scale"].get<float>();
    const Tensor unet_in = c.aux("unet_in"), unet_out = c.aux("unet_out");
    const Tensor per_step = c.aux("latents_per_step");
    const std::vector<double> unet_t = read_f64(c, "aux.unet_t");
    const double atol = c.atol("aux.latents_per_step");

    Tensor latents = c.in("noise");
    const float sigma0 = s->init_noise_sigma();
    for (int64_t j = 0; j < latents.numel(); ++j) latents[j] *= sigma0;
    const int64_t batch = latents.dim(0);
    double worst_in = 0, worst_latents = 0;
    ASSERT_EQ(s->num_calls(), static_cast<int>(unet_t.size()));
    for (int i = 0; i < s->num_calls(); ++i) {
      EXPECT_EQ(s->timesteps()[i], unet_t[i]) << label << " call " << i;
      Tensor x = s->scale_model_input(latents, i);
      Tensor x2 = concat0({&x, &x});
      Tensor want_in = row(unet_in, i, x2.shape());
      test::expect_close(x2, want_in, 1e-6, 1e-6, label + " unet_in " + std::to_string(i));
      worst_in = std::max(worst_in, test::max_abs_diff(x2, want_in));

      latents = s->step(guide(row(unet_out, i, x2.shape()), batch, g), i, latents, nullptr);
      Tensor want = row(per_step, i, latents.shape());
      test::expect_close(latents, want, atol, 1e-4,
                         label + " latents after step " + std::to_string(i));
      worst_latents = std::max(worst_latents, test::max_abs_diff(latents, want));
    }
    test::expect_close(latents, c.out("latents"), c.atol("latents"), 1e-4, label + " final");
    std::printf("[ euler loop ] %s: max |unet_in diff| %.3g, max |latents diff| %.3g (atol %.3g)\n",
                fixture, worst_in, worst_latents, atol);
  }
}

// Every sampler's txt2img loop with the real (tiny) UNet on the recorded prompt embeddings.
TEST(Schedulers, EverySamplerLoopWithUNetMatchesRecordedLatents) {
  SDPAL_REQUIRE_FIXTURES();
  for (const char* fixture : kFixtures) {
    const std::string dir = test::model_dir(fixture) + "/unet";
    WeightStore ws("unet");
    ws.add_file(dir + "/diffusion_pytorch_model.safetensors");
    UNet unet(ws, UNetConfig::from_json(read_json_file(dir + "/config.json"), dir));
    for (const std::string& id : pipeline_cases(fixture)) {
      const Case c = test::load_case(fixture, id);
      const std::string label = std::string(fixture) + "/" + id;
      auto s = make_scheduler(options_for(c), generator_base_config(fixture, c));
      s->set_timesteps(c.params()["num_inference_steps"].get<int>());
      const float g = c.params()["guidance_scale"].get<float>();
      const Tensor neg = c.aux("negative_prompt_embeds"), pos = c.aux("prompt_embeds");
      const Tensor context = concat0({&neg, &pos});
      const Tensor per_step = c.aux("latents_per_step");
      const double atol = c.atol("aux.latents_per_step");
      std::optional<Tensor> step_noise;
      if (c.file->has("in.step_noise")) step_noise = c.in("step_noise");

      Tensor latents = c.in("noise");
      const float sigma0 = s->init_noise_sigma();
      for (int64_t j = 0; j < latents.numel(); ++j) latents[j] *= sigma0;
      const int64_t batch = latents.dim(0);
      double worst = 0;
      for (int i = 0; i < s->num_calls(); ++i) {
        Tensor x = s->scale_model_input(latents, i);
        Tensor out = unet.forward(concat0({&x, &x}), {s->timesteps()[i]}, context);
        std::optional<Tensor> noise;
        if (s->needs_noise()) {
          ASSERT_TRUE(step_noise.has_value()) << label;
          noise = row(*step_noise, i, latents.shape());
        }
        latents = s->step(guide(out, batch, g), i, latents, noise ? &*noise : nullptr);
        Tensor want = row(per_step, i, latents.shape());
        test::expect_close(latents, want, atol, 1e-4, label + " step " + std::to_string(i));
        worst = std::max(worst, test::max_abs_diff(latents, want));
      }
      test::expect_close(latents, c.out("latents"), c.atol("latents"), 1e-4, label + " final");
      std::printf("[ unet loop ] %s: %d calls, max |latents diff| %.3g (atol %.3g)\n",
                  label.c_str(), s->num_calls(), worst, atol);
    }
  }
}

// ---- properties on a perfect denoiser ----------------------------------------------------------

Tensor random_tensor(const Shape& shape, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = dist(gen);
  return t;
}

nlohmann::json sd_config(const std::string& prediction, bool alpha_to_one) {
  return {{"beta_start", 0.00085},
          {"beta_end", 0.012},
          {"beta_schedule", "scaled_linear"},
          {"num_train_timesteps", 1000},
          {"prediction_type", prediction},
          {"set_alpha_to_one", alpha_to_one},
          {"steps_offset", 1},
          {"clip_sample", false}};
}

// Noising coefficients of call i: sample = a * x0 + b * eps (read through add_noise, whose
// formulas the img2img tests check).
std::pair<double, double> noising(const Scheduler& s, int i) {
  const Tensor one = Tensor::full({1}, 1.f), zero = Tensor::zeros({1});
  return {s.add_noise(one, zero, i)[0], s.add_noise(zero, one, i)[0]};
}

// What a perfect model predicts at call i for the sample a * x0 + b * eps.
Tensor perfect_output(const Scheduler& s, const Tensor& x0, const Tensor& eps, int i) {
  const auto [a, b] = noising(s, i);
  const double norm = std::sqrt(a * a + b * b);  // 1 (variance preserving) or sqrt(1 + sigma^2)
  Tensor r(x0.shape());
  for (int64_t j = 0; j < r.numel(); ++j) {
    switch (s.prediction_type()) {
      case PredictionType::Epsilon:
        r[j] = eps[j];
        break;
      case PredictionType::Sample:
        r[j] = x0[j];
        break;
      case PredictionType::VPrediction:
        r[j] = static_cast<float>((a * eps[j] - b * x0[j]) / norm);
        break;
    }
  }
  return r;
}

// The noise in sample x at call i: (x - a * x0) / b.
Tensor noise_in(const Scheduler& s, const Tensor& x, const Tensor& x0, int i) {
  const auto [a, b] = noising(s, i);
  Tensor eps(x.shape());
  for (int64_t j = 0; j < eps.numel(); ++j) eps[j] = static_cast<float>((x[j] - a * x0[j]) / b);
  return eps;
}

struct Sampler {
  std::string name, prediction;
  bool karras = false;
};

void run_trajectory(const Sampler& sp, int steps, float strength) {
  const std::string label = sp.name + "/" + sp.prediction + (sp.karras ? "/karras" : "") + ", " +
                            std::to_string(steps) + " steps, strength " + std::to_string(strength);
  SchedulerOptions o;
  o.name = sp.name;
  o.karras = sp.karras;
  // set_alpha_to_one: DDIM/PNDM's last step then lands on x0 itself.
  auto s = make_scheduler(o, sd_config(sp.prediction, true));
  const Shape shape = {1, 4, 3, 5};
  const Tensor x0 = random_tensor(shape, 1), eps = random_tensor(shape, 2);
  const int first = strength < 1.f ? s->img2img_start(steps, strength) : 0;
  if (strength >= 1.f) s->set_timesteps(steps);
  Tensor x = s->add_noise(x0, eps, first);
  double scale = 1;
  for (int i = first; i < s->num_calls(); ++i) {
    x = s->step(perfect_output(*s, x0, eps, i), i, x, nullptr);
    scale = std::max(scale, noising(*s, i).second);
    Tensor want(shape);
    if (i + 1 < s->num_calls()) {
      want = s->add_noise(x0, eps, i + 1);
    } else if (!s->sigmas().empty()) {
      // Euler ends at sigma 0; DPM at its final sigma (in variance-preserving form).
      const double sigma = s->sigmas().back(),
                   alpha = sp.name == "euler" ? 1.0 : 1 / std::sqrt(sigma * sigma + 1);
      for (int64_t j = 0; j < want.numel(); ++j)
        want[j] = static_cast<float>(alpha * x0[j] + sigma * alpha * eps[j]);
    } else {
      want = x0;
    }
    test::expect_close(x, want, 2e-5 * scale, 1e-5, label + ", after call " + std::to_string(i));
  }
}

TEST(Schedulers, DeterministicSamplersStayOnThePerfectDenoiserTrajectory) {
  const Sampler samplers[] = {
      {"ddim", "epsilon"},
      {"ddim", "v_prediction"},
      {"ddim", "sample"},
      {"euler", "epsilon"},
      {"euler", "v_prediction"},
      {"euler", "sample"},
      {"euler", "epsilon", true},
      {"dpmpp_2m", "epsilon"},
      {"dpmpp_2m", "v_prediction"},
      {"dpmpp_2m", "sample"},
      {"dpmpp_2m", "v_prediction", true},
      {"pndm", "epsilon"},
  };
  for (const auto& sp : samplers)
    for (int steps : {1, 2, 3, 8, 16, 25}) {
      run_trajectory(sp, steps, 1.f);
      // PNDM's img2img start makes its repeated call on the wrong timestep (as in diffusers), so
      // it leaves the trajectory by design; its tables are covered above.
      if (sp.name != "pndm" && static_cast<int>(steps * 0.6) > 0) run_trajectory(sp, steps, 0.6f);
    }
}

// The stochastic samplers: with noise z the step adds exactly c * z to the noise-free step, and
// the noise-free step lands where diffusers' formulas put it.
TEST(Schedulers, StochasticSamplersAddTheirNoiseTerm) {
  struct Stochastic {
    std::string name;
    float eta;
  };
  for (const Stochastic& st :
       {Stochastic{"euler_a", 0.f}, Stochastic{"ddim", 0.8f}, Stochastic{"dpmpp_2m_sde", 0.f}}) {
    SchedulerOptions o;
    o.name = st.name;
    o.eta = st.eta;
    auto with_noise = make_scheduler(o, sd_config("epsilon", true));
    auto without = make_scheduler(o, sd_config("epsilon", true));
    ASSERT_TRUE(with_noise->needs_noise()) << st.name;
    const int steps = 6;
    with_noise->set_timesteps(steps);
    without->set_timesteps(steps);
    const Shape shape = {2, 4, 2, 3};
    const Tensor x0 = random_tensor(shape, 3), z = random_tensor(shape, 4),
                 zero = Tensor::zeros(shape);
    Tensor x = without->add_noise(x0, random_tensor(shape, 5), 0);
    for (int i = 0; i + 1 < without->num_calls(); ++i) {
      const std::string label = st.name + " call " + std::to_string(i);
      const Tensor m = perfect_output(*without, x0, noise_in(*without, x, x0, i), i);
      const Tensor a = without->step(m, i, x, &zero), b = with_noise->step(m, i, x, &z);
      const auto [ca, cb] = noising(*without, i);
      const auto [na, nb] = noising(*without, i + 1);
      double noise_coef = 0,
             eps_coef = 0;  // the step should be na * x0 + eps_coef * eps + noise_coef * z
      if (st.name == "euler_a") {
        const double s = cb, sn = nb;
        noise_coef = std::sqrt(sn * sn * (s * s - sn * sn) / (s * s));
        eps_coef = std::sqrt(sn * sn - noise_coef * noise_coef);
      } else if (st.name == "ddim") {
        const double at = ca * ca, ap = na * na;
        noise_coef = st.eta * std::sqrt((1 - ap) / (1 - at) * (1 - at / ap));
        eps_coef = std::sqrt(1 - ap - noise_coef * noise_coef);
      } else {
        const double h = std::log(na / nb) - std::log(ca / cb);
        noise_coef = nb * std::sqrt(1 - std::exp(-2 * h));
        eps_coef = nb * std::exp(-h);
      }
      Tensor want_a(shape), want_diff(shape), diff(shape);
      for (int64_t j = 0; j < x.numel(); ++j) {
        const double eps = (x[j] - ca * x0[j]) / cb;
        want_a[j] = static_cast<float>(na * x0[j] + eps_coef * eps);
        want_diff[j] = static_cast<float>(noise_coef * z[j]);
        diff[j] = b[j] - a[j];
      }
      test::expect_close(a, want_a, 2e-5 * std::max(1.0, cb), 1e-5, label + " noise-free part");
      test::expect_close(diff, want_diff, 2e-5 * std::max(1.0, cb), 1e-5, label + " noise term");
      x = a;
    }
  }
}

// ---- img2img ------------------------------------------------------------------------------------

TEST(Schedulers, Img2ImgKeepsTheLastStrengthPartOfTheSchedule) {
  for (const char* name : {"ddim", "euler", "euler_a", "dpmpp_2m", "pndm"})
    for (int steps : {1, 7, 10, 50})
      for (double strength : {0.1, 0.3, 0.5, 0.7, 0.75, 1.0}) {
        SchedulerOptions o;
        o.name = name;
        auto s = make_scheduler(o, sd_config("epsilon", false));
        // StableDiffusionImg2ImgPipeline.get_timesteps with Python floats.
        const int init_timestep = std::min(static_cast<int>(steps * strength), steps);
        const int t_start = std::max(steps - init_timestep, 0);
        const std::string label = std::string(name) + " steps " + std::to_string(steps) +
                                  " strength " + std::to_string(strength);
        auto full = make_scheduler(o, sd_config("epsilon", false));
        full->set_timesteps(steps);
        // Nothing left to run (PNDM's extra call still leaves one): diffusers would fail later.
        if (t_start >= full->num_calls()) {
          EXPECT_THROW(s->img2img_start(steps, static_cast<float>(strength)), Error) << label;
          continue;
        }
        EXPECT_EQ(s->img2img_start(steps, static_cast<float>(strength)), t_start) << label;
        EXPECT_EQ(s->timesteps(), full->timesteps()) << label;
      }
}

TEST(Schedulers, AddNoiseFollowsEachClassFormula) {
  const Shape shape = {2, 4, 3, 3};
  const Tensor x = random_tensor(shape, 7), n = random_tensor(shape, 8);
  SchedulerOptions euler_opt, dpm_opt, ddim_opt, pndm_opt;
  euler_opt.name = "euler", dpm_opt.name = "dpmpp_2m", ddim_opt.name = "ddim",
  pndm_opt.name = "pndm";
  // Leading spacing puts Euler's sigmas on DDIM's integer timesteps.
  euler_opt.config_overrides = {{"timestep_spacing", "leading"}};
  auto euler = make_scheduler(euler_opt, sd_config("epsilon", false));
  auto dpm = make_scheduler(dpm_opt, sd_config("epsilon", false));
  auto ddim = make_scheduler(ddim_opt, sd_config("epsilon", false));
  auto pndm = make_scheduler(pndm_opt, sd_config("epsilon", false));
  const int steps = 10;
  euler->set_timesteps(steps), dpm->set_timesteps(steps), ddim->set_timesteps(steps),
      pndm->set_timesteps(steps);
  ASSERT_EQ(euler->timesteps(), ddim->timesteps());
  for (int i = 0; i < steps; ++i) {
    const float sigma = static_cast<float>(euler->sigmas()[i]);
    Tensor want_ve(shape), want_vp(shape);
    for (int64_t j = 0; j < x.numel(); ++j) {
      want_ve[j] = x[j] + n[j] * sigma;  // EulerDiscreteScheduler.add_noise
      want_vp[j] = static_cast<float>(want_ve[j] / std::sqrt(double(sigma) * sigma + 1));
    }
    const std::string at = " at call " + std::to_string(i);
    test::expect_close(euler->add_noise(x, n, i), want_ve, 0, 0, "euler add_noise" + at);
    // DDIM: sqrt(a) x + sqrt(1 - a) n with sigma^2 = (1 - a) / a, i.e. the VE sample rescaled.
    test::expect_close(ddim->add_noise(x, n, i), want_vp, 2e-6, 1e-5, "ddim add_noise" + at);
    const float dsigma = static_cast<float>(dpm->sigmas()[i]);
    Tensor want_dpm(shape);
    const float alpha = 1.0f / std::sqrt(dsigma * dsigma + 1.0f);
    for (int64_t j = 0; j < x.numel(); ++j) want_dpm[j] = alpha * x[j] + dsigma * alpha * n[j];
    test::expect_close(dpm->add_noise(x, n, i), want_dpm, 1e-6, 1e-6, "dpm add_noise" + at);
  }
  // PNDM noises to its own (repeating) timesteps with DDIM's formula.
  for (int i = 0; i < pndm->num_calls(); ++i) {
    const int k = i <= 1 ? i : i - 1;
    ASSERT_EQ(pndm->timesteps()[i], ddim->timesteps()[k]) << "pndm call " << i;
    test::expect_close(pndm->add_noise(x, n, i), ddim->add_noise(x, n, k), 0, 0,
                       "pndm add_noise at call " + std::to_string(i));
  }
}

// A float strength is read as the decimal it prints as: 0.7f with 10 steps keeps 7 steps, as
// Python's int(10 * 0.7) does, although 10 * double(0.7f) is 6.99999988.
TEST(Schedulers, Img2ImgStrengthIsReadAsTheTypedDecimal) {
  SchedulerOptions o;
  o.name = "ddim";
  auto s = make_scheduler(o, sd_config("epsilon", false));
  EXPECT_EQ(s->img2img_start(10, 0.7f), 10 - static_cast<int>(10 * 0.7));
  EXPECT_EQ(s->img2img_start(10, 0.3f), 10 - static_cast<int>(10 * 0.3));
  EXPECT_THROW(s->img2img_start(10, 1.5f), Error);
  EXPECT_THROW(s->img2img_start(10, -0.1f), Error);
}

// ---- structure and errors -----------------------------------------------------------------------

TEST(Schedulers, PndmRepeatsItsSecondTimestepAndMultistepCallsRunInOrder) {
  SchedulerOptions o;
  o.name = "pndm";
  auto pndm = make_scheduler(o, sd_config("epsilon", false));
  for (int steps : {1, 2, 8, 20}) {
    pndm->set_timesteps(steps);
    ASSERT_EQ(pndm->num_calls(), steps == 1 ? 1 : steps + 1);
    if (steps > 1) {
      EXPECT_EQ(pndm->timesteps()[1], pndm->timesteps()[2]);
    }
  }
  // Out-of-order multistep calls are refused.
  pndm->set_timesteps(4);
  const Tensor x = random_tensor({1, 4, 2, 2}, 9);
  EXPECT_THROW(pndm->step(x, 1, x, nullptr), Error);
  o.name = "dpmpp_2m";
  auto dpm = make_scheduler(o, sd_config("epsilon", false));
  dpm->set_timesteps(4);
  EXPECT_THROW(dpm->step(x, 2, x, nullptr), Error);
}

TEST(Schedulers, ClearErrors) {
  const nlohmann::json cfg = sd_config("epsilon", false);
  SchedulerOptions o;
  o.name = "heun";
  EXPECT_THROW(make_scheduler(o, cfg), Error);
  try {
    make_scheduler(o, cfg);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown sampler 'heun'"), std::string::npos) << e.what();
  }
  for (const char* name : {"ddim", "euler", "euler_a", "dpmpp_2m", "pndm"}) {
    o = SchedulerOptions();
    o.name = name;
    auto s = make_scheduler(o, cfg);
    EXPECT_THROW(s->set_timesteps(0), Error) << name;
    EXPECT_THROW(s->set_timesteps(-3), Error) << name;
    EXPECT_THROW(s->step(Tensor::zeros({1}), 0, Tensor::zeros({1}), nullptr), Error)
        << name << " step before set_timesteps";
    nlohmann::json bad = cfg;
    bad["beta_schedule"] = "cubic";
    EXPECT_THROW(make_scheduler(o, bad), Error) << name;
    bad = cfg;
    bad["timestep_spacing"] = "sideways";
    EXPECT_THROW(make_scheduler(o, bad), Error) << name;
    bad = cfg;
    bad["steps_offset"] = "one";
    EXPECT_THROW(make_scheduler(o, bad), Error) << name;
  }
  o = SchedulerOptions();
  o.name = "ddim";
  o.karras = true;
  EXPECT_THROW(make_scheduler(o, cfg), Error);
  o = SchedulerOptions();
  o.name = "euler";
  o.eta = 0.5f;
  EXPECT_THROW(make_scheduler(o, cfg), Error);
  EXPECT_THROW(parse_prediction_type("x0"), Error);
  o = SchedulerOptions();
  o.name = "ddim";
  o.eta = 1.f;
  auto ddim = make_scheduler(o, cfg);
  ddim->set_timesteps(5);
  EXPECT_TRUE(ddim->needs_noise());
  const Tensor x = Tensor::zeros({1, 4, 2, 2});
  EXPECT_THROW(ddim->step(x, 0, x, nullptr), Error) << "eta > 0 without noise";
}

TEST(Schedulers, ConfigOverridesAndPythonNonFiniteNumbers) {
  // A DPM config as diffusers writes it: lambda_min_clipped -Infinity is not JSON.
  const std::string path =
      (std::filesystem::temp_directory_path() / "sdpal_test_scheduler_config.json").string();
  {
    std::ofstream f(path);
    f << R"({"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "scaled_linear",
            "beta_start": 0.00085, "beta_end": 0.012, "lambda_min_clipped": -Infinity,
            "note": "Infinity inside a string stays", "use_karras_sigmas": true})";
  }
  const nlohmann::json cfg = load_scheduler_config(path);
  std::filesystem::remove(path);
  EXPECT_EQ(cfg["lambda_min_clipped"], "-Infinity");
  EXPECT_EQ(cfg["note"], "Infinity inside a string stays");
  SchedulerOptions o;
  o.name = "dpmpp_2m";
  auto karras = make_scheduler(o, cfg);
  karras->set_timesteps(10);
  o.config_overrides = {{"use_karras_sigmas", false}};
  auto plain = make_scheduler(o, cfg);
  plain->set_timesteps(10);
  // The config's use_karras_sigmas holds unless overridden; both start at the largest sigma.
  EXPECT_NE(karras->timesteps(), plain->timesteps());
  EXPECT_FLOAT_EQ(karras->sigmas().front(), plain->sigmas().front());
  // _use_default_values keys count as unset: Euler falls back to its own "linspace".
  o = SchedulerOptions();
  o.name = "euler";
  nlohmann::json pndm_like = sd_config("epsilon", false);
  pndm_like["timestep_spacing"] = "leading";
  auto leading = make_scheduler(o, pndm_like);
  pndm_like["_use_default_values"] = {"timestep_spacing"};
  auto linspace = make_scheduler(o, pndm_like);
  leading->set_timesteps(4), linspace->set_timesteps(4);
  EXPECT_EQ(leading->timesteps().front(), 751);
  EXPECT_EQ(linspace->timesteps().front(), 999);
}

// DPM++ 2M SDE against diffusers' DPMSolverMultistepScheduler(algorithm_type "sde-dpmsolver++")
// stepped over the same model outputs and variance noise (tests/reference/dpmpp_2m_sde.py wrote
// the data with diffusers v0.27.2), with and without Karras sigmas.
TEST(Schedulers, DpmppSdeMatchesDiffusers) {
  const SafetensorsFile f(std::string(SDPAL_SOURCE_DIR) + "/tests/data/dpmpp_2m_sde.safetensors");
  for (const bool karras : {false, true}) {
    const std::string tag = karras ? "karras." : "plain.";
    SchedulerOptions o;
    o.name = "dpmpp_2m_sde";
    o.karras = karras;
    nlohmann::json cfg = sd_config("epsilon", false);
    cfg["timestep_spacing"] = "linspace";
    auto s = make_scheduler(o, cfg);
    const Tensor ts = f.to_f32(tag + "timesteps"), outs = f.to_f32(tag + "model_outputs"),
                 noise = f.to_f32(tag + "variance_noise"), want = f.to_f32(tag + "latents_per_step");
    const int steps = static_cast<int>(ts.numel());
    s->set_timesteps(steps);
    ASSERT_EQ(s->num_calls(), steps);
    for (int i = 0; i < steps; ++i) EXPECT_FLOAT_EQ(s->timesteps()[i], ts[i]) << tag << i;
    Tensor x = f.to_f32(tag + "init");
    const Shape shape = x.shape();
    for (int i = 0; i < steps; ++i) {
      Shape one = want.shape();
      one.erase(one.begin());
      const Tensor m = outs.slice0(i, i + 1).reshaped(shape), z = noise.slice0(i, i + 1).reshaped(shape);
      x = s->step(m, i, x, &z);
      test::expect_close(x, want.slice0(i, i + 1).reshaped(one), 1e-5, 1e-4,
                         tag + "step " + std::to_string(i));
    }
  }
}

}  // namespace
}  // namespace sdpal
