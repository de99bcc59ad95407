// A loaded Stable Diffusion model: tokenizer, text encoder, UNet, VAE and scheduler config, from a
// diffusers folder or a single-file (original layout) .safetensors checkpoint. SDXL (from a
// diffusers folder) adds a second tokenizer and text encoder (CLIPTextModelWithProjection).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"
#include "pipeline/tokenizer.h"

namespace sdpal {

struct LoadOptions {
  std::string variant;           // "" (auto: plain files, else *.fp16 ones) or "fp16"
  std::string prediction_type;   // "" (from the scheduler config), "epsilon" or "v_prediction"
  std::string tokenizer_dir;     // single files carry no tokenizer: where to find one
  bool load_vae_encoder = true;  // img2img needs it
  // int8 (W8A8) compute for the UNet layers its calibration file marks int8 (text encoder and VAE
  // stay fp32). The file: int8_calibration, or by default default_int8_calibration_path(path).
  bool int8 = false;
  std::string int8_calibration;
};

struct StableDiffusion {
  std::string path, name, kind;  // kind: "sd1" | "sd2" | "sdxl"
  std::unique_ptr<ClipTokenizer> tokenizer;
  std::unique_ptr<WeightStore> te_ws, unet_ws, vae_ws;
  std::unique_ptr<ClipTextModel> text_encoder;
  // SDXL: tokenizer_2 / text_encoder_2 (null for SD 1/2), and model_index.json's
  // force_zeros_for_empty_prompt (no negative prompt given: all-zero unconditional embeddings).
  std::unique_ptr<ClipTokenizer> tokenizer_2;
  std::unique_ptr<WeightStore> te2_ws;
  std::unique_ptr<ClipTextModel> text_encoder_2;
  bool force_zeros_for_empty_prompt = false;
  std::unique_ptr<UNet> unet;
  std::unique_ptr<Vae> vae;
  nlohmann::json scheduler_config;  // diffusers scheduler_config.json (+ prediction_type override)
  int64_t int8_layers = 0;          // UNet layers computing in int8 (LoadOptions::int8)

  // Loads a diffusers folder or a .safetensors single file; throws sdpal::Error naming the problem.
  static std::unique_ptr<StableDiffusion> load(const std::string& path,
                                               const LoadOptions& opt = {});
};

// Path of the demo model shipped with sdpal (models/demo-fashion), found next to the executable's
// source tree or install prefix; empty if it cannot be found.
std::string default_model_path();
// Path of a data file or folder shipped with sdpal under models/ (e.g. "tokenizers/sd2"); empty
// if it cannot be found.
std::string shipped_path(const std::string& rel);

}  // namespace sdpal
