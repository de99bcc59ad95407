// int8 layer selection (`sdpal analyze --int8`): the mixed-bit analysis's measurement applied to
// W8A8 compute. For every UNet layer of an int8 calibration (see int8_calibration.h) it measures
// the end-to-end PSNR of the final latents when that one layer runs int8 (the runs, PSNR
// definition and recording are those of the palettization analysis, analyze.h), then picks the
// layers to run int8 for a PSNR target: layers ordered by int8 work gained per unit of error added
// (gflops / 10^(-dB/10), single-layer values), the longest prefix of that order that still reaches
// the target, found by bisection over the prefix length (each probe simulated end to end).
//
// The document (JSON, written atomically after every measurement, so a rerun resumes):
//   format         "sdpal-int8-analysis/1"
//   model_version  label of the analysed model
//   settings       {prompts, seeds, steps, width, height, cfg_scale, sampler, timestep_spacing,
//                   min_work_share, calibration: digest of the calibration's ranges (not its
//                   int8 flags)}
//   layers         [{name, gflops}] the candidates, in the calibration's (forward) order
//   total_gflops   Linear/Conv work of a UNet call (all layers) at the calibration size
//   baselines      {"all_int8": dB}  every candidate int8
//   single_layer   {"<layer>": [dB per run]}
//   selection      {target_psnr, order: [layers], probes: {"<prefix length>": dB}, int8_layers: k,
//                   psnr: dB, int8_gflops, total_gflops}
//   shard          {index, count} in the files of --shard i/N (single_layer only)
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "models/int8_calibration.h"
#include "pipeline/sd_model.h"

namespace sdpal {

inline constexpr const char* kInt8AnalysisFormat = "sdpal-int8-analysis/1";

struct Int8AnalysisSettings {
  std::vector<std::string> prompts;  // empty: default_analysis_prompts()
  std::vector<uint64_t> seeds{0};
  int steps = 1, width = 0, height = 0;  // width/height 0: the model's native size
  float cfg_scale = 7.5f;
  std::string sampler = "ddim", timestep_spacing;
  // Candidates: layers doing at least this share of the UNet's Linear/Conv work (calibrate's
  // default rule); the others stay fp32 and are not measured.
  double min_work_share = 0.001;
  std::string calibration;  // digest of the calibration's ranges (set by analyze_int8)
  std::optional<double> target_psnr;

  size_t runs() const { return prompts.size() * seeds.size(); }
};

struct Int8Selection {
  double target_psnr = 0;
  std::vector<std::string> order;    // most int8 work per unit of error first
  std::map<int64_t, double> probes;  // prefix length -> mean dB
  int64_t int8_layers = -1;          // chosen prefix length; -1: not found yet
  double psnr = 0, int8_gflops = 0, total_gflops = 0;
};

struct Int8Analysis {
  std::string model_version;
  Int8AnalysisSettings settings;
  std::vector<std::pair<std::string, double>> layers;  // candidates: name, gflops
  double total_gflops = 0;                             // every layer of the calibration
  std::optional<double> all_int8;
  std::map<std::string, std::vector<double>> single_layer;
  std::optional<Int8Selection> selection;
  std::optional<std::pair<int, int>> shard;  // index, count

  bool single_layer_complete() const;
  nlohmann::ordered_json to_json() const;
  static Int8Analysis from_json(const nlohmann::ordered_json& j, const std::string& where);
};

Int8Analysis read_int8_analysis(const std::string& path);
void write_int8_analysis(const std::string& path, const Int8Analysis& a);

// Digest of a calibration's layer names and ranges.
std::string int8_calibration_digest(const Int8Calibration& c);

struct Int8AnalyzeOptions {
  Int8AnalysisSettings settings;
  std::string calibration;  // the calibration file (its int8 flags are rewritten on selection)
  std::string model_version, output;
  int shard_index = 0, shard_count = 0;  // shard_count 0: not sharded
  int64_t max_measurements = -1;
  std::function<void(const std::string&)> log;
  std::function<void(int64_t, int64_t)> progress;
};

struct Int8AnalyzeOutcome {
  bool complete = false;  // every measurement (and, with a target, the selection) done
  int64_t measurements = 0;
  double seconds = 0;
  std::string message;  // what to do next when not complete
};

// Runs or resumes the analysis of m (loaded without int8) into o.output. With a target, the
// selection is written into the calibration file's int8 flags when found.
Int8AnalyzeOutcome analyze_int8(const StableDiffusion& m, const Int8AnalyzeOptions& o);

// Combines the shard files of an --int8 --shard i/N analysis (all shards, each finished).
Int8Analysis merge_int8_analyses(const std::vector<std::string>& inputs, const std::string& output);

// Markdown summary: baselines, the most sensitive layers, the selection.
std::string int8_analysis_markdown(const Int8Analysis& a, size_t top = 10);

}  // namespace sdpal
