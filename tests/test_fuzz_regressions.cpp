// Regression tests for findings of the fuzz harnesses (tests/fuzz/, docs/fuzzing.md) that were not
// on issue 10's known list (those are in test_hostile_input.cpp): each holds its reproducer.
#include <gtest/gtest.h>

#include "compression/analysis.h"
#include "compression/int8_analysis.h"
#include "core/error.h"
#include "pipeline/infotext.h"
#include "pipeline/scheduler.h"

namespace sdpal {
namespace {

// fuzz_infotext: a value that begins and ends with '"' was written bare and read back without its
// quotes (the reader unquotes such values, as A1111's does); one with leading or trailing white
// space lost it (the reader strips values and the last line).
TEST(FuzzRegressions, InfotextValueInQuotesSurvivesARoundTrip) {
  GenerationInfo g;
  g.prompt = "p";
  g.steps = 1;
  g.sampler = "Euler";
  g.width = g.height = 8;
  g.model = "\"ab\"";
  g.extra = {{"Note", "\"quoted\""}, {"Half", "\"open"}, {"Spaced", " a b "}};
  g.version = "sdpal 5.1. 0.i ";
  const std::string text = a1111_parameters(g);
  EXPECT_EQ(parse_a1111_parameters(text), g) << text;
}

// fuzz_infotext: values the writer cannot hold (it leaves out Clip skip below 2 and a ratio of 0)
// and non-finite numbers were accepted, so parsing was not a fixed point of formatting.
TEST(FuzzRegressions, InfotextRefusesValuesItCannotWrite) {
  const std::string fields = "p\nSteps: 1, Sampler: Euler, Seed: 1, Size: 8x8, ";
  for (const char* bad : {"Clip skip: 0", "Clip skip: -3", "Token merging ratio: -8.6e-26",
                          "CFG scale: nan", "CFG scale: inf", "Denoising strength: -inf"})
    EXPECT_THROW(parse_a1111_parameters(fields + bad), Error) << bad;
  const GenerationInfo ok = parse_a1111_parameters(fields + "Clip skip: 2, Token merging ratio: 0");
  EXPECT_EQ(ok.clip_skip, 2);
  EXPECT_EQ(parse_a1111_parameters(a1111_parameters(ok)), ok);
}

// fuzz_analysis / fuzz_calibration: a cfg_scale beyond float range (1e300) was read as inf, which
// the document then wrote as null and refused on the next read (resume).
TEST(FuzzRegressions, AnalysisCfgScaleOutOfFloatRangeIsRefused) {
  AnalysisSettings s;
  s.prompts = {"a cat"};
  s.width = s.height = 64;
  nlohmann::ordered_json j = s.to_json();
  EXPECT_NO_THROW(AnalysisSettings::from_json(j, "analysis.json"));
  j["cfg_scale"] = 1e300;
  EXPECT_THROW(AnalysisSettings::from_json(j, "analysis.json"), Error);

  Int8Analysis a;
  a.model_version = "tiny";
  a.settings.prompts = {"a cat"};
  a.settings.width = a.settings.height = 64;
  nlohmann::ordered_json k = a.to_json();
  EXPECT_NO_THROW(Int8Analysis::from_json(k, "int8.json"));
  k["settings"]["cfg_scale"] = -1e300;
  EXPECT_THROW(Int8Analysis::from_json(k, "int8.json"), Error);
}

}  // namespace
}  // namespace sdpal

// fuzz_model_config: a scaled_linear schedule over 9897 training steps drives alphas_cumprod to
// 2e-22 (sigma 7e10); Euler a's step then overflowed float to NaN. Refused when read.
TEST(FuzzRegressions, ScheduleWhoseSignalVanishesIsRefused) {
  const nlohmann::json cfg = nlohmann::json::parse(
      R"({"_class_name": "EulerAncestralDiscreteScheduler", "beta_start": 0.00085,
          "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 9897})");
  sdpal::SchedulerOptions o;
  o.name = "euler_a";
  try {
    auto s = sdpal::make_scheduler(o, cfg);
    s->set_timesteps(4);
    ADD_FAILURE() << "a schedule with sigmas near 1e11 was accepted";
  } catch (const sdpal::Error& e) {
    EXPECT_NE(std::string(e.what()).find("alphas_cumprod"), std::string::npos) << e.what();
  }
  // The real SD schedule over 1000 steps is fine.
  nlohmann::json sd = cfg;
  sd["num_train_timesteps"] = 1000;
  auto s = sdpal::make_scheduler(o, sd);
  s->set_timesteps(4);
  EXPECT_EQ(s->timesteps().size(), 4u);
}
