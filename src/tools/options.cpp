#include "tools/options.h"

#include <omp.h>

#include <fstream>

#include "core/error.h"

namespace sdpal {

void add_model_options(CLI::App& app, ModelArgs& a) {
  app.add_option("-m,--model", a.path,
                 "Diffusers folder or single-file .safetensors checkpoint "
                 "(default: the built-in demo model)");
  app.add_option("--variant", a.variant, "Weight variant to load, e.g. fp16");
  app.add_option("--prediction-type", a.prediction_type,
                 "Override the model's prediction type: epsilon | v (SD 2.x 768-v models)");
  app.add_option("--tokenizer", a.tokenizer,
                 "Tokenizer folder (vocab.json, merges.txt) for single-file checkpoints");
  app.add_option("-t,--threads", a.threads, "CPU threads (default: all cores)");
}

void add_int8_options(CLI::App& app, ModelArgs& a) {
  app.add_flag("--int8", a.int8,
               "int8 (W8A8) compute for the UNet's calibrated layers (run `sdpal calibrate` "
               "first)");
  app.add_option(
      "--int8-calibration", a.int8_calibration,
      "Calibration file for --int8 (implies --int8; default: <model>/unet/sdpal_int8.json, or "
      "<checkpoint>.sdpal_int8.json beside a single file)");
}

void apply_threads(int threads) {
  SDPAL_CHECK(threads >= 0 && threads <= 1024, "--threads must be between 0 and 1024");
  if (threads > 0) omp_set_num_threads(threads);
}

std::unique_ptr<StableDiffusion> load_model(const ModelArgs& a, bool need_encoder) {
  std::string path = a.path;
  if (path.empty()) {
    path = default_model_path();
    SDPAL_CHECK(!path.empty(),
                "no --model given and the built-in demo model (models/demo-fashion) "
                "was not found");
  }
  LoadOptions o;
  o.variant = a.variant;
  o.prediction_type = a.prediction_type;
  o.tokenizer_dir = a.tokenizer;
  o.load_vae_encoder = need_encoder;
  o.int8 = a.int8 || !a.int8_calibration.empty();
  o.int8_calibration = a.int8_calibration;
  return StableDiffusion::load(path, o);
}

void add_lut_granularity_options(CLI::App& app, LutGranularityArgs& a) {
  app.add_option("--granularity", a.granularity,
                 "per-tensor (default) or per-grouped-channel (one LUT per group of output "
                 "channels)")
      ->check(CLI::IsMember({"per-tensor", "per-grouped-channel"}));
  app.add_option_function<int64_t>(
      "--group-size",
      [&a](int64_t g) {
        a.group_size = g;
        a.group_size_given = true;
      },
      "Output channels per LUT with per-grouped-channel (default 16)");
}

int64_t resolve_group_size(const LutGranularityArgs& a, const std::string& command) {
  std::string gran = a.granularity;
  if (gran.empty()) gran = a.group_size_given ? "per-grouped-channel" : "per-tensor";
  if (gran == "per-tensor") {
    SDPAL_CHECK(!a.group_size_given,
                command + ": --group-size needs --granularity per-grouped-channel");
    return 0;
  }
  const int64_t g = a.group_size_given ? a.group_size : 16;
  SDPAL_CHECK(g > 0, command + ": --group-size must be positive");
  return g;
}

std::vector<std::string> read_prompts_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) fail("cannot open prompts file " + path);
  std::vector<std::string> r;
  for (std::string line; std::getline(f, line);)
    if (!line.empty() && line[0] != '#') r.push_back(line);
  SDPAL_CHECK(!r.empty(), path + ": no prompts (one per line; # starts a comment)");
  return r;
}

}  // namespace sdpal
