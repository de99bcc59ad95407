// Single-file Stable Diffusion 1.x / 2.x checkpoints in the original CompVis / A1111 layout:
// one .safetensors holding model.diffusion_model.* (UNet), first_stage_model.* (VAE) and
// cond_stage_model.transformer.* (SD1: CLIP ViT-L, transformers names) or cond_stage_model.model.*
// (SD2: OpenCLIP ViT-H). The runtime works with diffusers / transformers names, so this module maps
// names (and the few layout differences) in both directions and infers each component's
// diffusers config.json from tensor shapes. Loading the mapped tensors into weight stores is
// models/single_file_loader.h's load_single_file (built on map_single_file below).
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace sdpal {

// Metadata keys holding the diffusers configs as JSON strings. When present they are used instead
// of shape inference (which cannot recover e.g. head counts or norm groups of non-standard models).
inline constexpr const char* kUnetConfigKey = "sdpal.unet_config";
inline constexpr const char* kVaeConfigKey = "sdpal.vae_config";
inline constexpr const char* kTextEncoderConfigKey = "sdpal.text_encoder_config";

// Throws sdpal::Error if `path` is a pickle checkpoint (.ckpt/.pt/.pth/.bin extension, or torch's
// zip/pickle signature inside): loading those can execute arbitrary code, so they are refused.
void refuse_pickle_checkpoint(const std::string& path);

// How a single-file checkpoint's tensors map onto the three diffusers components.
struct SingleFileMap {
  std::string kind;  // "sd1" (CLIP text encoder) or "sd2" (OpenCLIP)
  // File key -> runtime (diffusers / transformers) name, per component; unmapped keys are absent.
  std::map<std::string, std::string> unet, vae, text_encoder;
  // SD2: text-encoder attention prefixes ("text_model.encoder.layers.N.self_attn.") whose fused
  // OpenCLIP in_proj tensors ([3C, ...]) are mapped to the q_proj names, to be split into q/k/v.
  std::vector<std::string> fused_qkv;
};

// Maps a single-file checkpoint's tensor names (from its header: names, shapes, metadata). Fills
// each non-null config
// with the component's config.json content (embedded sdpal.* metadata, else inferred from shapes).
// For SD2 the last OpenCLIP block is not mapped: diffusers' SD2 text encoder ends at the
// penultimate block (num_hidden_layers = L-1; an embedded text config's num_hidden_layers decides
// instead, and a ViT-H file with only 23 blocks, as converted from diffusers without the unused
// last one, keeps all 23).
// Throws sdpal::Error for pickle files, SDXL or other unsupported layouts, or unmappable keys.
SingleFileMap map_single_file(const std::string& path, nlohmann::json* unet_config,
                              nlohmann::json* vae_config, nlohmann::json* text_config);

// Writes the unet, vae and text_encoder of a diffusers model folder as one original-layout
// checkpoint (tensors keep their file dtype; fp32 weights are preferred over *.fp16 variants).
// SD2 text encoders (hidden_act "gelu") are written as OpenCLIP: q/k/v fused into in_proj and one
// extra block (a copy of the last) appended, like a real checkpoint whose last block diffusers
// drops. With embed_configs the three config.json contents go into __metadata__ (see keys above).
// The file is written atomically.
void write_single_file(const std::string& model_dir, const std::string& out_path,
                       bool embed_configs = true);

// ---- Name mapping (exposed for tests and tools). Keys are given without the component prefix
// (model.diffusion_model., first_stage_model., cond_stage_model.transformer./.model.).
// nullopt: the key has no counterpart in an SD 1.x/2.x model of that layout.

// UNet. `layers_per_block` = resnets per down level (the original layout numbers blocks by it).
std::optional<std::string> unet_key_to_diffusers(const std::string& key, int layers_per_block);
// `up_has_attention[i]`: whether up_blocks.i has attentions (decides the upsampler's slot).
std::optional<std::string> unet_key_to_original(const std::string& key, int layers_per_block,
                                                const std::vector<bool>& up_has_attention);

// VAE. `num_levels` = len(block_out_channels); the decoder's up levels are numbered in reverse.
std::optional<std::string> vae_key_to_diffusers(const std::string& key, int num_levels);
std::optional<std::string> vae_key_to_original(const std::string& key, int num_levels);
// True for the VAE mid-block attention weights that are 1x1 convs in the original layout.
bool is_vae_attention_conv_weight(const std::string& diffusers_key);

// SD1 CLIP (transformers names; old files lack the "text_model." level).
std::optional<std::string> clip_key_to_diffusers(const std::string& key);
// SD2 OpenCLIP -> transformers names. attn.in_proj_weight / in_proj_bias map to the fused names
// "text_model.encoder.layers.N.self_attn.in_proj_weight" / "...in_proj_bias".
std::optional<std::string> openclip_key_to_diffusers(const std::string& key);
// transformers -> OpenCLIP; q/k/v projections map to nullopt (they are fused by the writer).
std::optional<std::string> openclip_key_to_original(const std::string& key);

}  // namespace sdpal
