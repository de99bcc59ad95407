// `sdpal calibrate`: measures the input range of every UNet Linear/Conv2d over a few prompts and
// timesteps (the denoising loop at a small size) for int8 (W8A8) compute.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/int8_calibration.h"
#include "pipeline/sd_model.h"

namespace sdpal {

// Two prompts of different subjects and styles (the default of --prompts).
const std::vector<std::string>& default_calibration_prompts();

struct CalibrateOptions {
  std::vector<std::string> prompts;  // empty: default_calibration_prompts()
  int steps = 4;                     // DDIM steps per prompt: timesteps spread over the schedule
  int width = 0, height = 0;         // 0: the model's native size
  uint64_t seed = 0;                 // prompt i uses seed + i
  float cfg_scale = 7.5f;            // > 1: the unconditional rows are calibrated too
  std::string sampler = "ddim";
  // Layers doing less than this share of the UNet's Linear/Conv work (conv_in, conv_out, the time
  // embedding, cross-attention keys/values of 77 tokens) default to fp32: int8 would gain nothing
  // there but add error. conv_in and conv_out always default to fp32 (see calibrate.cpp).
  double min_work_share = 0.001;
  // After each prompt: done, total.
  std::function<void(int, int)> progress;
};

// Runs the prompts with a range observer installed on m's UNet (the text encoder runs before,
// not observed; nothing is decoded). Layers are marked int8 by min_work_share.
Int8Calibration calibrate_int8(const StableDiffusion& m, const CalibrateOptions& o);

}  // namespace sdpal
