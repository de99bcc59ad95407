// Options shared by the subcommands that load a model.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/sd_model.h"

namespace sdpal {

struct ModelArgs {
  std::string path;              // empty: the built-in demo model
  std::string variant;           // --variant fp16
  std::string prediction_type;   // --prediction-type v
  std::string tokenizer;         // --tokenizer DIR for single files
  int threads = 0;               // 0: all cores
  bool int8 = false;             // --int8 (add_int8_options)
  std::string int8_calibration;  // --int8-calibration FILE
};

void add_model_options(CLI::App& app, ModelArgs& a);
// --int8 and --int8-calibration, for the commands that run the UNet.
void add_int8_options(CLI::App& app, ModelArgs& a);
std::unique_ptr<StableDiffusion> load_model(const ModelArgs& a, bool need_encoder);
void apply_threads(int threads);

// --granularity / --group-size, shared by the commands that palettize (compress, analyze).
struct LutGranularityArgs {
  std::string granularity;  // "", "per-tensor" or "per-grouped-channel"
  int64_t group_size = 0;
  bool group_size_given = false;
  bool given() const { return !granularity.empty() || group_size_given; }
};
void add_lut_granularity_options(CLI::App& app, LutGranularityArgs& a);
// Output channels per LUT (0 = per tensor); --group-size alone implies per-grouped-channel, whose
// default group is 16. Errors name `command`.
int64_t resolve_group_size(const LutGranularityArgs& a, const std::string& command);
// Prompts from a text file: one per line; empty lines and lines starting with # are skipped.
std::vector<std::string> read_prompts_file(const std::string& path);

}  // namespace sdpal
