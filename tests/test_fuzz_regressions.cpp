// Regression tests for findings of the fuzz harnesses (tests/fuzz/, docs/fuzzing.md) that were not
// on issue 10's known list (those are in test_hostile_input.cpp): each holds its reproducer.
#include <gtest/gtest.h>

#include "pipeline/infotext.h"

namespace sdpal {
namespace {

// fuzz_infotext: a value that begins and ends with '"' was written bare and read back without its
// quotes (the reader unquotes such values, as A1111's does).
TEST(FuzzRegressions, InfotextValueInQuotesSurvivesARoundTrip) {
  GenerationInfo g;
  g.prompt = "p";
  g.steps = 1;
  g.sampler = "Euler";
  g.width = g.height = 8;
  g.model = "\"ab\"";
  g.extra = {{"Note", "\"quoted\""}, {"Half", "\"open"}};
  const std::string text = a1111_parameters(g);
  EXPECT_EQ(parse_a1111_parameters(text), g) << text;
}

}  // namespace
}  // namespace sdpal
