// Mixed-bit palettization pre-analysis on the fixture models (tiny-sd1, demo-fashion): the
// document follows Apple's schema and the recipe rule, more bits never cost PSNR beyond noise, a
// recipe applied with `sdpal compress --recipe` measures exactly its recorded PSNR, interrupted +
// resumed and sharded + merged runs give byte-identical documents, Apple-format and plain recipe
// files apply, and bad input is refused with nothing written.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "compression/analysis.h"
#include "compression/analyze.h"
#include "compression/quality.h"
#include "compression/recipe.h"
#include "core/error.h"
#include "pipeline/sd_model.h"
#include "support/cli.h"
#include "support/fixtures.h"

using namespace sdpal;
using sdpal::test::run_cli;
namespace fs = std::filesystem;

namespace {

// Small settings: a couple of runs per measurement, a few dozen candidate layers.
AnalysisSettings tiny_sd1_settings() {
  AnalysisSettings s;
  s.prompts = {"a photo of a cat", "a red car parked on a street"};
  s.seeds = {0};
  s.steps = 1;
  s.width = s.height = 64;
  s.nbits = {2, 4, 8};
  s.min_elements = 20000;
  s.num_recipes = 4;
  s.target_bits = 4.0;
  s.target_psnr = 90.0;
  return s;
}

// Fewer measurements for the resume and shard mechanics (still every stage and both targets).
AnalysisSettings tiny_sd1_light_settings() {
  AnalysisSettings s = tiny_sd1_settings();
  s.nbits = {2, 8};
  s.min_elements = 30000;
  s.num_recipes = 3;
  return s;
}

AnalysisSettings demo_fashion_settings() {
  AnalysisSettings s;
  s.prompts = {"a photo of a sneaker", "a dress"};
  s.seeds = {0};
  s.steps = 1;  // native 32x32
  s.nbits = {1, 4, 8};
  s.min_elements = 10000;
  s.group_size = 16;  // per-grouped-channel LUTs: 16 divides every candidate's output channels
  s.num_recipes = 4;
  return s;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

class Analyze : public ::testing::Test {
 protected:
  void SetUp() override {
    SDPAL_REQUIRE_FIXTURES();
    dir_ = fs::temp_directory_path() /
           ("sdpal_an_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::unique_ptr<StableDiffusion> load(const std::string& fixture) {
    return StableDiffusion::load(test::model_dir(fixture));
  }
  AnalyzeOutcome analyze(const StableDiffusion& m, const AnalysisSettings& s,
                         const std::string& out, int64_t budget = -1, int shard = 0, int shards = 0,
                         const std::string& from = "") {
    AnalyzeOptions o;
    o.settings = s;
    o.output = out;
    o.max_measurements = budget;
    o.shard_index = shard;
    o.shard_count = shards;
    o.from = from;
    return analyze_model(m, o);
  }
  fs::path dir_;
};

// Apple's pre-analysis schema, checked on the raw JSON.
void expect_apple_schema(const nlohmann::ordered_json& j, size_t runs) {
  ASSERT_TRUE(j.at("model_version").is_string());
  const auto& base = j.at("baselines");
  ASSERT_TRUE(base.at("original").is_number());
  ASSERT_TRUE(base.at("linear_8bit").is_number());
  std::map<std::string, int64_t> size_of;
  for (const auto& [name, n] : j.at("model").at("candidates").items()) size_of[name] = n;
  for (const auto& [nb, layers] : j.at("single_layer").items()) {
    SCOPED_TRACE("single_layer." + nb);
    size_t count = 0;
    for (const auto& [layer, v] : layers.items()) {
      if (layer == "metadata") continue;
      ++count;
      EXPECT_TRUE(size_of.count(layer)) << layer;
      ASSERT_TRUE(v.is_array());
      EXPECT_EQ(v.size(), runs);
      for (const auto& x : v) EXPECT_TRUE(x.is_number());
    }
    EXPECT_EQ(count, size_of.size());
  }
  for (const auto& [nb, curve] : j.at("cumulative").items()) {
    SCOPED_TRACE("cumulative." + nb);
    const auto& md = curve.at("metadata");
    EXPECT_EQ(md.at("nbits").get<int>(), std::stoi(nb));
    EXPECT_TRUE(md.at("cumulative").get<bool>());
    const auto& cands = md.at("candidates");
    const auto& sizes = md.at("sizes");
    ASSERT_EQ(cands.size(), size_of.size());
    ASSERT_EQ(sizes.size(), size_of.size());
    // Layers in the curve's order, right after the metadata; least sensitive first.
    std::vector<std::string> keys;
    for (const auto& [layer, v] : curve.items())
      if (layer != "metadata") keys.push_back(layer);
    ASSERT_EQ(keys.size(), cands.size());
    double prev_sum = 1e300;
    for (size_t i = 0; i < cands.size(); ++i) {
      const std::string layer = cands[i];
      EXPECT_EQ(keys[i], layer);
      EXPECT_EQ(sizes[i].get<int64_t>(), size_of.at(layer));
      EXPECT_EQ(curve.at(layer).size(), runs);
      double sum = 0;
      for (double v : j.at("single_layer").at(nb).at(layer)) sum += v;
      EXPECT_LE(sum, prev_sum) << "cumulative order is not by descending single-layer PSNR";
      prev_sum = sum;
    }
  }
  const std::regex name_re(R"(recipe_(\d+\.\d\d)_bit_mixedpalette)");
  for (const auto& [name, recipe] : j.at("recipes").items()) {
    SCOPED_TRACE(name);
    std::smatch m;
    ASSERT_TRUE(std::regex_match(name, m, name_re));
    ASSERT_TRUE(base.contains(name)) << "no achieved PSNR for the recipe";
    double bits = 0, elements = 0;
    for (const auto& [layer, n] : size_of) {
      const int b = recipe.contains(layer) ? recipe.at(layer).get<int>() : 16;
      EXPECT_TRUE(b == 1 || b == 2 || b == 4 || b == 6 || b == 8 || b == 16);
      bits += double(b) * n;
      elements += n;
    }
    char avg[32];
    std::snprintf(avg, sizeof avg, "%.2f", bits / elements);
    EXPECT_EQ(m[1].str(), avg);
  }
}

// The recorded recipes are the rule's for the series thresholds and the targets, and more bits
// never lose PSNR beyond noise.
void expect_consistent_recipes(const Analysis& a) {
  for (double t : recipe_thresholds(a, a.settings->num_recipes)) {
    const Recipe r = build_recipe(a, t);
    EXPECT_NE(a.find_recipe(recipe_name(recipe_average_bits(a, r))), nullptr)
        << "no recipe for threshold " << t;
  }
  std::vector<std::pair<double, double>> bits_psnr;
  for (const auto& [name, r] : a.recipes)
    bits_psnr.push_back({recipe_average_bits(a, r), a.recipe_psnr.at(name)});
  std::sort(bits_psnr.begin(), bits_psnr.end());
  constexpr double kNoiseDb = 1.0;
  for (size_t i = 1; i < bits_psnr.size(); ++i)
    EXPECT_GE(bits_psnr[i].second, bits_psnr[i - 1].second - kNoiseDb)
        << bits_psnr[i].first << " bits vs " << bits_psnr[i - 1].first << " bits";
  // Uniform palettization: more bits, higher PSNR.
  const auto nb = a.nbits();
  for (size_t i = 1; i < nb.size(); ++i) {
    const auto& lo = a.cumulative.at(nb[i - 1]).at(a.cumulative_order.at(nb[i - 1]).back());
    const auto& hi = a.cumulative.at(nb[i]).at(a.cumulative_order.at(nb[i]).back());
    EXPECT_GT(mean_psnr(hi), mean_psnr(lo) - kNoiseDb) << nb[i] << " vs " << nb[i - 1] << " bits";
  }
  if (a.settings->target_bits) {
    ASSERT_TRUE(a.target_bits && !a.target_bits->recipe.empty());
    const Recipe* r = a.find_recipe(a.target_bits->recipe);
    ASSERT_NE(r, nullptr);
    EXPECT_LE(recipe_average_bits(a, *r), *a.settings->target_bits + 1e-9);
  }
  if (a.settings->target_psnr) {
    ASSERT_TRUE(a.target_psnr && !a.target_psnr->recipe.empty());
    EXPECT_GE(a.recipe_psnr.at(a.target_psnr->recipe), *a.settings->target_psnr);
  }
}

// Compresses `model` with a recipe through the CLI and checks the measured PSNR of the result
// against the recorded one.
void expect_applied_psnr(const StableDiffusion& ref, const std::string& model,
                         const std::string& analysis, const std::string& out) {
  const Analysis a = read_analysis(analysis, true);
  // The recipe with the fewest bits that still palettizes at several widths is the most telling.
  std::string name;
  double fewest = 1e9;
  for (const auto& [n, r] : a.recipes) {
    std::set<int> widths;
    for (const auto& [l, b] : r) widths.insert(b);
    const double bits = recipe_average_bits(a, r);
    if (widths.size() >= 2 && bits < fewest) fewest = bits, name = n;
  }
  ASSERT_FALSE(name.empty());
  SCOPED_TRACE("applying " + name);
  const auto r = run_cli(
      {"compress", "--model", model, "--output", out, "--recipe", analysis, "--recipe-name", name});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto applied = StableDiffusion::load(out);
  // Exactly the recipe's palettized layers are compressed, at their bits and granularity.
  const Recipe& recipe = *a.find_recipe(name);
  size_t palettized = 0;
  for (const auto& [layer, bits] : recipe) {
    auto it = applied->unet_ws->compressed().find(layer + ".weight");
    if (bits == 16) {
      EXPECT_EQ(it, applied->unet_ws->compressed().end()) << layer;
      continue;
    }
    ++palettized;
    ASSERT_NE(it, applied->unet_ws->compressed().end()) << layer;
    EXPECT_EQ(it->second.nbits, bits) << layer;
    EXPECT_EQ(it->second.group_size, a.settings->group_size) << layer;
  }
  EXPECT_EQ(applied->unet_ws->compressed().size(), palettized);
  EXPECT_TRUE(applied->te_ws->compressed().empty());

  const std::vector<double> runs = measure_against(ref, *applied, *a.settings);
  EXPECT_DOUBLE_EQ(recorded_psnr(mean_psnr(runs)), a.recipe_psnr.at(name));
  // The same through the ordinary comparison (same prompts, seeds and sampler).
  CompareOptions co;
  co.prompts = a.settings->prompts;
  co.seeds = a.settings->seeds;
  co.steps = a.settings->steps;
  co.width = a.settings->width;
  co.height = a.settings->height;
  co.sampler = a.settings->sampler;
  const CompareResult cr = compare_models(ref, *applied, co);
  EXPECT_NEAR(cr.mean_psnr_latents, a.recipe_psnr.at(name), 0.01);
}

}  // namespace

TEST_F(Analyze, TinySd1CompletesFollowsTheSchemaAndAppliesExactly) {
  auto m = load("tiny-sd1");
  const AnalysisSettings s = tiny_sd1_settings();
  const AnalyzeOutcome out = analyze(*m, s, path("a.json"));
  EXPECT_EQ(out.stage, AnalysisStage::Done) << out.message;
  const size_t c = analysis_candidates(*m->unet_ws, s.min_elements).size();
  EXPECT_GE(out.measurements, static_cast<int64_t>(2 + 2 * s.nbits.size() * c));

  const auto j = nlohmann::ordered_json::parse(read_text(path("a.json")));
  expect_apple_schema(j, s.runs());
  const Analysis a = read_analysis(path("a.json"), true);
  EXPECT_EQ(a.stage(), AnalysisStage::Done);
  EXPECT_EQ(*a.original, kMaxRecordedPsnr);  // the rerun is identical
  EXPECT_LT(*a.linear_8bit, kMaxRecordedPsnr);
  expect_consistent_recipes(a);
  expect_applied_psnr(*m, test::model_dir("tiny-sd1"), path("a.json"), path("applied"));
  // A --target-bits below every recipe is refused, giving the smallest average to two decimals.
  try {
    threshold_for_bits(a, 0.01);
    ADD_FAILURE() << "a bits target below every recipe was accepted";
  } catch (const Error& e) {
    EXPECT_TRUE(std::regex_search(
        std::string(e.what()),
        std::regex(R"(below the smallest recipe \([0-9]+\.[0-9]{2} bits per weight, )")))
        << e.what();
  }

  // The report: chart in both formats and the table.
  const auto r = run_cli({"report", path("a.json"), "--output", path("c.png"), "--output",
                          path("c.svg"), "--table", path("t.csv")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_text(path("c.png")).substr(1, 3), "PNG");
  EXPECT_NE(read_text(path("c.svg")).find("<svg"), std::string::npos);
  const std::string csv = read_text(path("t.csv"));
  for (const auto& [name, rec] : a.recipes)
    EXPECT_NE(csv.find(name + ",recipe,"), std::string::npos);
  EXPECT_NE(r.out.find("| linear_8bit | 8.00 |"), std::string::npos) << r.out;

  // The same document without sdpal's additions is an Apple pre-analysis file: it reports too.
  auto apple = j;
  for (const char* k : {"settings", "model", "targets"}) apple.erase(k);
  write_text(path("apple.json"), apple.dump(1));
  const auto ra = run_cli({"report", path("apple.json"), "--output", path("apple.svg")});
  ASSERT_EQ(ra.exit_code, 0) << ra.err;
  for (const auto& [name, rec] : a.recipes) EXPECT_NE(ra.out.find(name), std::string::npos);
  EXPECT_TRUE(fs::exists(path("apple.svg")));
}

TEST_F(Analyze, DemoFashionGroupedLutsApplyExactly) {
  auto m = load("demo-fashion");
  const AnalysisSettings s = demo_fashion_settings();
  const AnalyzeOutcome out = analyze(*m, s, path("a.json"));
  EXPECT_EQ(out.stage, AnalysisStage::Done) << out.message;
  const auto j = nlohmann::ordered_json::parse(read_text(path("a.json")));
  expect_apple_schema(j, s.runs());
  EXPECT_EQ(j["cumulative"]["4"]["metadata"]["group_size"], 16);
  const Analysis a = read_analysis(path("a.json"), true);
  expect_consistent_recipes(a);
  expect_applied_psnr(*m, test::model_dir("demo-fashion"), path("a.json"), path("applied"));
}

TEST_F(Analyze, InterruptedAndResumedEqualsUninterrupted) {
  auto m = load("tiny-sd1");
  const AnalysisSettings s = tiny_sd1_light_settings();
  const AnalyzeOutcome whole = analyze(*m, s, path("whole.json"));
  ASSERT_EQ(whole.stage, AnalysisStage::Done);

  // Stops in stage 1, in stage 2, and in the recipes (3 measurements before the end).
  const int64_t n = whole.measurements;
  const int64_t stops[] = {7, n / 2 - 7, n - 3 - n / 2};
  int64_t done = 0;
  for (int64_t budget : stops) {
    const AnalyzeOutcome part = analyze(*m, s, path("resumed.json"), budget);
    EXPECT_EQ(part.measurements, budget);
    EXPECT_NE(part.stage, AnalysisStage::Done);
    EXPECT_NE(part.message.find("--max-measurements"), std::string::npos) << part.message;
    done += part.measurements;
    EXPECT_NO_THROW(read_analysis(path("resumed.json"), true));  // a valid document meanwhile
  }
  const AnalyzeOutcome rest = analyze(*m, s, path("resumed.json"));
  EXPECT_EQ(rest.stage, AnalysisStage::Done);
  EXPECT_EQ(done + rest.measurements, n);
  EXPECT_EQ(read_text(path("resumed.json")), read_text(path("whole.json")));
  // A finished analysis resumes to itself without measuring.
  EXPECT_EQ(analyze(*m, s, path("resumed.json")).measurements, 0);
  EXPECT_EQ(read_text(path("resumed.json")), read_text(path("whole.json")));
}

TEST_F(Analyze, ShardsMergedEqualASingleRun) {
  auto m = load("tiny-sd1");
  const AnalysisSettings s = tiny_sd1_light_settings();
  ASSERT_EQ(analyze(*m, s, path("single.json")).stage, AnalysisStage::Done);

  constexpr int kShards = 3;
  std::vector<std::string> stage1, stage2;
  for (int i = 0; i < kShards; ++i) {
    stage1.push_back(path("s1_" + std::to_string(i) + ".json"));
    const AnalyzeOutcome o = analyze(*m, s, stage1.back(), -1, i, kShards);
    EXPECT_EQ(o.stage, AnalysisStage::SingleLayer);  // the other shards' work is missing
    EXPECT_NE(o.message.find("merge"), std::string::npos) << o.message;
  }
  // Bad merges: overlapping, missing, unfinished shards, mixed stages; nothing written.
  EXPECT_THROW(merge_analyses({stage1[0], stage1[0], stage1[2]}, path("bad.json")), Error);
  EXPECT_THROW(merge_analyses({stage1[0], stage1[1]}, path("bad.json")), Error);
  ASSERT_EQ(analyze(*m, s, path("partial.json"), 2, 1, kShards).measurements, 2);
  try {
    merge_analyses({stage1[0], path("partial.json"), stage1[2]}, path("bad.json"));
    ADD_FAILURE() << "merged an unfinished shard";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has not finished"), std::string::npos) << e.what();
  }
  try {
    merge_analyses({stage1[0], stage1[1], stage1[1]}, path("bad.json"));
    ADD_FAILURE() << "merged overlapping shards";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("overlap"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path("bad.json")));

  merge_analyses(stage1, path("m1.json"));
  EXPECT_EQ(read_analysis(path("m1.json"), true).stage(), AnalysisStage::Cumulative);
  for (int i = 0; i < kShards; ++i) {
    stage2.push_back(path("s2_" + std::to_string(i) + ".json"));
    analyze(*m, s, stage2.back(), -1, i, kShards, path("m1.json"));
  }
  EXPECT_THROW(merge_analyses({stage1[0], stage2[1], stage2[2]}, path("bad.json")), Error);
  EXPECT_FALSE(fs::exists(path("bad.json")));
  // The CLI merge, then the recipes on the merged file.
  const auto r = run_cli({"analyze", "--merge", path("m2.json"), stage2[0], stage2[1], stage2[2]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(analyze(*m, s, path("final.json"), -1, 0, 0, path("m2.json")).stage,
            AnalysisStage::Done);
  EXPECT_EQ(read_text(path("final.json")), read_text(path("single.json")));
}

TEST_F(Analyze, HandWrittenAppleAndPlainRecipesApply) {
  const std::string model = test::model_dir("demo-fashion");
  const std::string a = "down_blocks.0.resnets.0.conv1", b = "mid_block.resnets.0.conv2",
                    c = "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj",
                    d = "down_blocks.1.attentions.0.proj_in";
  // Apple's pre-analysis format, as published recipe files look (extra keys are ignored).
  write_text(path("apple.json"), R"({
  "model_version": "demo-fashion",
  "baselines": {"original": 82.2, "linear_8bit": 66.0, "recipe_4.50_bit_mixedpalette": 75.8},
  "recipes": {
    "recipe_4.50_bit_mixedpalette": {")" +
                                     a + R"(": 1, ")" + b + R"(": 6, ")" + c + R"(": 16, ")" + d +
                                     R"(": 8},
    "recipe_other": {")" + a + R"(": 2}
  }
})");
  auto r = run_cli({"compress", "--model", model, "--output", path("out"), "--recipe",
                    path("apple.json"), "--recipe-name", "recipe_4.50_bit_mixedpalette"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto m = StableDiffusion::load(path("out"));
  const auto& cw = m->unet_ws->compressed();
  ASSERT_EQ(cw.size(), 3u);
  EXPECT_EQ(cw.at(a + ".weight").nbits, 1);
  EXPECT_EQ(cw.at(b + ".weight").nbits, 6);
  EXPECT_EQ(cw.at(d + ".weight").nbits, 8);
  EXPECT_EQ(cw.at(a + ".weight").group_size, 0);  // no settings: per-tensor LUTs
  EXPECT_FALSE(cw.count(c + ".weight"));

  // Several recipes and no --recipe-name: refused, naming them.
  r = run_cli(
      {"compress", "--model", model, "--output", path("out2"), "--recipe", path("apple.json")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("recipe_other"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("out2")));

  // A plain {layer: bits} file, with a grouped LUT setting from the command line.
  write_text(path("plain.json"), R"({")" + a + R"(": 4, ")" + d + R"(": 2})");
  r = run_cli({"compress", "--model", model, "--output", path("out3"), "--recipe",
               path("plain.json"), "--granularity", "per-grouped-channel", "--group-size", "16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto m3 = StableDiffusion::load(path("out3"));
  ASSERT_EQ(m3->unet_ws->compressed().size(), 2u);
  EXPECT_EQ(m3->unet_ws->compressed().at(a + ".weight").nbits, 4);
  EXPECT_EQ(m3->unet_ws->compressed().at(d + ".weight").group_size, 16);
}

TEST_F(Analyze, BadInputIsRefusedAndNothingIsWritten) {
  const std::string model = test::model_dir("demo-fashion");
  auto expect_refused = [&](const std::vector<std::string>& args, const std::string& needle,
                            const std::string& must_not_exist) {
    SCOPED_TRACE(args[0] + " ... " + needle);
    const auto r = run_cli(args);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(must_not_exist)) << must_not_exist;
  };
  // Recipes naming unknown layers or bad bits.
  write_text(path("unknown.json"), R"({"down_blocks.9.nothing": 4})");
  expect_refused({"compress", "-m", model, "-o", path("o1"), "--recipe", path("unknown.json")},
                 "down_blocks.9.nothing", path("o1"));
  write_text(path("bits.json"), R"({"down_blocks.0.resnets.0.conv1": 3})");
  expect_refused({"compress", "-m", model, "-o", path("o2"), "--recipe", path("bits.json")},
                 "not one of 1, 2, 4, 6, 8, 16", path("o2"));
  write_text(path("bits2.json"), R"({"recipes": {"r": {"down_blocks.0.resnets.0.conv1": "4"}}})");
  expect_refused({"compress", "-m", model, "-o", path("o3"), "--recipe", path("bits2.json")},
                 "not one of 1, 2, 4, 6, 8, 16", path("o3"));
  expect_refused({"compress", "-m", model, "-o", path("o4"), "--recipe", path("bits2.json"),
                  "--recipe-name", "nope"},
                 "no recipe 'nope'", path("o4"));
  expect_refused(
      {"compress", "-m", model, "-o", path("o5"), "--recipe", path("bits2.json"), "--nbits", "4"},
      "--recipe", path("o5"));

  // A small real analysis, then corrupted copies of it.
  AnalysisSettings s = demo_fashion_settings();
  s.nbits = {8};
  s.min_elements = 30000;
  s.num_recipes = 2;
  auto m = StableDiffusion::load(model);
  AnalyzeOptions o;
  o.settings = s;
  o.output = path("a.json");
  ASSERT_EQ(analyze_model(*m, o).stage, AnalysisStage::Done);
  const std::string good = read_text(path("a.json"));

  write_text(path("trunc.json"), good.substr(0, good.size() / 2));
  expect_refused({"report", path("trunc.json"), "-o", path("c.png")}, "not valid JSON",
                 path("c.png"));
  expect_refused({"compress", "-m", model, "-o", path("o6"), "--recipe", path("trunc.json")},
                 "not valid JSON", path("o6"));
  o.output = path("trunc.json");
  try {
    analyze_model(*m, o);
    ADD_FAILURE() << "resumed a corrupted file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_text(path("trunc.json")), good.substr(0, good.size() / 2));  // left as it was

  // Structurally wrong documents: a per-run list of the wrong length, an unknown layer, bad bits.
  auto j = nlohmann::json::parse(good);
  const std::string layer = j["model"]["candidates"].begin().key();
  auto bad = j;
  bad["single_layer"]["8"][layer] = {50.0};
  write_text(path("short.json"), bad.dump());
  EXPECT_THROW(read_analysis(path("short.json"), true), Error);
  expect_refused({"report", path("short.json"), "-o", path("c2.png")}, "expected 2",
                 path("c2.png"));
  bad = j;
  bad["recipes"].begin().value()["no.such.layer"] = 4;
  write_text(path("layer.json"), bad.dump());
  expect_refused({"report", path("layer.json"), "-o", path("c3.svg")}, "no.such.layer",
                 path("c3.svg"));
  bad = j;
  bad["recipes"].begin().value()[layer] = 5;
  write_text(path("five.json"), bad.dump());
  expect_refused({"report", path("five.json"), "-o", path("c4.png")},
                 "not one of 1, 2, 4, 6, 8, 16", path("c4.png"));

  // Resuming with other settings, or another model: refused, naming the file and what differs.
  auto error_of = [&](const StableDiffusion& model) -> std::string {
    try {
      analyze_model(model, o);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  o.output = path("a.json");
  o.settings.steps = 2;
  std::string err = error_of(*m);
  EXPECT_NE(err.find(path("a.json") + " was made with other settings (steps: 2 vs 1)"),
            std::string::npos)
      << err;
  o.settings.steps = 1;
  // tiny-sd1's native size differs from demo-fashion's: that setting is what is reported first.
  auto other = StableDiffusion::load(test::model_dir("tiny-sd1"));
  err = error_of(*other);
  EXPECT_NE(err.find(path("a.json") + " was made with other settings (width"), std::string::npos)
      << err;
  EXPECT_EQ(read_text(path("a.json")), good);
  // The same settings on another model's weights (a document with another fingerprint).
  bad = j;
  bad["model"]["fingerprint"] = "other-weights";
  write_text(path("fp.json"), bad.dump());
  o.output = path("fp.json");
  err = error_of(*m);
  EXPECT_NE(err.find(path("fp.json") +
                     " is the analysis of another model (its candidate layers or weight "
                     "fingerprint other-weights differ from this model's "),
            std::string::npos)
      << err;
  EXPECT_EQ(read_text(path("fp.json")), bad.dump());

  // CLI: a bad shard, merge of a non-shard file.
  expect_refused({"analyze", "-m", model, "-o", path("s.json"), "--shard", "3/3"}, "--shard",
                 path("s.json"));
  expect_refused({"analyze", "--merge", path("m.json"), path("a.json")}, "not a shard file",
                 path("m.json"));
}
