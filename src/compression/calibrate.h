// `sdpal calibrate`: measures the input range of every UNet Linear/Conv2d over a few prompts and
// timesteps (the denoising loop at a small size) for int8 (W8A8) compute.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "compression/int8_calibration.h"
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
  // After each prompt: done, total.
  std::function<void(int, int)> progress;
};

// Runs the prompts with a range observer installed on m's UNet (the text encoder runs before,
// not observed; nothing is decoded). Every layer is marked int8.
Int8Calibration calibrate_int8(const StableDiffusion& m, const CalibrateOptions& o);

}  // namespace sdpal
