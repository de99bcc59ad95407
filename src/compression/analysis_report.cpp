#include "compression/analysis_report.h"

#include <algorithm>
#include <cstdio>

#include "core/format.h"
#include "core/limits.h"

namespace sdpal {

namespace {

std::string cell(const std::optional<double>& v) { return v ? fixed(*v) : ""; }

}  // namespace

AnalysisReport make_report(const Analysis& a) {
  AnalysisReport r;
  r.title = a.model_version.empty() ? "mixed-bit palettization" : a.model_version;
  r.original = a.original;
  r.linear_8bit = a.linear_8bit;
  // Checked sums: an analysis file's sizes must not wrap around to a small or negative total.
  for (const auto& c : a.model.candidates)
    r.analysed_elements = checked_add(r.analysed_elements, c.elements, "analysed layer sizes");
  const double total = static_cast<double>(r.analysed_elements);
  // The UNet's other parameters; none known (-1) when the file gives fewer than the analysed ones.
  const int64_t rest = a.model.unet_parameters >= r.analysed_elements && a.model.unet_parameters > 0
                           ? a.model.unet_parameters - r.analysed_elements
                           : -1;
  auto row = [&](const std::string& name, bool recipe, double bits, std::optional<double> psnr) {
    ReportRow w;
    w.name = name;
    w.recipe = recipe;
    w.bits = bits;
    w.size_mb = bits * total / 8e6;
    if (rest >= 0) w.unet_mb = (bits * total + 16.0 * rest) / 8e6;
    w.psnr = psnr;
    return w;
  };

  for (int n : a.nbits()) {
    if (!a.cumulative_complete(n)) continue;
    ChartCurve c;
    c.nbits = n;
    int64_t done = 0;
    for (const auto& layer : a.cumulative_order.at(n)) {
      done = checked_add(done, a.elements_of(layer), "cumulative layer sizes");
      c.points.push_back(
          {done / total * (16.0 - n) / 16.0 * 100.0, mean_psnr(a.cumulative.at(n).at(layer))});
    }
    r.curves.push_back(std::move(c));
  }

  if (a.original) r.rows.push_back(row("original", false, 16, a.original));
  if (a.linear_8bit) r.rows.push_back(row("linear_8bit", false, 8, a.linear_8bit));
  for (auto it = r.curves.rbegin(); it != r.curves.rend(); ++it)
    r.rows.push_back(row("palettize_" + std::to_string(it->nbits) + "bit", false, it->nbits,
                         recorded_psnr(it->points.back().psnr)));
  std::vector<ReportRow> recipes;
  for (const auto& [name, recipe] : a.recipes) {
    auto p = a.recipe_psnr.find(name);
    recipes.push_back(row(name, true, recipe_average_bits(a, recipe),
                          p == a.recipe_psnr.end() ? std::nullopt : std::optional(p->second)));
  }
  std::stable_sort(recipes.begin(), recipes.end(),
                   [](const ReportRow& x, const ReportRow& y) { return x.bits > y.bits; });
  for (const auto& w : recipes) {
    r.rows.push_back(w);
    if (w.psnr) {
      r.mixed_bit.push_back({(1.0 - w.bits / 16.0) * 100.0, *w.psnr});
      r.mixed_labels.push_back(fixed(w.bits) + " bit");
    }
  }
  // mixed_bit is ascending in reduction since recipes are sorted by descending bits.
  return r;
}

std::string report_markdown(const AnalysisReport& r) {
  const bool unet = !r.rows.empty() && r.rows[0].unet_mb.has_value();
  std::string s = "| name | bits/weight | layers MB | " + std::string(unet ? "UNet MB | " : "") +
                  "PSNR dB |\n|---|---:|---:|" + (unet ? "---:|" : "") + "---:|\n";
  for (const auto& w : r.rows)
    s += "| " + w.name + " | " + fixed(w.bits) + " | " + fixed(w.size_mb) + " | " +
         (unet ? cell(w.unet_mb) + " | " : "") + cell(w.psnr) + " |\n";
  return s;
}

std::string report_csv(const AnalysisReport& r) {
  std::string s = "name,kind,bits_per_weight,layers_mb,unet_mb,psnr_db\n";
  for (const auto& w : r.rows)
    s += w.name + "," + (w.recipe ? "recipe" : "baseline") + "," + fixed(w.bits, 4) + "," +
         fixed(w.size_mb, 4) + "," + (w.unet_mb ? fixed(*w.unet_mb, 4) : "") + "," +
         (w.psnr ? fixed(*w.psnr) : "") + "\n";
  return s;
}

}  // namespace sdpal
