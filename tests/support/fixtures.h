// Test helpers: locating ../shared/fixtures, reading golden cases and comparing tensors.
#pragma once
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/tensor.h"
#include "formats/safetensors.h"

namespace sdpal::test {

// Absolute path of ../shared/fixtures relative to the repository root.
std::string fixtures_dir();
// Skips the current test (GTEST_SKIP) with a clear message if the fixtures are absent.
#define SDPAL_REQUIRE_FIXTURES()                                                      \
  do {                                                                                \
    if (!::sdpal::test::fixtures_available())                                         \
      GTEST_SKIP() << "../shared/fixtures not found beside the repository; skipping"; \
  } while (0)
bool fixtures_available();

// A golden case: manifest entry + its tensors.
struct Case {
  std::string fixture;  // "tiny-sd1"
  nlohmann::json meta;  // the manifest entry
  std::shared_ptr<SafetensorsFile> file;
  Tensor in(const std::string& name) const { return file->to_f32("in." + name); }
  Tensor out(const std::string& name) const { return file->to_f32("out." + name); }
  Tensor aux(const std::string& name) const { return file->to_f32("aux." + name); }
  // suggested_atol for an output (from the manifest's tolerance block).
  double atol(const std::string& output) const;
  const nlohmann::json& params() const { return meta["params"]; }
};

nlohmann::json manifest(const std::string& fixture);
Case load_case(const std::string& fixture, const std::string& id);
std::string model_dir(const std::string& fixture);  // <fixtures>/<fixture>/model

// max |a - b|; shapes must match (checked with EXPECT). +inf when an element is NaN on either
// side or the shapes differ, so that every bound and every "== 0" check fails.
double max_abs_diff(const Tensor& a, const Tensor& b);
// Expects |a-b| <= atol + rtol*|b| everywhere; reports the worst element.
void expect_close(const Tensor& got, const Tensor& want, double atol, double rtol = 1e-4,
                  const std::string& what = "");

}  // namespace sdpal::test
