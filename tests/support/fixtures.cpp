#include "support/fixtures.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/json_file.h"

namespace sdpal::test {

std::string fixtures_dir() {
  return (std::filesystem::path(SDPAL_SOURCE_DIR) / ".." / "shared" / "fixtures")
      .lexically_normal();
}

bool fixtures_available() {
  return std::filesystem::exists(fixtures_dir() + "/tiny-sd1/manifest.json");
}

nlohmann::json manifest(const std::string& fixture) {
  std::ifstream f(fixtures_dir() + "/" + fixture + "/manifest.json");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // Python's json module wrote them: NaN / Infinity come as words (read here as strings).
  return nlohmann::json::parse(quote_python_number_words(text));
}

std::string model_dir(const std::string& fixture) {
  return fixtures_dir() + "/" + fixture + "/model";
}

Case load_case(const std::string& fixture, const std::string& id) {
  nlohmann::json m = manifest(fixture);
  for (const auto& c : m["cases"])
    if (c["id"] == id) {
      Case r;
      r.fixture = fixture;
      r.meta = c;
      r.file = std::make_shared<SafetensorsFile>(fixtures_dir() + "/" + fixture + "/" +
                                                 c["file"].get<std::string>());
      return r;
    }
  throw std::runtime_error("no case " + id + " in fixture " + fixture);
}

double Case::atol(const std::string& output) const {
  return meta["tolerance"][output]["suggested_atol"].get<double>();
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(shape_str(a.shape()), shape_str(b.shape()));
  if (a.shape() != b.shape()) return INFINITY;
  // A NaN on either side is a failure, never a match: +inf fails every bound and every == 0.
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = std::fabs(double(a[i]) - b[i]);
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

void expect_close(const Tensor& got, const Tensor& want, double atol, double rtol,
                  const std::string& what) {
  ASSERT_EQ(shape_str(got.shape()), shape_str(want.shape())) << what;
  int64_t worst = -1, bad = 0;
  double worst_excess = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    double d = std::fabs(double(got[i]) - want[i]), lim = atol + rtol * std::fabs(want[i]);
    if (!(d <= lim)) {
      ++bad;
      if (worst < 0 || d - lim > worst_excess || std::isnan(d)) worst = i, worst_excess = d - lim;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.numel()
                    << " elements out of tolerance (atol " << atol << ", rtol " << rtol
                    << "); worst at " << worst << ": got " << (worst >= 0 ? got[worst] : 0)
                    << " want " << (worst >= 0 ? want[worst] : 0) << "; max abs diff "
                    << max_abs_diff(got, want);
}

}  // namespace sdpal::test
