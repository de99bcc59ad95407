// A single-file (original layout) copy of each fixture model, written with the key map, loads
// through the same entry point as folders and generates the same images.
#include <gtest/gtest.h>

#include <filesystem>

#include "formats/checkpoint_keymap.h"
#include "pipeline/generate.h"
#include "support/fixtures.h"

using namespace sdpal;
using namespace sdpal::test;
namespace fs = std::filesystem;

namespace {

class SingleFile : public ::testing::TestWithParam<std::string> {};

TEST_P(SingleFile, SameOutputsAsFolder) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string fx = GetParam();
  const fs::path dir = fs::temp_directory_path() / ("sdpal-single-" + fx);
  fs::create_directories(dir);
  const std::string file = (dir / "model.safetensors").string();
  write_single_file(model_dir(fx), file);

  LoadOptions opt;
  opt.tokenizer_dir = model_dir(fx) + "/tokenizer";  // single files carry no tokenizer
  if (fx == "tiny-sd2") opt.prediction_type = "v";   // as users pass --prediction-type v
  auto single = StableDiffusion::load(file, opt);
  auto folder = StableDiffusion::load(model_dir(fx));
  EXPECT_EQ(single->kind, folder->kind);

  // Golden DDIM case through the single file.
  Case c = load_case(fx, "pipeline_ddim");
  GenerateParams p;
  for (const auto& s : c.params()["prompts"]) p.prompts.push_back(s);
  p.width = c.params()["width"];
  p.height = c.params()["height"];
  p.steps = c.params()["num_inference_steps"];
  p.cfg_scale = c.params()["guidance_scale"].get<float>();
  p.sampler = "ddim";
  p.init_noise = c.in("noise");
  GenerateResult r = generate(*single, p);
  expect_close(r.latents, c.out("latents"), c.atol("latents"), 1e-4, "latents");
  expect_close(r.image01, c.out("image_01"), c.atol("image_01"), 1e-4, "image_01");

  // Component outputs are identical (same bytes, same arithmetic).
  Tensor a = encode_prompts(*single, {"a red cube"}, 1, nullptr);
  Tensor b = encode_prompts(*folder, {"a red cube"}, 1, nullptr);
  EXPECT_EQ(max_abs_diff(a, b), 0.0);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SingleFile,
                         ::testing::Values("tiny-sd1", "tiny-sd2", "demo-fashion"));

}  // namespace
