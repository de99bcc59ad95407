// Inferring diffusers / transformers config.json contents of SD 1.x / 2.x components from the
// shapes of their (diffusers-named) tensors. Structure (channels, depths, which levels attend,
// projection kind) follows from shapes; what shapes cannot tell (head counts, norm groups, scaling
// factor) takes the values of the real SD 1.x / 2.x releases.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/dtype.h"
#include "core/tensor.h"

namespace sdpal {

using ShapeMap = std::map<std::string, Shape>;

// `where` names the file for error messages. sd2 selects SD 2.x conventions (head size 64,
// upcast_attention, 768-pixel default size) over SD 1.x ones (8 heads per block).
nlohmann::json infer_unet_config(const ShapeMap& unet, bool sd2, const std::string& where);
nlohmann::json infer_vae_config(const ShapeMap& vae, bool sd2, const std::string& where);
// SD1: CLIP ViT-L style (quick_gelu); SD2: OpenCLIP style (gelu). `dtype` fills torch_dtype.
nlohmann::json infer_text_encoder_config(const ShapeMap& text, bool sd2, DType dtype,
                                         const std::string& where);

}  // namespace sdpal
