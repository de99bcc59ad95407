// Measured quality of a compressed model: PSNR of its outputs against the uncompressed model's on
// the same prompts, seeds and noise.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/sd_model.h"

namespace sdpal {

// PSNR in dB of `test` against `reference`: 20 * log10(peak / RMSE) with peak = max |test|
// (the definition of Apple's mixed-bit palettization tooling). Identical tensors give +infinity.
double psnr(const Tensor& reference, const Tensor& test);

struct CompareOptions {
  std::vector<std::string> prompts;  // empty: default_compare_prompts()
  std::vector<uint64_t> seeds{0};
  int steps = 10, width = 0, height = 0;  // 0: the model's native size
  float cfg_scale = 7.5f;
  std::string sampler = "ddim";  // deterministic: no per-step noise
};

struct CompareRun {
  std::string prompt;
  uint64_t seed = 0;
  double psnr_latents = 0, psnr_image = 0;
};

struct CompareResult {
  std::vector<CompareRun> runs;
  double mean_psnr_latents = 0, mean_psnr_image = 0;  // mean of the per-run dB values
};

const std::vector<std::string>& default_compare_prompts();

// Runs both models on every (prompt, seed) and compares final latents and decoded images.
CompareResult compare_models(const StableDiffusion& reference, const StableDiffusion& test,
                             const CompareOptions& opt);

}  // namespace sdpal
