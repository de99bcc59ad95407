// TAESD encoder/decoder against the golden outputs of taesd.py (fixture "taesd"), plus the
// diffusers AutoencoderTiny layout and the loader's error paths.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>

#include "core/error.h"
#include "formats/safetensors.h"
#include "models/taesd.h"
#include "support/fixtures.h"

using namespace sdpal;
namespace fs = std::filesystem;

namespace {

std::string weights_dir() { return test::fixtures_dir() + "/taesd/weights"; }

// "weights/taesdxl_encoder.safetensors" (the case's first weight file) -> ".../weights/taesdxl".
std::string weights_prefix(const test::Case& c) {
  const std::string first = c.params()["weights"][0].get<std::string>();
  const std::string suffix = "_encoder.safetensors";
  return test::fixtures_dir() + "/taesd/" + first.substr(0, first.size() - suffix.size());
}

Tensor image01(const test::Case& c) {
  Tensor img = c.in("image_u8");  // 0..255 as floats
  for (int64_t i = 0; i < img.numel(); ++i) img[i] = img[i] / 255.f;
  return img;
}

// Encodes the case's photo and decodes the result; checks both against the goldens, and the
// decoder alone on the given latents where the case has them.
void check_case(const std::string& id) {
  const test::Case c = test::load_case("taesd", id);
  const Taesd t = Taesd::load(weights_prefix(c));
  ASSERT_TRUE(t.has_encoder());
  ASSERT_TRUE(t.has_decoder());
  EXPECT_EQ(t.latent_channels(), 4);
  EXPECT_EQ(t.spatial_scale(), 8);

  const Tensor latents = t.encode(image01(c));
  test::expect_close(latents, c.out("latents"), c.atol("latents"), 1e-4, id + " latents");

  const auto t0 = std::chrono::steady_clock::now();
  const Tensor decoded = t.decode(latents);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  test::expect_close(decoded, c.out("decoded"), c.atol("decoded"), 1e-4, id + " decoded");
  std::printf("[ timing   ] %s: decode of %s latents took %.0f ms\n", id.c_str(),
              shape_str(latents.shape()).c_str(), ms);
  testing::Test::RecordProperty("decode_ms", static_cast<int>(ms));

  if (c.file->has("in.latents_given")) {
    test::expect_close(t.decode(c.in("latents_given")), c.out("decoded_from_given"),
                       c.atol("decoded_from_given"), 1e-4, id + " decoded_from_given");
  }
}

// A scratch folder removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path =
        fs::temp_directory_path() / ("sdpal_test_taesd_" + std::to_string(getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// Copies the tensors of `src` into `dst` (appended), renamed by `rename` (nullopt drops one).
void collect(const std::string& src,
             const std::function<std::optional<std::string>(const std::string&)>& rename,
             std::vector<std::pair<std::string, Tensor>>* dst) {
  SafetensorsFile f(src);
  for (const TensorView& v : f.tensors())
    if (std::optional<std::string> n = rename(v.name)) dst->emplace_back(*n, f.to_f32(v.name));
}

void write_all(const fs::path& file, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  std::vector<std::pair<std::string, const Tensor*>> refs;
  for (const auto& [name, t] : tensors) refs.emplace_back(name, &t);
  write_safetensors_f32(file.string(), refs);
}

// Expects `fn` to throw sdpal::Error whose message contains every string of `needles`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no sdpal::Error thrown";
  } catch (const Error& e) {
    for (const std::string& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "message '" << e.what() << "' lacks '" << n << "'";
  }
}

}  // namespace

TEST(Taesd, Taesd256) {
  SDPAL_REQUIRE_FIXTURES();
  check_case("taesd_256x256");
}

TEST(Taesd, Taesd512) {
  SDPAL_REQUIRE_FIXTURES();
  check_case("taesd_512x512");
}

TEST(Taesd, TaesdXl256) {
  SDPAL_REQUIRE_FIXTURES();
  check_case("taesdxl_256x256");
}

// Every case of the fixture is covered by a test above.
TEST(Taesd, AllFixtureCasesCovered) {
  SDPAL_REQUIRE_FIXTURES();
  const std::set<std::string> tested = {"taesd_256x256", "taesd_512x512", "taesdxl_256x256"};
  for (const auto& c : test::manifest("taesd")["cases"])
    EXPECT_TRUE(tested.count(c["id"].get<std::string>())) << c["id"];
}

// The same weights in diffusers' AutoencoderTiny layout (one file, "encoder.layers.<i>" and
// "decoder.layers.<i-1>": diffusers has no Clamp module) give the golden results.
TEST(Taesd, DiffusersLayout) {
  SDPAL_REQUIRE_FIXTURES();
  TempDir tmp;
  std::vector<std::pair<std::string, Tensor>> tensors;
  collect(
      weights_dir() + "/taesdxl_encoder.safetensors",
      [](const std::string& n) { return "encoder.layers." + n; }, &tensors);
  collect(
      weights_dir() + "/taesdxl_decoder.safetensors",
      [](const std::string& n) {
        const size_t dot = n.find('.');
        return "decoder.layers." + std::to_string(std::stoi(n.substr(0, dot)) - 1) + n.substr(dot);
      },
      &tensors);
  write_all(tmp.path / "diffusion_pytorch_model.safetensors", tensors);
  std::ofstream(tmp.path / "config.json")
      << R"({"_class_name": "AutoencoderTiny", "act_fn": "relu", "upsampling_scaling_factor": 2})";

  const Taesd t = Taesd::load(tmp.path.string());
  ASSERT_TRUE(t.has_encoder());
  ASSERT_TRUE(t.has_decoder());
  EXPECT_EQ(t.latent_channels(), 4);
  EXPECT_EQ(t.spatial_scale(), 8);

  const test::Case c = test::load_case("taesd", "taesdxl_256x256");
  test::expect_close(t.encode(image01(c)), c.out("latents"), c.atol("latents"), 1e-4,
                     "diffusers layout latents");
  test::expect_close(t.decode(c.in("latents_given")), c.out("decoded_from_given"),
                     c.atol("decoded_from_given"), 1e-4, "diffusers layout decoded_from_given");
}

// Decoder-only use: only <prefix>_decoder.safetensors present; also a single-file path.
TEST(Taesd, DecoderOnly) {
  SDPAL_REQUIRE_FIXTURES();
  TempDir tmp;
  fs::copy_file(weights_dir() + "/taesd_decoder.safetensors",
                tmp.path / "taesd_decoder.safetensors");
  for (const std::string& where : {tmp.path.string(), (tmp.path / "taesd").string(),
                                   (tmp.path / "taesd_decoder.safetensors").string()}) {
    const Taesd t = Taesd::load(where);
    EXPECT_FALSE(t.has_encoder()) << where;
    EXPECT_TRUE(t.has_decoder()) << where;
    EXPECT_EQ(t.latent_channels(), 4);
    EXPECT_THROW(t.encode(Tensor::zeros({1, 3, 16, 16})), Error);
    const Tensor y = t.decode(Tensor::zeros({1, 4, 2, 3}));
    EXPECT_EQ(shape_str(y.shape()), "[1, 3, 16, 24]");
  }
}

TEST(Taesd, LoadErrorsNameTheFile) {
  SDPAL_REQUIRE_FIXTURES();
  TempDir tmp;
  const std::string prefix = (tmp.path / "nothing").string();
  expect_error([&] { Taesd::load(prefix); },
               {prefix + "_encoder.safetensors", prefix + "_decoder.safetensors"});
  expect_error([&] { Taesd::load(tmp.path.string()); }, {tmp.path.string()});
  // The fixture's folder holds both taesd and taesdxl: ambiguous without a prefix.
  expect_error([&] { Taesd::load(weights_dir()); }, {"taesd, taesdxl"});

  // A decoder lacking one convolution of a block.
  std::vector<std::pair<std::string, Tensor>> tensors;
  collect(
      weights_dir() + "/taesd_decoder.safetensors",
      [](const std::string& n) -> std::optional<std::string> {
        if (n == "9.conv.2.weight" || n == "9.conv.2.bias") return std::nullopt;
        return n;
      },
      &tensors);
  const fs::path broken = tmp.path / "broken_decoder.safetensors";
  write_all(broken, tensors);
  expect_error([&] { Taesd::load((tmp.path / "broken").string()); },
               {broken.string(), "9.conv.2.weight"});

  // A decoder lacking a whole block (a gap that is not a parameter-free layer).
  tensors.clear();
  collect(
      weights_dir() + "/taesd_decoder.safetensors",
      [](const std::string& n) -> std::optional<std::string> {
        if (n.rfind("4.", 0) == 0) return std::nullopt;
        return n;
      },
      &tensors);
  write_all(broken, tensors);
  expect_error([&] { Taesd::load(broken.string()); }, {broken.string(), "layer 4"});
}
