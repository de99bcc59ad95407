// `sdpal bench` on a fixture model: every configuration timed with a breakdown by op type, PSNR
// against the first configuration (exact forms infinite, lossy ones finite), and bad configurations
// refused with messages that name the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "support/cli.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"

using namespace sdpal;
using sdpal::test::run_cli;

namespace {

class BenchCli : public sdpal::test::TempDirTest {};

TEST_F(BenchCli, ConfigurationsSideBySide) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string model = test::model_dir("tiny-sd1"), json = path("bench.json");
  const auto r = run_cli({"bench", "--model", model, "--sizes", "64,32x48", "--steps", "2",
                          "--warmup", "0", "--threads", "1", "--min-elements", "1000", "--configs",
                          "fp32,fp16,pal4,pal2g4,linear8", "--json", json});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("summary"), std::string::npos) << r.out;
  std::ifstream f(json);
  const nlohmann::json j = nlohmann::json::parse(f);
  const auto& results = j.at("results");
  ASSERT_EQ(results.size(), 10u);
  double pal4 = 0, pal2 = 0;
  for (const auto& e : results) {
    SCOPED_TRACE(e.dump());
    EXPECT_TRUE(e.at("finite_output").get<bool>());
    EXPECT_GT(e.at("median_s").get<double>(), 0);
    EXPECT_GT(e.at("peak_rss_bytes").get<int64_t>(), 0);
    const auto& b = e.at("breakdown");
    for (const char* op : {"conv", "gemm", "attention", "norm", "elementwise"}) {
      ASSERT_TRUE(b.contains(op)) << op;
      EXPECT_GT(b.at(op).at("seconds_per_step").get<double>(), 0) << op;
    }
    EXPECT_GT(b.at("conv").at("gflops").get<double>(), 0);
    // Every op type ran in every step (the same calls each step), and the remainder is reported.
    for (const char* op : {"conv", "gemm", "attention", "norm", "elementwise"}) {
      const double calls = b.at(op).at("calls_per_step").get<double>();
      EXPECT_GT(calls, 0) << op;
      EXPECT_EQ(calls, std::floor(calls)) << op;
    }
    EXPECT_TRUE(b.contains("other"));
    const std::string config = e.at("config");
    if (config == "fp32") {
      EXPECT_FALSE(e.contains("psnr_vs_first_db"));
      continue;
    }
    const double db = e.at("psnr_vs_first_db").get<double>();
    if (config == "pal4") pal4 = db;
    if (config == "pal2g4") pal2 = db;
    if (config == "fp16") {  // fp16 rounding of the weights only
      EXPECT_GT(db, 60);
    }
    if (config != "fp16") {
      EXPECT_TRUE(std::isfinite(db)) << "lossy weights must change the output";
    }
    EXPECT_GT(e.at("weight_bytes").get<int64_t>(), 0);
  }
  EXPECT_GT(pal4, pal2);  // more bits, closer to fp32
}

TEST_F(BenchCli, Int8AndTokenMerging) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string model = path("model"), json = path("bench.json");
  std::filesystem::copy(test::model_dir("tiny-sd1"), model,
                        std::filesystem::copy_options::recursive);
  auto r = run_cli(
      {"bench", "--model", model, "--sizes", "64", "--steps", "1", "--configs", "fp32,int8"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("sdpal calibrate"), std::string::npos) << r.err;
  r = run_cli({"calibrate", "--model", model, "--steps", "2", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli({"bench", "--model", model, "--sizes", "64", "--steps", "1", "--warmup", "0",
               "--configs", "fp32,int8,fp32+tome0.5,int8+tome0.5", "--json", json});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream f(json);
  const nlohmann::json j = nlohmann::json::parse(f);
  ASSERT_EQ(j.at("results").size(), 4u);
  for (const auto& e : j.at("results")) {
    SCOPED_TRACE(e.dump());
    const std::string config = e.at("config");
    const auto& b = e.at("breakdown");
    EXPECT_EQ(b.contains("conv_int8"), e.at("int8").get<bool>());
    EXPECT_EQ(b.contains("tome"), e.at("tome").get<double>() > 0);
    if (e.at("int8").get<bool>()) {
      EXPECT_GT(e.at("peak_measured_int8_gops").get<double>(), 0);
    }
    if (config != "fp32") {
      EXPECT_TRUE(std::isfinite(e.at("psnr_vs_first_db").get<double>()));
    }
  }
}

// --tome-max-downsample reaches the token merging of every tomeR configuration: merging at all
// four levels of tiny-sd1 changes the output more than merging at full resolution only.
TEST_F(BenchCli, TomeMaxDownsampleIsApplied) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string model = test::model_dir("tiny-sd1");
  auto psnr_of_merging = [&](const std::string& max_downsample) {
    const std::string json = path("tome" + max_downsample + ".json");
    const auto r = run_cli({"bench", "--model", model, "--sizes", "64", "--steps", "1", "--warmup",
                            "0", "--configs", "fp32,fp32+tome0.5", "--tome-max-downsample",
                            max_downsample, "--json", json});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::ifstream f(json);
    const nlohmann::json j = nlohmann::json::parse(f);
    const auto& merged = j.at("results").at(1);
    EXPECT_EQ(merged.at("tome_max_downsample").get<int>(), std::stoi(max_downsample));
    return merged.at("psnr_vs_first_db").get<double>();
  };
  const double level1 = psnr_of_merging("1"), all = psnr_of_merging("8");
  EXPECT_TRUE(std::isfinite(all));
  EXPECT_GT(level1, all);  // (+inf when level 1 has nothing to merge: still greater)
  const auto r = run_cli({"bench", "--model", model, "--sizes", "64", "--steps", "1",
                          "--tome-max-downsample", "3", "--configs", "fp32+tome0.5"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--tome-max-downsample"), std::string::npos) << r.err;
}

TEST_F(BenchCli, BadConfigurationsAreRefused) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string model = test::model_dir("tiny-sd1");
  struct Case {
    std::string configs, message;
  };
  for (const Case& c :
       {Case{"fp64", "unknown weights 'fp64'"}, Case{"pal3", "unknown weights 'pal3'"},
        Case{"fp16+pal4", "two weight forms"}, Case{"fp16+tome1.5", "ratio must be in [0, 1)"},
        Case{"fp16+tomeX", "bad token-merging ratio"}, Case{"pal4g7", "does not divide"}}) {
    const auto r = run_cli({"bench", "--model", model, "--sizes", "64", "--steps", "1",
                            "--min-elements", "1000", "--configs", c.configs});
    EXPECT_NE(r.exit_code, 0) << c.configs;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.configs << ": " << r.err;
  }
}

}  // namespace
