// Crash safety of the outputs: `sdpal compress` and `sdpal analyze` on tiny-sd1 are killed with
// SIGKILL at every crash point of the atomic writers (SDPAL_TEST_CRASH_AT=N kills the process at
// its N-th point: temp created, data written, synced, renamed, folder swapped, old folder removed;
// core/crash_point.h). After each kill the output must be absent, the previous complete version or
// the new complete version, and the next run must leave no temp files behind. analyze, killed
// again and again while resuming its own document, must end with the same document as an
// uninterrupted run.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "compression/analysis.h"
#include "formats/safetensors.h"
#include "support/cli.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"

using namespace sdpal;
using sdpal::test::CliResult;
using sdpal::test::run_cli;
namespace fs = std::filesystem;

namespace {

class CrashSafety : public sdpal::test::TempDirTest {};

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Every regular file under `dir` by relative path, with its contents.
std::map<std::string, std::string> tree(const fs::path& dir) {
  std::map<std::string, std::string> t;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) t[e.path().lexically_relative(dir).string()] = read_text(e.path());
  return t;
}

// Entries of `dir` other than the names in `keep`: temp files and folders left behind.
std::vector<std::string> leftovers(const fs::path& dir, const std::vector<std::string>& keep) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (std::find(keep.begin(), keep.end(), n) == keep.end()) names.push_back(n);
  }
  return names;
}

CliResult run_killed_at(const std::vector<std::string>& args, int point) {
  return run_cli(args, {"SDPAL_TEST_CRASH_AT=" + std::to_string(point)});
}

// Every weight file of a compressed model opens (header and extents valid).
void expect_loadable(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().extension() == ".safetensors") {
      EXPECT_NO_THROW(SafetensorsFile f(e.path()));
    }
}

TEST_F(CrashSafety, CompressKilledAtEveryWriteLeavesAbsentOldOrNewOutput) {
  if (!test::fixtures_available()) GTEST_SKIP() << "fixtures not found";
  const std::string model = test::model_dir("tiny-sd1");
  auto compress = [&](const std::string& out, const std::string& nbits) {
    return std::vector<std::string>{"compress",       "-m",   model,    "-o", out, "--nbits", nbits,
                                    "--min-elements", "1000", "--force"};
  };
  // The previous version (4-bit) and the new one (2-bit), each from an uninterrupted run.
  ASSERT_EQ(run_cli(compress(path("old"), "4")).exit_code, 0);
  ASSERT_EQ(run_cli(compress(path("new"), "2")).exit_code, 0);
  const auto old_tree = tree(path("old")), new_tree = tree(path("new"));
  ASSERT_NE(old_tree, new_tree);

  // With no output yet (absent or new), then over the previous version (old or new).
  int kills = 0;
  for (const bool previous : {false, true}) {
    SCOPED_TRACE(previous ? "over the previous version" : "no previous version");
    const fs::path out = path(previous ? "over" : "fresh");
    for (int point = 1;; ++point) {
      ASSERT_LT(point, 200) << "compress never finished";
      fs::remove_all(out);
      if (previous) fs::copy(path("old"), out, fs::copy_options::recursive);
      const CliResult r = run_killed_at(compress(out.string(), "2"), point);
      if (r.signal == 0) {  // past the last crash point: a normal run
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(tree(out), new_tree);
        // The temps of the killed runs (their pids gone) are cleared by this run's swap.
        EXPECT_EQ(leftovers(dir_, {"old", "new", "over", "fresh"}), std::vector<std::string>{});
        break;
      }
      ASSERT_EQ(r.signal, SIGKILL) << "crash point " << point << ": " << r.err;
      ++kills;
      SCOPED_TRACE("killed at crash point " + std::to_string(point));
      if (!fs::exists(out)) {
        EXPECT_FALSE(previous) << "the previous version went missing";
        continue;
      }
      const auto got = tree(out);
      EXPECT_TRUE(got == new_tree || (previous && got == old_tree))
          << "the output is neither the previous nor the new complete version";
      expect_loadable(out);
    }
  }
  std::printf("[ crash    ] compress: %d kill points, every outcome valid\n", kills);
  EXPECT_GE(kills, 10);
}

TEST_F(CrashSafety, AnalyzeKilledRepeatedlyResumesToTheUninterruptedResult) {
  if (!test::fixtures_available()) GTEST_SKIP() << "fixtures not found";
  const std::string model = test::model_dir("tiny-sd1");
  {
    std::ofstream p(path("prompts.txt"));
    p << "a photograph of an astronaut riding a horse\n";
  }
  auto analyze = [&](const std::string& out) {
    return std::vector<std::string>{"analyze",
                                    "-m",
                                    model,
                                    "-o",
                                    out,
                                    "--prompts",
                                    path("prompts.txt"),
                                    "--steps",
                                    "1",
                                    "-W",
                                    "64",
                                    "-H",
                                    "64",
                                    "--nbits",
                                    "2,8",
                                    "--min-elements",
                                    "50000",
                                    "--num-recipes",
                                    "1",
                                    "-q"};
  };
  ASSERT_EQ(run_cli(analyze(path("ref.json"))).exit_code, 0);
  const std::string want = read_text(path("ref.json"));
  ASSERT_FALSE(want.empty());

  // Run i is killed at its i-th crash point, resuming what runs 1..i-1 left: the kills fall on
  // every step of the writer, at every stage of the analysis.
  const fs::path out = path("a.json");
  int kills = 0;
  for (int point = 1;; ++point) {
    ASSERT_LT(point, 400) << "analyze never finished";
    const CliResult r = run_killed_at(analyze(out.string()), point);
    if (r.signal == 0) {
      ASSERT_EQ(r.exit_code, 0) << r.err;
      break;
    }
    ASSERT_EQ(r.signal, SIGKILL) << "crash point " << point << ": " << r.err;
    ++kills;
    if (!fs::exists(out)) continue;  // killed before its first document was in place
    SCOPED_TRACE("killed at crash point " + std::to_string(point));
    EXPECT_NO_THROW(read_analysis(out.string(), true)) << "not a complete document";
  }
  EXPECT_EQ(read_text(out), want) << "the resumed analysis differs from the uninterrupted one";
  EXPECT_EQ(leftovers(dir_, {"prompts.txt", "ref.json", "a.json"}), std::vector<std::string>{});
  std::printf("[ crash    ] analyze: %d kills while resuming, every outcome valid\n", kills);
  EXPECT_GE(kills, 10);
}

}  // namespace
