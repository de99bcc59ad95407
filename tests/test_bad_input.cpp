// Bad input to `sdpal generate`: every case must exit non-zero with ONE stderr line
// "sdpal: error: ..." that names the problem (and the file or flag), and leave no output PNG,
// latents file or temp file behind. Broken models are made from copies of the tiny fixture models
// in a temp folder; ../shared is never modified.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/png.h"
#include "formats/safetensors.h"
#include "support/cli.h"
#include "support/fixtures.h"

using namespace sdpal;
using namespace sdpal::test;
namespace fs = std::filesystem;

namespace {

const char* kUnetFile = "unet/diffusion_pytorch_model.safetensors";

// Each test gets a fresh work folder holding an empty output folder `out/`.
class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = fs::temp_directory_path() /
            ("sdpal_bad_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(work_);
    fs::create_directories(work_ / "out");
  }
  void TearDown() override { fs::remove_all(work_); }

  std::string work(const std::string& name) const { return (work_ / name).string(); }
  std::string out_png() const { return work("out/out.png"); }

  // A private, writable copy of a fixture's model folder.
  std::string copy_model(const std::string& fixture = "tiny-sd1") const {
    const fs::path dst = work_ / (fixture + "-copy");
    fs::copy(model_dir(fixture), dst, fs::copy_options::recursive);
    return dst.string();
  }

  // Runs `sdpal generate -p ... -o out/out.png <args>` and checks the failure contract: non-zero
  // exit, exactly one stderr line starting "sdpal: error:" that contains every string in `want`,
  // and nothing written: the output folder stays empty and no temp file appears anywhere.
  std::string expect_failure(std::vector<std::string> args, const std::vector<std::string>& want,
                             bool default_output = true) {
    std::vector<std::string> all = {"generate", "-q", "-p", "a red cube", "-s", "1"};
    if (default_output) all.insert(all.end(), {"-o", out_png()});
    all.insert(all.end(), args.begin(), args.end());
    const CliResult r = run_cli(all);
    EXPECT_NE(r.exit_code, 0) << "stderr: " << r.err;
    EXPECT_EQ(r.err.rfind("sdpal: error: ", 0), 0u) << "stderr: " << r.err;
    EXPECT_TRUE(!r.err.empty() && r.err.back() == '\n' &&
                std::count(r.err.begin(), r.err.end(), '\n') == 1)
        << "expected exactly one line on stderr, got: " << r.err;
    for (const auto& w : want)
      EXPECT_NE(r.err.find(w), std::string::npos) << "expected '" << w << "' in: " << r.err;
    EXPECT_TRUE(fs::is_empty(work_ / "out")) << "a failing run left files in the output folder";
    for (const auto& e : fs::recursive_directory_iterator(work_))
      EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos)
          << "temp file left behind: " << e.path();
    return r.err;
  }

  fs::path work_;
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

void write_json(const std::string& path, const nlohmann::json& j) { write_text(path, j.dump(2)); }

// Rewrites `dst` with the tensors of `src` (which must be another file): `edit` may change each
// tensor's dtype/shape/data in place, and `extra` tensors are appended.
void rewrite_safetensors(const std::string& src, const std::string& dst,
                         const std::function<void(TensorToWrite&)>& edit,
                         const std::vector<TensorToWrite>& extra = {}) {
  SafetensorsFile f(src);
  std::vector<TensorToWrite> tensors;
  for (const auto& v : f.tensors()) {
    TensorToWrite t{v.name, v.dtype, v.shape, v.data};
    if (edit) edit(t);
    tensors.push_back(t);
  }
  tensors.insert(tensors.end(), extra.begin(), extra.end());
  write_safetensors(dst, tensors, f.metadata());
}

// ---- sanity: the harness sees a good run succeed and write exactly the PNG ----

TEST_F(BadInput, GoodRunWritesOnlyThePng) {
  SDPAL_REQUIRE_FIXTURES();
  const CliResult r = run_cli({"generate", "-q", "-p", "a red cube", "-s", "1", "--steps", "1",
                               "-m", model_dir("tiny-sd1"), "-o", out_png()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out_png()));
  EXPECT_EQ(std::distance(fs::directory_iterator(work_ / "out"), fs::directory_iterator()), 1);
}

// ---- the model ----

TEST_F(BadInput, MissingModelPath) {
  const std::string missing = work("no-such-model");
  expect_failure({"-m", missing}, {"model not found", missing});
}

TEST_F(BadInput, FolderThatIsNotADiffusersModel) {
  fs::create_directories(work("photos"));
  write_text(work("photos/readme.txt"), "holiday pictures");
  expect_failure({"-m", work("photos")},
                 {work("photos"), "is not a diffusers model folder", "model_index.json"});
}

TEST_F(BadInput, MissingUnetWeightFile) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = copy_model();
  fs::remove(fs::path(m) / kUnetFile);
  expect_failure({"-m", m}, {m + "/unet", "no diffusion_pytorch_model.safetensors", "UNet"});
}

