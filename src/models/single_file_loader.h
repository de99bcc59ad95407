// Loading a single-file SD 1.x / 2.x checkpoint (original CompVis / A1111 layout) into the weight
// stores of its three components with diffusers / transformers names. The name mapping, config
// inference and writing of such files are formats/checkpoint_keymap.h; this applies the mapping to
// WeightStores.
//
// Typical use (the pipeline builds its models from the stores and configs afterwards):
//   WeightStore unet("unet"), vae("vae"), te("text_encoder");
//   nlohmann::json unet_cfg, vae_cfg, te_cfg;
//   std::string kind;
//   load_single_file(path, unet, vae, te, &unet_cfg, &vae_cfg, &te_cfg, &kind);
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "models/weights.h"

namespace sdpal {

// Maps a single-file checkpoint into three stores with diffusers / transformers tensor names (no
// copies: renamed views into the mapped file; OpenCLIP's fused in_proj is split into q/k/v views,
// the VAE's 1x1-conv attention weights are viewed as Linear [C, C]). Fills each non-null config
// with the component's config.json content (embedded sdpal.* metadata, else inferred from shapes)
// and `kind` with "sd1" (CLIP text encoder) or "sd2" (OpenCLIP). For SD2 the last OpenCLIP block is
// not mapped: diffusers' SD2 text encoder ends at the penultimate block (num_hidden_layers = L-1;
// an embedded text config's num_hidden_layers decides instead, and a ViT-H file with only 23
// blocks, as converted from diffusers without the unused last one, keeps all 23).
// Throws sdpal::Error for pickle files, SDXL or other unsupported layouts, or unmappable keys.
void load_single_file(const std::string& path, WeightStore& unet, WeightStore& vae,
                      WeightStore& text_encoder, nlohmann::json* unet_config,
                      nlohmann::json* vae_config, nlohmann::json* text_config, std::string* kind);

}  // namespace sdpal
