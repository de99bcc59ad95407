// `sdpal analyze --int8`: per-layer int8 sensitivity and the selection for a PSNR target, on
// tiny-sd1: the selection reaches the target (and one more layer would not), is written into the
// calibration, and reproduces its recorded PSNR when the model is loaded with it; interrupted,
// sharded and merged analyses give the same numbers; mismatched files are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "compression/analysis.h"
#include "compression/analyze.h"
#include "compression/calibrate.h"
#include "compression/int8_analysis.h"
#include "core/error.h"
#include "models/int8_calibration.h"
#include "support/cli.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"

using namespace sdpal;
using sdpal::test::model_dir;
using sdpal::test::run_cli;

namespace {

constexpr double kTarget = 45.0;

class Int8Analyze : public sdpal::test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    if (!sdpal::test::fixtures_available()) GTEST_SKIP() << "fixtures not found";
    m_ = StableDiffusion::load(model_dir("tiny-sd1"));
    CalibrateOptions co;
    co.prompts = {"a mountain lake"};
    co.steps = 2;
    co.width = co.height = 64;
    write_int8_calibration(path("cal.json"), calibrate_int8(*m_, co));
  }
  Int8AnalyzeOptions options(const std::string& out, const std::string& cal = "cal.json") const {
    Int8AnalyzeOptions o;
    o.settings.prompts = {"a red apple"};
    o.settings.steps = 2;
    o.settings.width = o.settings.height = 64;
    o.settings.target_psnr = kTarget;
    o.calibration = path(cal);
    o.output = path(out);
    return o;
  }
  std::unique_ptr<StableDiffusion> m_;
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_F(Int8Analyze, SelectionKeepsTheTargetAndReproduces) {
  const Int8AnalyzeOutcome r = analyze_int8(*m_, options("a.json"));
  ASSERT_TRUE(r.complete) << r.message;
  const Int8Analysis a = read_int8_analysis(path("a.json"));
  const Int8Calibration cal = read_int8_calibration(path("cal.json"));
  // Candidates: the calibration's layers with at least 0.1 % of the work, each measured.
  ASSERT_TRUE(a.single_layer_complete());
  size_t candidates = 0;
  for (const auto& l : cal.layers) candidates += l.gflops >= 0.001 * a.total_gflops;
  EXPECT_EQ(a.layers.size(), candidates);
  ASSERT_TRUE(a.all_int8 && a.selection);
  const Int8Selection& s = *a.selection;
  std::printf(
      "[ measured ] tiny-sd1 int8: all %zu candidates %.2f dB; %lld int8 for >= %.0f dB: "
      "%.2f dB, %.0f %% of the work\n",
      a.layers.size(), *a.all_int8, static_cast<long long>(s.int8_layers), kTarget, s.psnr,
      100 * s.int8_gflops / s.total_gflops);
  // Every candidate int8 misses the target, so the selection is a strict subset that reaches it,
  // and the next layer of the order would not (the bisection probed it, or it is the full set).
  EXPECT_LT(*a.all_int8, kTarget);
  EXPECT_GE(s.psnr, kTarget);
  ASSERT_GT(s.int8_layers, 0);
  ASSERT_LT(s.int8_layers, static_cast<int64_t>(a.layers.size()));
  const int64_t next = s.int8_layers + 1;
  const double next_db =
      next == static_cast<int64_t>(a.layers.size()) ? *a.all_int8 : s.probes.at(next);
  EXPECT_LT(next_db, kTarget);
  // The calibration now marks exactly the chosen prefix of the order.
  const std::set<std::string> chosen(s.order.begin(), s.order.begin() + s.int8_layers);
  EXPECT_EQ(cal.int8_count(), s.int8_layers);
  for (const auto& l : cal.layers) EXPECT_EQ(l.int8, chosen.count(l.name) == 1) << l.name;
  // Loading the model with that calibration gives the recorded PSNR, to the last digit.
  LoadOptions lo;
  lo.int8 = true;
  lo.int8_calibration = path("cal.json");
  auto q = StableDiffusion::load(model_dir("tiny-sd1"), lo);
  EXPECT_EQ(q->int8_layers, s.int8_layers);
  AnalysisSettings as;
  as.prompts = a.settings.prompts;
  as.seeds = a.settings.seeds;
  as.steps = a.settings.steps;
  as.width = a.settings.width;
  as.height = a.settings.height;
  EXPECT_EQ(recorded_psnr(mean_psnr(measure_against(*m_, *q, as))), s.psnr);

  // Interrupted after 7 measurements and resumed: the same document.
  Int8AnalyzeOptions o = options("b.json", "cal-b.json");
  std::filesystem::copy_file(path("cal.json"), path("cal-b.json"));
  o.max_measurements = 7;
  Int8AnalyzeOutcome part = analyze_int8(*m_, o);
  EXPECT_FALSE(part.complete);
  EXPECT_EQ(part.measurements, 7);
  EXPECT_NE(part.message.find("run the same command again"), std::string::npos);
  o.max_measurements = -1;
  EXPECT_TRUE(analyze_int8(*m_, o).complete);
  EXPECT_EQ(read_int8_analysis(path("b.json")).to_json(), a.to_json());

  // Two shards, merged, then finished unsharded: the same document again.
  for (int i = 0; i < 2; ++i) {
    Int8AnalyzeOptions so = options("s" + std::to_string(i) + ".json");
    so.shard_index = i;
    so.shard_count = 2;
    const Int8AnalyzeOutcome sr = analyze_int8(*m_, so);
    EXPECT_FALSE(sr.complete);
    EXPECT_NE(sr.message.find("merge"), std::string::npos);
  }
  EXPECT_NE(error_of([&] {
              merge_int8_analyses({path("s0.json")}, path("m.json"));
            }).find("shard 1/2 is missing"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              merge_int8_analyses({path("s0.json"), path("s0.json")}, path("m.json"));
            }).find("overlap"),
            std::string::npos);
  merge_int8_analyses({path("s0.json"), path("s1.json")}, path("m.json"));
  EXPECT_TRUE(analyze_int8(*m_, options("m.json")).complete);
  EXPECT_EQ(read_int8_analysis(path("m.json")).to_json(), a.to_json());
}

