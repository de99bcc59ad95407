// Mixed-bit pre-analysis documents (compression/analysis.h: sdpal's own, resumed by `analyze`,
// and Apple's, read by `report` and `compress --recipe`) and recipe files (recipe.h). The first
// input byte picks the reader, the rest is the file:
//   even: read_analysis (with or without sdpal's own keys), then the report (markdown, CSV and
//         the cairo chart) and the recipe rules;  odd: load_recipe_file.
// Invariants: to_json/from_json is an identity on accepted documents; recipes hold only bits
// 1, 2, 4, 6, 8 or 16 and get no fewer average bits as the threshold rises; report rows have
// finite bits in [0, 16].
#include <cmath>

#include "compression/analysis.h"
#include "compression/analysis_report.h"
#include "compression/recipe.h"
#include "fuzz/fuzz_support.h"
#include "tools/analysis_chart.h"

using namespace sdpal;

namespace {

void check_recipe(const Recipe& r, const std::string& what) {
  for (const auto& [layer, bits] : r)
    FUZZ_CHECK(bits == 1 || bits == 2 || bits == 4 || bits == 6 || bits == 8 || bits == 16,
               what + ": layer " + layer + " gets " + std::to_string(bits) + " bits");
}

void check_analysis(const Analysis& a, bool require_settings) {
  const auto j = a.to_json();
  const Analysis b =
      fuzz::must_succeed([&] { return Analysis::from_json(j, "round trip", require_settings); },
                         "re-reading an accepted analysis");
  FUZZ_CHECK(b.to_json() == j, "to_json/from_json is not an identity:\n" + j.dump());
  for (const auto& [name, r] : a.recipes) check_recipe(r, name);

  const AnalysisReport rep = make_report(a);
  for (const ReportRow& row : rep.rows)
    FUZZ_CHECK(std::isfinite(row.bits) && row.bits >= 0 && row.bits <= 16,
               row.name + ": bits " + std::to_string(row.bits));
  (void)report_markdown(rep);
  (void)report_csv(rep);
  draw_analysis_chart(rep, (fuzz::scratch().path() / "chart.png").string());

  bool complete = !a.nbits().empty();
  for (int n : a.nbits()) complete = complete && a.cumulative_complete(n);
  if (!complete) return;
  double last_bits = -1;
  const auto thresholds = distinct_thresholds(a);
  for (size_t i = 0; i < thresholds.size() && i < 64; ++i) {
    const Recipe r = build_recipe(a, thresholds[i]);
    check_recipe(r, "build_recipe");
    const double bits = recipe_average_bits(a, r);
    FUZZ_CHECK(bits >= last_bits - 1e-9, "a higher threshold gave fewer bits");
    last_bits = bits;
  }
  for (double t : recipe_thresholds(a, 3)) check_recipe(build_recipe(a, t), "recipe_thresholds");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string path =
      fuzz::scratch().write("analysis.json", fuzz::as_text(data + 1, size - 1));
  FUZZ_EXPECT_ERRORS({
    if (data[0] % 2 == 0) {
      const bool require_settings = data[0] & 2;
      check_analysis(read_analysis(path, require_settings), require_settings);
    } else {
      const RecipeChoice c =
          load_recipe_file(path, (data[0] & 2) ? "recipe_4.00_bit_mixedpalette" : "");
      check_recipe(c.recipe, "load_recipe_file");
      FUZZ_CHECK(c.group_size >= 0, "negative group size");
    }
  });
  return 0;
}
