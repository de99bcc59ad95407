// A model file truncated or rewritten in place while sdpal has it mapped gives an error naming the
// file, not a SIGBUS (core/file_mapping.h); a file replaced by rename is no change at all.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/file_mapping.h"
#include "formats/safetensors.h"
#include "pipeline/generate.h"
#include "pipeline/sd_model.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"

using namespace sdpal;
namespace fs = std::filesystem;

namespace {

class FileMappingTest : public sdpal::test::TempDirTest {
 protected:
  // A 4 MB tensor of ones, so that most of the file lies past a truncation to a few pages.
  std::string write_ones(const std::string& name) {
    const std::vector<float> ones(1 << 20, 1.f);
    const std::string p = path(name);
    write_safetensors(p, {{"w", DType::F32, {1 << 20}, ones.data()}});
    return p;
  }
};

// Throws sdpal::Error whose message contains `what`.
template <class F>
void expect_error(F f, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << what << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST_F(FileMappingTest, ReadingATruncatedFileIsAnErrorNotSigbus) {
  const std::string p = write_ones("w.safetensors");
  SafetensorsFile f(p);
  ASSERT_EQ(truncate(p.c_str(), 8192), 0);
  expect_error([&] { f.to_f32("w"); }, p + " was truncated while in use");
  // Reading the mapping directly (as kernels do) sees zeros past the end; the check then fails.
  const TensorView& v = f.get("w");
  double sum = 0;
  const auto* w = reinterpret_cast<const float*>(v.data);
  for (int64_t i = 0; i < v.numel(); ++i) sum += w[i];
  EXPECT_LT(sum, 8192.0 / 4);
  expect_error([&] { f.check_intact(); }, "was truncated while in use");
}

TEST_F(FileMappingTest, TruncatedToZeroAndSecondMappingUnaffected) {
  const std::string a = write_ones("a.safetensors"), b = write_ones("b.safetensors");
  SafetensorsFile fa(a), fb(b);
  ASSERT_EQ(truncate(a.c_str(), 0), 0);
  expect_error([&] { fa.to_f32("w"); }, a + " was truncated while in use");
  const Tensor t = fb.to_f32("w");
  EXPECT_EQ(t[t.numel() - 1], 1.f);
  EXPECT_NO_THROW(fb.check_intact());
}

TEST_F(FileMappingTest, RewrittenInPlaceIsAnError) {
  const std::string p = write_ones("w.safetensors");
  FileMapping m(p);
  EXPECT_NO_THROW(m.check_intact());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a later modification time
  const int fd = open(p.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const float two = 2.f;
  ASSERT_EQ(pwrite(fd, &two, sizeof two, static_cast<off_t>(m.size() - sizeof two)),
            static_cast<ssize_t>(sizeof two));
  close(fd);
  expect_error([&] { m.check_intact(); }, p + " was changed while in use");
}

TEST_F(FileMappingTest, ReplacedByRenameIsNoChange) {
  const std::string p = write_ones("w.safetensors");
  SafetensorsFile f(p);
  const std::vector<float> twos(16, 2.f);
  write_safetensors(p, {{"w", DType::F32, {16}, twos.data()}});  // atomic: a rename
  EXPECT_NO_THROW(f.check_intact());
  EXPECT_EQ(f.to_f32("w")[(1 << 20) - 1], 1.f);  // still the old file
}

TEST_F(FileMappingTest, GenerateWithATruncatedUnetFileFailsNamingIt) {
  if (!test::fixtures_available()) GTEST_SKIP() << "fixtures not found";
  const fs::path model = dir_ / "model";
  fs::copy(test::model_dir("tiny-sd1"), model, fs::copy_options::recursive);
  auto m = StableDiffusion::load(model.string());
  const fs::path unet = model / "unet" / "diffusion_pytorch_model.safetensors";
  ASSERT_EQ(truncate(unet.c_str(), static_cast<off_t>(fs::file_size(unet) / 2)), 0);
  GenerateParams p;
  p.prompts = {"a red cube"};
  p.width = p.height = 64;
  p.steps = 2;
  p.sampler = "ddim";
  expect_error([&] { generate(*m, p); }, unet.string() + " was truncated while in use");
}

}  // namespace
