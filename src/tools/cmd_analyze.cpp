// `sdpal analyze`: mixed-bit palettization pre-analysis (per-layer sensitivity, cumulative curves,
// recipes), resumable and shardable; `sdpal analyze --merge OUT shards...` combines shard files.
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>

#include "compression/analysis_report.h"
#include "compression/analyze.h"
#include "compression/int8_analysis.h"
#include "core/error.h"
#include "tools/command.h"
#include "tools/options.h"
#include "tools/progress.h"

namespace sdpal {
namespace {

struct AnalyzeArgs {
  ModelArgs model;
  std::string output, prompts_file, from, shard, merge, model_version;
  LutGranularityArgs lut;
  std::vector<std::string> merge_inputs;
  std::vector<uint64_t> seeds{0};
  std::vector<int> nbits{1, 2, 4, 6, 8};
  int steps = 1, width = 0, height = 0, num_recipes = 7;
  float cfg = 7.5f;
  std::string sampler = "ddim", timestep_spacing;
  int64_t min_elements = 100000, max_measurements = -1;
  bool quiet = false;
  std::optional<double> target_bits, target_psnr;
  bool int8 = false;  // --int8: per-layer int8 (W8A8) sensitivity and selection instead
  std::string int8_calibration;
  double min_work_share = 0.001;
  std::vector<const CLI::Option*> palette_only;        // options that --int8 does not take
  const CLI::Option* min_work_share_option = nullptr;  // and one that only --int8 takes
};

// "i/N" -> (i, N)
std::pair<int, int> parse_shard(const std::string& s) {
  int i = -1, n = 0;
  char tail = 0;
  if (std::sscanf(s.c_str(), "%d/%d%c", &i, &n, &tail) != 2 || n < 1 || i < 0 || i >= n)
    fail("analyze: --shard " + s + " is not i/N with 0 <= i < N (e.g. 0/8 ... 7/8)");
  return {i, n};
}

void run_merge(const AnalyzeArgs& a) {
  SDPAL_CHECK(a.output.empty() && a.shard.empty() && a.from.empty(),
              "analyze --merge OUT takes only shard files (no --output, --shard, --from)");
  const Analysis m = merge_analyses(a.merge_inputs, a.merge);
  std::printf("merged %zu shard files into %s (next stage: %s)\n", a.merge_inputs.size(),
              a.merge.c_str(), stage_name(m.stage()));
}

// --int8: measures every calibrated layer alone in int8, then (--target-psnr) picks the layers
// to run int8 and writes them into the calibration file.
// The runs both analyses simulate (prompts x seeds, steps, size, guidance, sampler).
template <class Settings>
void set_run_settings(const AnalyzeArgs& a, Settings& s) {
  if (!a.prompts_file.empty()) s.prompts = read_prompts_file(a.prompts_file);
  s.seeds = a.seeds;
  s.steps = a.steps;
  s.width = a.width;
  s.height = a.height;
  s.cfg_scale = a.cfg;
  s.sampler = a.sampler;
  s.timestep_spacing = a.timestep_spacing;
}

// Log lines above the progress bar, measurement counts into it.
template <class Options>
void report_to(Progress& bar, Options& o) {
  o.log = [&bar](const std::string& line) {
    if (bar.active()) std::fprintf(stderr, "\r\033[K");  // clear the progress line first
    std::printf("  %s\n", line.c_str());
    std::fflush(stdout);
  };
  o.progress = [&bar](int64_t done, int64_t total) {
    bar.set_total(static_cast<int>(std::max(total, done)));
    bar.update(static_cast<int>(done));
  };
}

void run_int8(const AnalyzeArgs& a) {
  for (const CLI::Option* opt : a.palette_only)
    SDPAL_CHECK(opt->count() == 0,
                "analyze --int8: " + opt->get_name() + " is for palettization, not --int8");
  if (!a.merge.empty()) {
    SDPAL_CHECK(a.output.empty() && a.shard.empty(),
                "analyze --int8 --merge OUT takes only shard files (no --output, --shard)");
    merge_int8_analyses(a.merge_inputs, a.merge);
    std::printf("merged %zu shard files into %s\n", a.merge_inputs.size(), a.merge.c_str());
    return;
  }
  SDPAL_CHECK(a.merge_inputs.empty(),
              "analyze: unexpected arguments (shard files go with --merge OUT)");
  SDPAL_CHECK(!a.output.empty(), "analyze: --output is required");
  apply_threads(a.model.threads);
  Int8AnalyzeOptions o;
  Int8AnalysisSettings& s = o.settings;
  set_run_settings(a, s);
  s.target_psnr = a.target_psnr;
  s.min_work_share = a.min_work_share;
  o.model_version = a.model_version;
  o.output = a.output;
  if (!a.shard.empty()) std::tie(o.shard_index, o.shard_count) = parse_shard(a.shard);
  o.max_measurements = a.max_measurements;
  auto model = load_model(a.model, false);  // fp32: the reference
  o.calibration =
      a.int8_calibration.empty() ? default_int8_calibration_path(model->path) : a.int8_calibration;
  Progress bar("analyze --int8", 0, !a.quiet);
  report_to(bar, o);
  std::printf("int8 analysis of %s (calibration %s) -> %s\n", model->path.c_str(),
              o.calibration.c_str(), a.output.c_str());
  std::fflush(stdout);
  const Int8AnalyzeOutcome r = analyze_int8(*model, o);
  bar.finish();
  std::printf("%lld measurement(s) in %.1f s\n", static_cast<long long>(r.measurements), r.seconds);
  if (!r.complete) {
    std::printf("%s\n", r.message.c_str());
    return;
  }
  std::printf("analysis complete: %s\n\n%s", a.output.c_str(),
              int8_analysis_markdown(read_int8_analysis(a.output)).c_str());
}

void run(const AnalyzeArgs& a) {
  if (a.int8) return run_int8(a);
  SDPAL_CHECK(a.int8_calibration.empty() && a.min_work_share_option->count() == 0,
              "analyze: --int8-calibration and --min-work-share go with --int8");
  if (!a.merge.empty()) return run_merge(a);
  SDPAL_CHECK(a.merge_inputs.empty(),
              "analyze: unexpected arguments (shard files go with --merge OUT)");
  SDPAL_CHECK(!a.output.empty(), "analyze: --output is required");
  apply_threads(a.model.threads);
  AnalyzeOptions o;
  AnalysisSettings& s = o.settings;
  set_run_settings(a, s);
  s.nbits = a.nbits;
  s.min_elements = a.min_elements;
  s.group_size = resolve_group_size(a.lut, "analyze");
  s.num_recipes = a.num_recipes;
  s.target_bits = a.target_bits;
  s.target_psnr = a.target_psnr;
  o.model_version = a.model_version;
  o.output = a.output;
  o.from = a.from;
  if (!a.shard.empty()) std::tie(o.shard_index, o.shard_count) = parse_shard(a.shard);
  o.max_measurements = a.max_measurements;
  auto model = load_model(a.model, false);
  Progress bar("analyze", 0, !a.quiet);
  report_to(bar, o);
  std::printf("analysing %s -> %s\n", model->path.c_str(), a.output.c_str());
  std::fflush(stdout);
  const AnalyzeOutcome r = analyze_model(*model, o);
  bar.finish();
  std::printf("%lld measurement(s) in %.1f s", static_cast<long long>(r.measurements), r.seconds);
  if (r.measurements) std::printf(" (%.2f s each)", r.seconds / r.measurements);
  std::printf("\n");
  if (r.stage != AnalysisStage::Done) {
    std::printf("%s\n", r.message.c_str());
    return;
  }
  std::printf("analysis complete: %s\n\n%s", a.output.c_str(),
              report_markdown(make_report(read_analysis(a.output, true))).c_str());
}

const bool registered = register_command(
    {"analyze",
     "Mixed-bit palettization pre-analysis: per-layer sensitivity, cumulative curves and recipes "
     "(resumable; --shard i/N and --merge to spread it over machines)",
     [](CLI::App& app) {
       auto a = std::make_shared<AnalyzeArgs>();
       add_model_options(app, a->model);
       app.add_option("-o,--output", a->output,
                      "Analysis JSON (created, or resumed where an earlier run stopped)");
       app.add_option("--prompts", a->prompts_file,
                      "File with one prompt per line (default: 8 varied prompts)");
       app.add_option("--seeds", a->seeds, "Seeds; every prompt runs with every seed (default 0)");
       app.add_option("--steps", a->steps, "Denoising steps per run")->capture_default_str();
       app.add_option("-W,--width", a->width, "Width (default: the model's native size)");
       app.add_option("-H,--height", a->height, "Height (default: the model's native size)");
       app.add_option("--cfg-scale", a->cfg, "Guidance scale")->capture_default_str();
       app.add_option("--sampler", a->sampler, "Sampler")
           ->check(CLI::IsMember({"ddim", "euler", "euler_a", "dpmpp_2m", "pndm"}))
           ->capture_default_str();
       app.add_option("--timestep-spacing", a->timestep_spacing,
                      "leading, linspace or trailing (default: the sampler's; DDIM's leading puts "
                      "a 1-step run at t=1, trailing at t=999)")
           ->check(CLI::IsMember({"leading", "linspace", "trailing"}));
       a->palette_only.push_back(
           app.add_option("--nbits", a->nbits, "Palette bit widths to analyse (default 1,2,4,6,8)")
               ->delimiter(','));
       a->palette_only.push_back(app.add_option("--min-elements", a->min_elements,
                                                "Analyse weights with more elements than this")
                                     ->capture_default_str());
       add_lut_granularity_options(app, a->lut);
       a->palette_only.push_back(app.get_option("--granularity"));
       a->palette_only.push_back(app.get_option("--group-size"));
       a->palette_only.push_back(
           app.add_option("--num-recipes", a->num_recipes, "Recipes from near-lossless to smallest")
               ->capture_default_str());
       a->palette_only.push_back(
           app.add_option("--target-bits", a->target_bits,
                          "Also make the best recipe of at most this many bits per weight"));
       app.add_option("--target-psnr", a->target_psnr,
                      "Also make the smallest recipe reaching this PSNR (dB); with --int8: pick "
                      "the int8 layers that keep it and write them into the calibration file");
       app.add_flag("--int8", a->int8,
                    "int8 (W8A8) instead of palettization: each calibrated UNet layer measured "
                    "alone in int8 (see sdpal calibrate; docs/mixed-bit.md)");
       app.add_option("--int8-calibration", a->int8_calibration,
                      "Calibration file for --int8 (default: the model's, as generate --int8)");
       a->min_work_share_option =
           app.add_option("--min-work-share", a->min_work_share,
                          "--int8: analyse layers doing at least this share of the UNet's "
                          "Linear/Conv work (the others stay fp32)")
               ->capture_default_str();
       app.add_option("--shard", a->shard,
                      "i/N: measure every N-th unit of the current stage (one shard of a "
                      "cluster job); merge the shard files with --merge");
       a->palette_only.push_back(
           app.add_option("--from", a->from,
                          "Start from this analysis (e.g. merged shards of the previous stage)"));
       app.add_option("--merge", a->merge,
                      "Merge shard files (given after it) into this file, then stop");
       app.add_option("shards", a->merge_inputs, "Shard files for --merge");
       app.add_option("--max-measurements", a->max_measurements,
                      "Stop after this many measurements (resume later with the same command)");
       app.add_option("--model-version", a->model_version,
                      "Name recorded as model_version (default: the model folder's name)");
       app.add_flag("-q,--quiet", a->quiet, "No progress bar");
       app.callback([a] { run(*a); });
     }});

}  // namespace
}  // namespace sdpal