TEST_F(Int8Analyze, MismatchedFilesAreRefused) {
  Int8AnalyzeOptions o = options("a.json");
  o.max_measurements = 2;
  analyze_int8(*m_, o);
  // Other settings.
  Int8AnalyzeOptions other = o;
  other.settings.steps = 3;
  std::string err = error_of([&] { analyze_int8(*m_, other); });
  EXPECT_NE(err.find("other settings"), std::string::npos) << err;
  EXPECT_NE(err.find("steps"), std::string::npos) << err;
  // Other ranges (a recalibration) change the digest.
  Int8Calibration c = read_int8_calibration(path("cal.json"));
  c.layers[5].max *= 2;
  write_int8_calibration(path("cal2.json"), c);
  err = error_of([&] { analyze_int8(*m_, options("a.json", "cal2.json")); });
  EXPECT_NE(err.find("another calibration"), std::string::npos) << err;
  // Missing calibration.
  err = error_of([&] { analyze_int8(*m_, options("x.json", "none.json")); });
  EXPECT_NE(err.find("sdpal calibrate --model"), std::string::npos) << err;
  // Not an analysis file.
  err = error_of([&] { read_int8_analysis(path("cal.json")); });
  EXPECT_NE(err.find("not an sdpal int8 analysis"), std::string::npos) << err;
}

// Merging hand-written shard files (no model needed): values both files hold must agree, and
// files of other settings or of another model's layers are refused, each naming what differs.
class Int8AnalysisFiles : public sdpal::test::TempDirTest {};

TEST_F(Int8AnalysisFiles, MergeRefusesDisagreementsOtherSettingsAndOtherModels) {
  Int8Analysis base;
  base.model_version = "m";
  base.settings.prompts = {"p"};
  base.settings.width = base.settings.height = 64;
  base.settings.calibration = "fnv1a64:0";
  base.layers = {{"a", 1.0}, {"b", 2.0}, {"c", 3.0}};
  base.total_gflops = 6;
  Int8Analysis s0 = base, s1 = base;
  s0.shard = std::make_pair(0, 2);
  s0.single_layer = {{"a", {40.0}}, {"c", {41.0}}};
  s1.shard = std::make_pair(1, 2);
  s1.single_layer = {{"b", {42.0}}};
  write_int8_analysis(path("s1.json"), s1);
  auto merge_with = [&](const Int8Analysis& first) {
    write_int8_analysis(path("s0.json"), first);
    return error_of([&] {
      merge_int8_analyses({path("s0.json"), path("s1.json")}, path("m.json"));
    });
  };
  EXPECT_EQ(merge_with(s0), "(no error)");
  EXPECT_EQ(read_int8_analysis(path("m.json")).single_layer.size(), 3u);
  // s0 also holds b, with the same value: merged; with another value: refused.
  Int8Analysis extra = s0;
  extra.single_layer["b"] = {42.0};
  EXPECT_EQ(merge_with(extra), "(no error)");
  extra.single_layer["b"] = {43.0};
  std::string err = merge_with(extra);
  EXPECT_NE(err.find(path("s0.json") + " and " + path("s1.json") + " disagree on single_layer.b"),
            std::string::npos)
      << err;
  // Other settings.
  Int8Analysis other = s0;
  other.settings.steps = 3;
  err = merge_with(other);
  EXPECT_NE(
      err.find(path("s1.json") + " was made with other settings or another calibration (steps"),
      std::string::npos)
      << err;
  // Another model: other layer names.
  other = s0;
  other.layers[2].first = "d";
  other.single_layer = {{"a", {40.0}}, {"d", {41.0}}};
  err = merge_with(other);
  EXPECT_NE(err.find(path("s1.json") + " is the analysis of another model (its candidate layers"),
            std::string::npos)
      << err;
}

TEST_F(Int8Analyze, Cli) {
  const std::string m = model_dir("tiny-sd1");
  auto r = run_cli({"analyze", "--int8", "-m", m, "--int8-calibration", path("cal.json"), "--steps",
                    "1", "-W", "64", "-H", "64", "--target-psnr", "60", "-o", path("a.json"), "-q",
                    "--min-work-share", "0.01"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("analysis complete"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("selection for 60.00 dB"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("most sensitive layers"), std::string::npos) << r.out;
  r = run_cli({"analyze", "--int8", "-m", m, "--nbits", "4", "-o", path("b.json")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--nbits is for palettization"), std::string::npos) << r.err;
  r = run_cli({"analyze", "-m", m, "--int8-calibration", path("cal.json"), "-o", path("c.json")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("go with --int8"), std::string::npos) << r.err;
}
