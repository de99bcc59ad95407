// A full disk while writing: every writer (safetensors, compressed weights and a whole compressed
// model, analysis JSON, PNG) fails with "disk full or file too large writing PATH", removes its
// temp file and leaves an existing target as it was. The full disk is RLIMIT_FSIZE with SIGXFSZ
// ignored (write(2) then fails with EFBIG past the limit, as it fails with ENOSPC on a full disk):
// no root, no tmpfs needed.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/json_file.h"
#include "formats/compressed_format.h"
#include "formats/png.h"
#include "formats/safetensors.h"
#include "support/cli.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"

using namespace sdpal;
namespace fs = std::filesystem;

namespace {

// Files this process (and the children it starts meanwhile) writes stop at `bytes`.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    rlimit r = saved_;
    r.rlim_cur = bytes;
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &r), 0);
    saved_handler_ = std::signal(SIGXFSZ, SIG_IGN);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, saved_handler_);
  }

 private:
  rlimit saved_{};
  void (*saved_handler_)(int) = SIG_DFL;
};

constexpr rlim_t kLimit = 64 << 10;

class WriteErrors : public sdpal::test::TempDirTest {
 protected:
  // Runs `write` under the limit: it must throw the disk-full error naming `target`, and leave the
  // folder as `before` (no temp file; an existing target unchanged).
  template <class F>
  void expect_disk_full(const std::string& target, F write) {
    const std::vector<std::string> before = listing();
    const std::string old = fs::exists(target) ? read_text(target) : std::string();
    std::string message;
    {
      FileSizeLimit limit(kLimit);
      try {
        write();
      } catch (const Error& e) {
        message = e.what();
      }
    }
    EXPECT_NE(message.find("disk full or file too large writing " + target), std::string::npos)
        << "message: '" << message << "'";
    EXPECT_EQ(listing(), before) << "a temp file was left behind";
    if (fs::exists(target)) {
      EXPECT_EQ(read_text(target), old) << "the old target changed";
    }
  }
  static std::string read_text(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
  }
};

TEST_F(WriteErrors, SafetensorsOverTheLimitFailsAndKeepsTheOldFile) {
  const std::vector<float> big(1 << 20, 1.f), small(16, 2.f);
  const std::string p = path("w.safetensors");
  write_safetensors(p, {{"w", DType::F32, {16}, small.data()}});
  expect_disk_full(p, [&] { write_safetensors(p, {{"w", DType::F32, {1 << 20}, big.data()}}); });
  EXPECT_EQ(SafetensorsFile(p).to_f32("w")[0], 2.f);
  // A new file: nothing at all afterwards.
  expect_disk_full(path("new.safetensors"), [&] {
    write_safetensors(path("new.safetensors"), {{"w", DType::F32, {1 << 20}, big.data()}});
  });
}

TEST_F(WriteErrors, CompressedWeightsOverTheLimitFail) {
  PalettizedWeight w;
  w.shape = {1024, 512};
  w.nbits = 4;
  w.entries = 16;
  for (int i = 0; i < 16; ++i) w.lut.push_back(float_to_half(static_cast<float>(i)));
  w.indices.assign(1024 * 512 / 2, 0x21);
  const std::string p = path("c.safetensors");
  expect_disk_full(p, [&] { write_compressed_safetensors(p, {{"layer.weight", w}}); });
}

TEST_F(WriteErrors, JsonDocumentOverTheLimitFails) {
  nlohmann::ordered_json j;
  j["measurements"] = std::vector<double>(30000, 12.345678);
  const std::string p = path("analysis.json");
  write_json_document(p, {{"small", 1}});
  expect_disk_full(p, [&] { write_json_document(p, j); });
}

TEST_F(WriteErrors, PngOverTheLimitFails) {
  std::vector<uint8_t> rgb(512 * 512 * 3);
  std::mt19937 rng(1);
  for (auto& v : rgb) v = static_cast<uint8_t>(rng());  // noise: does not compress below 64 KB
  const std::string p = path("out.png");
  expect_disk_full(p, [&] { write_png(p, rgb.data(), 512, 512, {{"parameters", "x"}}); });
}

TEST_F(WriteErrors, CompressCliOnAFullDiskSaysSoAndLeavesNothing) {
  if (!test::fixtures_available()) GTEST_SKIP() << "fixtures not found";
  const std::string out = path("out");
  test::CliResult r;
  {
    FileSizeLimit limit(kLimit);  // inherited by the child; tiny-sd1's UNet file is 5 MB
    r = test::run_cli(
        {"compress", "-m", test::model_dir("tiny-sd1"), "-o", out, "--min-elements", "1000"});
  }
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("disk full or file too large writing"), std::string::npos) << r.err;
  EXPECT_EQ(listing(), std::vector<std::string>{}) << "a temp folder or a partial output was left";
}

}  // namespace