TEST_F(BadInput, UnetWeightsOnlyAsPickle) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = copy_model();
  fs::rename(fs::path(m) / kUnetFile, fs::path(m) / "unet/diffusion_pytorch_model.bin");
  expect_failure({"-m", m}, {m + "/unet", "diffusion_pytorch_model.bin", "execute code"});
}

TEST_F(BadInput, TruncatedUnetSafetensors) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = copy_model();
  const fs::path unet = fs::path(m) / kUnetFile;
  fs::resize_file(unet, fs::file_size(unet) / 2);
  expect_failure({"-m", m}, {unet.string(), "not a valid safetensors file", "(truncated?)"});
}

TEST_F(BadInput, UnetTensorWithWrongShape) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = copy_model();
  const std::string name = "mid_block.resnets.0.conv1.weight";
  Shape original;
  // The same tensor as a 1x1 convolution: a plausible file, but not what the config describes.
  rewrite_safetensors(fs::path(model_dir("tiny-sd1")) / kUnetFile, fs::path(m) / kUnetFile,
                      [&](TensorToWrite& t) {
                        if (t.name != name) return;
                        original = t.shape;
                        t.shape[2] = t.shape[3] = 1;
                      });
  ASSERT_EQ(original.size(), 4u);
  Shape changed = original;
  changed[2] = changed[3] = 1;
  expect_failure({"-m", m}, {"'" + name + "'", (fs::path(m) / kUnetFile).string(),
                             shape_str(changed), shape_str(original)});
}

TEST_F(BadInput, UnknownExtraTensorInUnet) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = copy_model();
  const std::vector<float> gate(4, 0.5f);
  rewrite_safetensors(fs::path(model_dir("tiny-sd1")) / kUnetFile, fs::path(m) / kUnetFile, {},
                      {{"down_blocks.0.attentions.0.gate.weight", DType::F32, {4}, gate.data()}});
  expect_failure({"-m", m},
                 {"unknown tensor", "down_blocks.0.attentions.0.gate.weight", kUnetFile});
}

TEST_F(BadInput, ConfigJsonThatIsNotJson) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = copy_model();
  write_text(m + "/unet/config.json", "{\n  \"in_channels\": 4,\n  \"sample_size\": \n");
  expect_failure({"-m", m}, {m + "/unet/config.json", "invalid JSON"});
}

TEST_F(BadInput, UnsupportedDownBlockType) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = copy_model();
  nlohmann::json cfg = read_json(m + "/unet/config.json");
  cfg["down_block_types"][0] = "AttnDownBlock2D";
  write_json(m + "/unet/config.json", cfg);
  expect_failure({"-m", m},
                 {m + "/unet/config.json", "unsupported down block type 'AttnDownBlock2D'"});
}

// SDXL's added conditions need their widths in the config.
TEST_F(BadInput, SdxlTextTimeEmbeddingInUnetConfig) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = copy_model();
  nlohmann::json cfg = read_json(m + "/unet/config.json");
  cfg["addition_embed_type"] = "text_time";
  write_json(m + "/unet/config.json", cfg);
  expect_failure({"-m", m}, {m + "/unet/config.json", "'addition_time_embed_dim'", "missing"});
  cfg["addition_embed_type"] = "image";
  write_json(m + "/unet/config.json", cfg);
  expect_failure({"-m", m},
                 {m + "/unet/config.json", "addition_embed_type 'image'", "not supported"});
}

// An SDXL folder whose second text encoder is a plain CLIPTextModel (no text_projection).
TEST_F(BadInput, SdxlSecondTextEncoderWithoutProjection) {
  SDPAL_REQUIRE_FIXTURES();
  if (!fs::exists(model_dir("tiny-sdxl"))) GTEST_SKIP() << "no tiny-sdxl fixture";
  const std::string m = copy_model("tiny-sdxl");
  nlohmann::json cfg = read_json(m + "/text_encoder_2/config.json");
  cfg["architectures"] = {"CLIPTextModel"};
  write_json(m + "/text_encoder_2/config.json", cfg);
  expect_failure({"-m", m}, {m + "/text_encoder_2/config.json", "CLIPTextModelWithProjection"});
}

TEST_F(BadInput, CkptIsRefusedBecausePickleCanExecuteCode) {
  // torch.save's zip container; the content does not matter, it is never opened as a pickle.
  write_text(work("model.ckpt"), std::string("PK\x03\x04", 4) + "archive/data.pkl");
  expect_failure({"-m", work("model.ckpt")}, {work("model.ckpt"), "pickle", "execute code"});
  // The same bytes behind a .safetensors name are recognised too.
  write_text(work("renamed.safetensors"), std::string("PK\x03\x04", 4) + "archive/data.pkl");
  expect_failure({"-m", work("renamed.safetensors")},
                 {work("renamed.safetensors"), "pickle", "execute code"});
}

// ---- sizes and steps ----

