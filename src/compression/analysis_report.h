// What `sdpal report` shows of a pre-analysis: the curves of the mixed-bit palettization chart
// (PSNR against model-size reduction, as Apple's pre-analysis plots it) and a table of the
// baselines and recipes, as markdown or CSV.
//
// Size reduction is relative to the analysed layers at 16 bits: a fixed-nbits curve reaches
// (16 - n) / 16 once every layer is palettized, point k at the share of elements palettized so
// far; a recipe of b bits per weight sits at 1 - b / 16, linear 8-bit at 50 %.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "compression/analysis.h"

namespace sdpal {

struct ChartPoint {
  double reduction_pct = 0, psnr = 0;
};

struct ChartCurve {
  int nbits = 0;
  std::vector<ChartPoint> points;
};

struct ReportRow {
  std::string name;  // "original", "linear_8bit", "palettize_4bit", "recipe_..."
  bool recipe = false;
  double bits = 16;               // per weight over the analysed layers
  double size_mb = 0;             // analysed layers at these bits (Apple's size_mb)
  std::optional<double> unet_mb;  // whole UNet, the rest at 16 bits (sdpal files only)
  std::optional<double> psnr;     // mean dB; absent for a recipe not simulated
};

struct AnalysisReport {
  std::string title;
  std::vector<ChartCurve> curves;         // one per complete cumulative curve, ascending nbits
  std::vector<ChartPoint> mixed_bit;      // simulated recipes, ascending reduction
  std::vector<std::string> mixed_labels;  // "4.52 bit", per mixed_bit point
  std::optional<double> linear_8bit, original;
  std::vector<ReportRow> rows;  // baselines, then recipes by descending bits
  int64_t analysed_elements = 0;
};

AnalysisReport make_report(const Analysis& a);
std::string report_markdown(const AnalysisReport& r);
std::string report_csv(const AnalysisReport& r);

}  // namespace sdpal
