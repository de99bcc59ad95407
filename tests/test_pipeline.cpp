// End-to-end txt2img golden tests (library API and CLI) on every pipeline case of the fixtures.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "formats/safetensors.h"
#include "pipeline/generate.h"
#include "support/cli.h"
#include "support/fixtures.h"
#include "support/golden_params.h"

using namespace sdpal;
using namespace sdpal::test;
namespace fs = std::filesystem;

namespace {

struct PipelineCase {
  std::string fixture, id;
};

std::vector<PipelineCase> all_cases() {
  std::vector<PipelineCase> r;
  if (!fixtures_available()) return {{"tiny-sd1", "pipeline_ddim"}};  // skipped in the test body
  for (const char* fx : {"tiny-sd1", "tiny-sd2", "demo-fashion"}) {
    const nlohmann::json m = manifest(fx);
    for (const auto& c : m["cases"])
      if (c["kind"] == "pipeline") r.push_back({fx, c["id"]});
  }
  return r;
}

class Pipeline : public ::testing::TestWithParam<PipelineCase> {};

TEST_P(Pipeline, MatchesDiffusers) {
  SDPAL_REQUIRE_FIXTURES();
  const auto& pc = GetParam();
  Case c = load_case(pc.fixture, pc.id);
  auto m = StableDiffusion::load(model_dir(pc.fixture));
  GenerateParams p = golden_generate_params(c);
  std::vector<Tensor> per_step;
  p.on_step = [&](int, int, const Tensor& l) { per_step.push_back(l); };
  GenerateResult r = generate(*m, p);
  EXPECT_EQ(r.unet_calls, c.params()["unet_calls"].get<int>());
  // The first diverging step is the most useful diagnostic.
  if (c.file->has("aux.latents_per_step")) {
    Tensor all = c.aux("latents_per_step");
    const double step_atol = c.meta["tolerance"].contains("aux.latents_per_step")
                                 ? c.atol("aux.latents_per_step")
                                 : c.atol("latents");
    ASSERT_EQ(static_cast<int64_t>(per_step.size()), all.dim(0));
    for (size_t i = 0; i < per_step.size(); ++i) {
      Shape s = all.shape();
      s.erase(s.begin());
      Tensor want = all.slice0(i, i + 1).reshaped(s);
      expect_close(per_step[i], want, step_atol, 1e-4, "step " + std::to_string(i));
      if (::testing::Test::HasFailure()) break;
    }
  }
  expect_close(r.latents, c.out("latents"), c.atol("latents"), 1e-4, "latents");
  expect_close(r.image01, c.out("image_01"), c.atol("image_01"), 1e-4, "image_01");
}

std::string case_name(const ::testing::TestParamInfo<PipelineCase>& i) {
  std::string s = i.param.fixture + "_" + i.param.id;
  for (char& ch : s)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Pipeline, ::testing::ValuesIn(all_cases()), case_name);

// The same cases through the CLI: --init-noise / --step-noise in, --save-latents out.
class PipelineCli : public ::testing::TestWithParam<PipelineCase> {};

TEST_P(PipelineCli, MatchesDiffusers) {
  SDPAL_REQUIRE_FIXTURES();
  const auto& pc = GetParam();
  Case c = load_case(pc.fixture, pc.id);
  const auto& prompts = c.params()["prompts"];
  const fs::path dir =
      fs::temp_directory_path() / ("sdpal-cli-" + std::to_string(::getpid()) + pc.fixture + pc.id);
  fs::create_directories(dir);
  GenerateParams p = golden_generate_params(c);
  // The CLI generates a batch from one prompt, so each prompt runs on its own row of the noise.
  for (size_t b = 0; b < prompts.size(); ++b) {
    Tensor noise = c.in("noise").slice0(b, b + 1);
    write_safetensors_f32((dir / "noise.safetensors").string(), {{"noise", &noise}});
    std::vector<std::string> args = {"generate",
                                     "-q",
                                     "--model",
                                     model_dir(pc.fixture),
                                     "--prompt",
                                     prompts[b].get<std::string>(),
                                     "--width",
                                     std::to_string(p.width),
                                     "--height",
                                     std::to_string(p.height),
                                     "--steps",
                                     std::to_string(p.steps),
                                     "--cfg-scale",
                                     c.params()["guidance_scale"].dump(),
                                     "--sampler",
                                     p.sampler,
                                     "--schedule",
                                     p.karras ? "karras" : "default",
                                     "--timestep-spacing",
                                     p.timestep_spacing,
                                     "--init-noise",
                                     (dir / "noise.safetensors").string(),
                                     "--save-latents",
                                     (dir / "latents.safetensors").string(),
                                     "--output",
                                     (dir / "out.png").string()};
    if (p.step_noise) {
      // [steps, B, 4, h, w] -> this prompt's [steps, 1, 4, h, w]
      const Tensor& sn = *p.step_noise;
      const int64_t S = sn.dim(0), B = sn.dim(1), per = sn.numel() / (S * B);
      Tensor mine({S, 1, sn.dim(2), sn.dim(3), sn.dim(4)});
      for (int64_t s = 0; s < S; ++s)
        std::copy_n(sn.data() + (s * B + b) * per, per, mine.data() + s * per);
      write_safetensors_f32((dir / "step.safetensors").string(), {{"step_noise", &mine}});
      args.push_back("--step-noise");
      args.push_back((dir / "step.safetensors").string());
    }
    CliResult r = run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    SafetensorsFile f((dir / "latents.safetensors").string());
    Tensor want = c.out("latents").slice0(b, b + 1);
    expect_close(f.to_f32("latents"), want, c.atol("latents"), 1e-4, "cli latents");
    EXPECT_TRUE(fs::exists(dir / "out.png"));
  }
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PipelineCli, ::testing::ValuesIn(all_cases()), case_name);

}  // namespace

namespace {

// diffusers' from_config keeps every key of the model's scheduler config that the chosen class
// understands: a config that pins timestep_spacing "leading" gives Euler leading timesteps too.
TEST(PipelineScheduler, ConfigTimestepSpacingIsKeptForOtherSamplers) {
  SDPAL_REQUIRE_FIXTURES();
  auto m = StableDiffusion::load(model_dir("tiny-sd1"));
  ASSERT_EQ(m->scheduler_config.value("timestep_spacing", std::string()), "leading");
  auto latents = [&](const std::string& spacing) {
    GenerateParams p;
    p.prompts = {"a cat"};
    p.width = p.height = 64;
    p.steps = 4;
    p.sampler = "euler";
    p.seed = 1;
    p.timestep_spacing = spacing;
    return generate(*m, p).latents;
  };
  const Tensor from_config = latents(""), leading = latents("leading"),
               linspace = latents("linspace");
  EXPECT_EQ(max_abs_diff(from_config, leading), 0.0);
  EXPECT_GT(max_abs_diff(from_config, linspace), 1e-3);
}

}  // namespace
