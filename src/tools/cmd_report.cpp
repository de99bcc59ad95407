// `sdpal report`: the PSNR-vs-size chart of a mixed-bit pre-analysis (PNG or SVG) and its recipe
// table (markdown on stdout, or a .md / .csv file).
#include <cstdio>
#include <memory>

#include "compression/analysis_report.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "tools/analysis_chart.h"
#include "tools/command.h"

namespace sdpal {
namespace {

struct ReportArgs {
  std::string analysis;
  std::vector<std::string> outputs;
  std::string table;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void write_text(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](std::FILE* f) {
    if (std::fwrite(text.data(), 1, text.size(), f) != text.size()) fail("cannot write " + path);
  });
}

void run(const ReportArgs& a) {
  for (const auto& o : a.outputs)
    SDPAL_CHECK(ends_with(o, ".png") || ends_with(o, ".svg"),
                "report: --output " + o + " must end in .png or .svg");
  SDPAL_CHECK(a.table.empty() || ends_with(a.table, ".md") || ends_with(a.table, ".csv"),
              "report: --table " + a.table + " must end in .md or .csv");
  const AnalysisReport r = make_report(read_analysis(a.analysis, false));
  SDPAL_CHECK(!r.curves.empty() || !r.rows.empty(),
              "report: " + a.analysis + " has no complete cumulative curve and no baselines yet");
  for (const auto& o : a.outputs) {
    draw_analysis_chart(r, o);
    std::printf("wrote %s\n", o.c_str());
  }
  if (!a.table.empty()) {
    write_text(a.table, ends_with(a.table, ".csv") ? report_csv(r) : report_markdown(r));
    std::printf("wrote %s\n", a.table.c_str());
  }
  std::printf("\n%s", report_markdown(r).c_str());
}

const bool registered = register_command(
    {"report", "Chart (PSNR vs model-size reduction) and recipe table of a mixed-bit pre-analysis",
     [](CLI::App& app) {
       auto a = std::make_shared<ReportArgs>();
       app.add_option("analysis", a->analysis, "Analysis JSON (sdpal analyze, or Apple's)")
           ->required();
       app.add_option("-o,--output", a->outputs, "Chart file(s): .png or .svg");
       app.add_option("--table", a->table, "Also write the recipe table: .md or .csv");
       app.callback([a] { run(*a); });
     }});

}  // namespace
}  // namespace sdpal
