// A single-file (original layout) copy of each fixture model, written with the key map, loads
// through the same entry point as folders and generates the same images.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/error.h"
#include "formats/checkpoint_keymap.h"
#include "formats/safetensors.h"
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
  const fs::path dir =
      fs::temp_directory_path() / ("sdpal-single-" + std::to_string(::getpid()) + fx);
  fs::create_directories(dir);
  const std::string file = (dir / "model.safetensors").string();
  write_single_file(model_dir(fx), file);

  // The single file alone: tokenizer (SD 2 pads with "!") and prediction type are inferred.
  auto single = StableDiffusion::load(file);
  auto folder = StableDiffusion::load(model_dir(fx));
  EXPECT_EQ(single->kind, folder->kind);
  EXPECT_EQ(single->tokenizer->pad(), folder->tokenizer->pad());
  EXPECT_EQ(single->scheduler_config["prediction_type"],
            folder->scheduler_config["prediction_type"]);

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

// Which prediction type a single file gets: --prediction-type, else its ModelSpec metadata, else
// (SD 2.x) A1111's test of the weights.
TEST(SingleFilePrediction, MetadataThenOverride) {
  SDPAL_REQUIRE_FIXTURES();
  const fs::path dir =
      fs::temp_directory_path() / ("sdpal-single-pred-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string file = (dir / "model.safetensors").string();
  write_single_file(model_dir("tiny-sd2"), file);
  EXPECT_EQ(SafetensorsFile(file).metadata().at("modelspec.prediction_type"), "v");
  // Rewrite the same tensors with metadata saying epsilon: the loader follows the file.
  {
    const SafetensorsFile src(file);
    std::vector<TensorToWrite> ts;
    for (const TensorView& v : src.tensors()) ts.push_back({v.name, v.dtype, v.shape, v.data});
    auto meta = src.metadata();  // the embedded configs stay (tiny shapes need them)
    meta["modelspec.prediction_type"] = "epsilon";
    write_safetensors((dir / "eps.safetensors").string(), ts, meta);
    meta["modelspec.prediction_type"] = "x0";
    write_safetensors((dir / "bad.safetensors").string(), ts, meta);
    meta.erase("modelspec.prediction_type");
    write_safetensors((dir / "none.safetensors").string(), ts, meta);
  }
  auto eps = StableDiffusion::load((dir / "eps.safetensors").string());
  EXPECT_EQ(eps->scheduler_config["prediction_type"], "epsilon");
  LoadOptions opt;
  opt.prediction_type = "v";
  auto forced = StableDiffusion::load((dir / "eps.safetensors").string(), opt);
  EXPECT_EQ(forced->scheduler_config["prediction_type"], "v_prediction");
  try {
    StableDiffusion::load((dir / "bad.safetensors").string());
    ADD_FAILURE() << "an unknown prediction type in the metadata was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("modelspec.prediction_type is 'x0'"), std::string::npos)
        << e.what();
  }
  // No metadata: the weights decide (random weights here, so only that it is one of the two).
  auto none = StableDiffusion::load((dir / "none.safetensors").string());
  const std::string pt = none->scheduler_config["prediction_type"];
  EXPECT_TRUE(pt == "epsilon" || pt == "v_prediction") << pt;
  fs::remove_all(dir);
}

}  // namespace
