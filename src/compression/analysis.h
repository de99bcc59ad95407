// The mixed-bit palettization pre-analysis document: what `sdpal analyze` measures and writes,
// `sdpal report` draws and `sdpal compress --recipe` applies. Its JSON follows the schema of
// Apple's ml-stable-diffusion pre-analysis (mixed_bit_compression_pre_analysis.py):
//
//   model_version  label of the analysed model
//   baselines      {"original": dB, "linear_8bit": dB, "recipe_<avg>_bit_mixedpalette": dB, ...}
//                  (mean PSNR over the runs; sdpal adds "palettize_<n>bit", uniform n-bit)
//   single_layer   {"<nbits>": {"metadata": {...}, "<layer>": [dB per run], ...}, ...}
//   cumulative     {"<nbits>": {"metadata": {nbits, cumulative, candidates: [layers, least
//                  sensitive first], sizes: [elements]}, "<layer>": [dB per run after palettizing
//                  every layer up to this one], ...}, ...}
//   recipes        {"recipe_<avg>_bit_mixedpalette": {"<layer>": bits (1,2,4,6,8 or 16 = kept)}}
//
// Layers are diffusers module paths of the UNet without ".weight". sdpal adds "settings" (what
// the measurements depend on, checked on resume and merge), "model" (candidate layers and a weight
// fingerprint), "targets" (recipes for --target-bits / --target-psnr) and, in shard files,
// "shard". A run is one (prompt, seed) pair, prompts outer: run r = prompt r / #seeds, seed r %
// #seeds.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sdpal {

// Identical outputs have infinite PSNR, which JSON cannot hold: they are recorded as this.
inline constexpr double kMaxRecordedPsnr = 200.0;
inline constexpr const char* kAnalysisFormat = "sdpal-mixed-bit-analysis/1";

// {layer: bits}, bits in {1, 2, 4, 6, 8} or 16 (kept as it is).
using Recipe = std::map<std::string, int>;

// Everything the measured values depend on (besides the weights).
struct AnalysisSettings {
  std::vector<std::string> prompts;
  std::vector<uint64_t> seeds{0};
  int steps = 1, width = 0, height = 0;  // width/height resolved to pixels before analysing
  float cfg_scale = 7.5f;
  std::string sampler = "ddim";
  std::string timestep_spacing;           // "" (the sampler's default), leading, linspace, trailing
  std::vector<int> nbits{1, 2, 4, 6, 8};  // ascending
  int64_t min_elements = 100000;          // candidates have more elements than this
  int64_t group_size = 0;                 // output channels per LUT; 0 = per tensor
  int num_recipes = 7;
  std::optional<double> target_bits, target_psnr;

  size_t runs() const { return prompts.size() * seeds.size(); }
  nlohmann::ordered_json to_json() const;
  // Throws naming `where` if a key is missing or malformed.
  static AnalysisSettings from_json(const nlohmann::ordered_json& j, const std::string& where);
  // Empty if equal, else "<key>: <a> vs <b>" for the first difference. Without
  // `recipe_settings_too`, num_recipes and the targets are not compared.
  static std::string difference(const AnalysisSettings& a, const AnalysisSettings& b,
                                bool recipe_settings_too = true);
};

struct CandidateLayer {
  std::string name;  // module path, no ".weight"
  int64_t elements = 0;
};

// The analysed model: its candidate layers (model order) and what identifies its weights.
struct AnalysedModel {
  std::vector<CandidateLayer> candidates;
  int64_t unet_parameters = 0;  // every UNet tensor
  std::string fingerprint;      // of the UNet weights (names, shapes, sampled bytes)
};

// Which part of the work a shard file holds: its slice of one stage.
enum class AnalysisStage { SingleLayer, Cumulative, Recipes, Done };
const char* stage_name(AnalysisStage s);

struct ShardInfo {
  int index = 0, count = 1;
  AnalysisStage stage = AnalysisStage::SingleLayer;
};

struct TargetResult {
  double target = 0;
  std::string recipe;                    // its name (in recipes), empty until found
  std::map<std::string, double> probes;  // --target-psnr search: recipe name -> achieved dB
};

struct Analysis {
  std::string model_version;
  std::optional<AnalysisSettings> settings;  // absent in Apple's files
  AnalysedModel model;                       // candidates empty in Apple's files (see below)
  std::optional<double> original, linear_8bit;
  // nbits -> layer -> dB per run
  std::map<int, std::map<std::string, std::vector<double>>> single_layer;
  // nbits -> layers least sensitive first (fixed once single_layer[nbits] is complete)
  std::map<int, std::vector<std::string>> cumulative_order;
  std::map<int, std::map<std::string, std::vector<double>>> cumulative;
  // Recipes in the order they were made, with their achieved mean PSNR.
  std::vector<std::pair<std::string, Recipe>> recipes;
  std::map<std::string, double> recipe_psnr;
  std::optional<TargetResult> target_bits, target_psnr;
  std::optional<ShardInfo> shard;

  const Recipe* find_recipe(const std::string& name) const;
  int64_t elements_of(const std::string& layer) const;  // throws for an unknown layer
  // Complete when every candidate has a value (for every nbits of the settings).
  bool single_layer_complete(int nbits) const;
  bool cumulative_complete(int nbits) const;
  // The first stage with work left.
  AnalysisStage stage() const;
  std::vector<int> nbits() const;  // the settings' or, for Apple's files, the cumulative keys
  int64_t group_size_for_metadata() const;  // the settings' group size, 0 without settings

  nlohmann::ordered_json to_json() const;
  // Parses and validates a document (parsed keeping key order: recipes stay in theirs); `where` (a
  // file name) prefixes every error. With `require_settings` (resume, merge) sdpal's own keys must
  // be present; without (report, apply), Apple's files are accepted and the candidates come from
  // the cumulative metadata.
  static Analysis from_json(const nlohmann::ordered_json& j, const std::string& where,
                            bool require_settings);
};

// Reads and validates an analysis file (clear errors for missing, unreadable or corrupted files).
Analysis read_analysis(const std::string& path, bool require_settings);
// Writes atomically (a temp file renamed into place).
void write_analysis(const std::string& path, const Analysis& a);

// Mean of per-run dB values.
double mean_psnr(const std::vector<double>& per_run);
// How values are recorded: capped at kMaxRecordedPsnr, rounded to 0.01 dB.
double recorded_psnr(double db);
// "recipe_4.52_bit_mixedpalette"
std::string recipe_name(double average_bits);
// Σ bits·elements / Σ elements over the candidates (layers absent from the recipe count as 16).
double recipe_average_bits(const Analysis& a, const Recipe& r);

}  // namespace sdpal