TEST_F(BadInput, WidthAndHeightNotMultiplesOf8) {
  SDPAL_REQUIRE_FIXTURES();
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "1", "--width", "100"},
                 {"--width", "multiple of 8", "100"});
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "1", "--height", "63"},
                 {"--height", "multiple of 8", "63"});
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "1", "--width", "-64"},
                 {"--width", "-64"});
}

TEST_F(BadInput, StepsZeroOrNegative) {
  SDPAL_REQUIRE_FIXTURES();
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "0"}, {"--steps", "got 0"});
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "-3"}, {"--steps", "got -3"});
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "many"}, {"--steps", "many"});
}

TEST_F(BadInput, AbsurdImageSize) {
  SDPAL_REQUIRE_FIXTURES();
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "1", "--width", "100000"},
                 {"--width", "100000", "8192"});
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "1", "--height", "1048576"},
                 {"--height", "1048576"});
}

TEST_F(BadInput, PreviewWithoutTaesdIsRefused) {
  SDPAL_REQUIRE_FIXTURES();
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "1", "--preview", work("p.png")},
                 {"--preview needs --taesd"});
}

// ---- inputs given by file ----

TEST_F(BadInput, InitImageMissingNotPngOrTruncated) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = model_dir("tiny-sd1");
  expect_failure({"-m", m, "--steps", "1", "--init-image", work("nope.png")},
                 {work("nope.png"), "No such file"});

  write_text(work("text.png"), "this is not an image\n");
  expect_failure({"-m", m, "--steps", "1", "--init-image", work("text.png")},
                 {work("text.png"), "is not a PNG file"});

  std::vector<uint8_t> rgb(64 * 64 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 7);
  write_png(work("full.png"), rgb.data(), 64, 64);
  fs::copy_file(work("full.png"), work("cut.png"));
  fs::resize_file(work("cut.png"), fs::file_size(work("full.png")) / 2);
  expect_failure({"-m", m, "--steps", "1", "--init-image", work("cut.png")},
                 {work("cut.png"), "truncated"});
}

TEST_F(BadInput, InitNoiseWithWrongShape) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = model_dir("tiny-sd1");
  // 64x128 pixels -> latents [1, 4, 8, 16]; give [1, 4, 16, 8] instead.
  const Tensor noise = Tensor::zeros({1, 4, 16, 8});
  write_safetensors_f32(work("noise.safetensors"), {{"noise", &noise}});
  expect_failure(
      {"-m", m, "--steps", "1", "-H", "64", "-W", "128", "--init-noise", work("noise.safetensors")},
      {"--init-noise", "[1, 4, 16, 8]", "[1, 4, 8, 16]"});
  // Several tensors, none called 'noise'.
  write_safetensors_f32(work("two.safetensors"), {{"a", &noise}, {"b", &noise}});
  expect_failure({"-m", m, "--steps", "1", "--init-noise", work("two.safetensors")},
                 {"--init-noise", work("two.safetensors"), "no tensor named 'noise'"});
  write_text(work("junk.safetensors"), "junk");
  expect_failure({"-m", m, "--steps", "1", "--init-noise", work("junk.safetensors")},
                 {work("junk.safetensors"), "not a valid safetensors file"});
}

TEST_F(BadInput, UnknownSampler) {
  SDPAL_REQUIRE_FIXTURES();
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "1", "--sampler", "heun_karras"},
                 {"--sampler", "heun_karras"});
}

// ---- outputs ----

// Output locations are checked before anything else: with a model that does not even exist, the
// error is still about the output, so sampling cannot have started.
TEST_F(BadInput, OutputInMissingFolderFailsBeforeSampling) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string missing = work("out/missing/out.png");
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "1", "-o", missing},
                 {"--output", missing, "does not exist"}, /*default_output=*/false);
  expect_failure({"-m", work("no-such-model"), "--steps", "1", "-o", missing},
                 {"--output", "does not exist"}, /*default_output=*/false);
  EXPECT_FALSE(fs::exists(work("out/missing")));
}

TEST_F(BadInput, LatentsInMissingFolderFailBeforeSampling) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string missing = work("out/missing/latents.safetensors");
  expect_failure({"-m", model_dir("tiny-sd1"), "--steps", "1", "--save-latents", missing},
                 {"--save-latents", missing, "does not exist"});
  expect_failure({"-m", work("no-such-model"), "--steps", "1", "--save-latents", missing},
                 {"--save-latents", "does not exist"});
}

TEST_F(BadInput, OutputThatIsAFolder) {
  SDPAL_REQUIRE_FIXTURES();
  fs::create_directories(work("out/taken.png"));
  const CliResult r =
      run_cli({"generate", "-q", "-p", "x", "--steps", "1", "-m", model_dir("tiny-sd1"), "-o",
               work("out/taken.png"), "--save-latents", work("out/latents.safetensors")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err.rfind("sdpal: error: --output", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("is a folder"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(work("out/latents.safetensors")));
  EXPECT_TRUE(fs::is_directory(work("out/taken.png")));
  EXPECT_TRUE(fs::is_empty(work("out/taken.png")));
}

}  // namespace
