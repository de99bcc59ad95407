// Options shared by the subcommands that load a model.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/sd_model.h"

namespace sdpal {

struct ModelArgs {
  std::string path;             // empty: the built-in demo model
  std::string variant;          // --variant fp16
  std::string prediction_type;  // --prediction-type v
  std::string tokenizer;        // --tokenizer DIR for single files
  int threads = 0;              // 0: all cores
};

void add_model_options(CLI::App& app, ModelArgs& a);
std::unique_ptr<StableDiffusion> load_model(const ModelArgs& a, bool need_encoder);
void apply_threads(int threads);
// Prompts from a text file: one per line; empty lines and lines starting with # are skipped.
std::vector<std::string> read_prompts_file(const std::string& path);

}  // namespace sdpal
