// Text-to-image and image-to-image generation with classifier-free guidance, following diffusers'
// StableDiffusionPipeline / StableDiffusionImg2ImgPipeline step by step, and for SDXL models
// StableDiffusionXLPipeline (txt2img): pooled text embeddings and size/crop time ids as the
// UNet's added conditions, all-zero unconditional embeddings when no negative prompt is given.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/lora.h"
#include "models/tome.h"
#include "pipeline/sd_model.h"

namespace sdpal {

class Taesd;

struct GenerateParams {
  std::vector<std::string> prompts;  // one per image
  // Empty (none given), one, or one per prompt. None given: "" for SD 1/2; for SDXL models with
  // force_zeros_for_empty_prompt all-zero unconditional embeddings (diffusers' negative_prompt
  // None), whereas an explicit "" is encoded.
  std::vector<std::string> negative_prompts;
  int width = 512, height = 512, steps = 20;
  float cfg_scale = 7.5f;           // <= 1 disables the unconditional pass (diffusers)
  std::string sampler = "euler_a";  // ddim | euler | euler_a | dpmpp_2m | pndm
  bool karras = false;
  std::string timestep_spacing;  // "" (the sampler's default), leading, linspace, trailing
  float eta = 0.f;               // DDIM
  uint64_t seed = 0;
  int clip_skip = 1;  // A1111 convention: 1 = last layer, 2 = penultimate
  // SDXL micro-conditioning (diffusers' original_size, crops_coords_top_left, target_size), in
  // pixels; 0 for a size means the image's (width x height), diffusers' default. The same values
  // go to the unconditional rows.
  int original_width = 0, original_height = 0, target_width = 0, target_height = 0;
  int crop_top = 0, crop_left = 0;
  // A1111 prompt syntax (pipeline/prompt_encoding.h): emphasis, BREAK, long prompts in 75-token
  // chunks, extra-network tags removed. false: diffusers' plain encoding, truncated at 77 tokens.
  bool prompt_syntax = true;
  // LoRAs for this generation, besides those named by <lora:name:w> tags in the prompts, which
  // are loaded from lora_dir (pipeline/lora_selection.h). They are attached to copies of the UNet
  // and text encoder as low-rank branches (the loaded model is not changed), or with lora_merge
  // merged into the copies' dense weights (faster per step; compressed layers keep branches).
  std::vector<LoraUse> loras;
  std::string lora_dir;
  bool lora_merge = false;
  // Textual-inversion embeddings (pipeline/embeddings.h): a folder of .safetensors files, used
  // where their names appear in a prompt (prompt syntax on). Empty: none.
  std::string embeddings_dir;
  // Reproduction of a reference run: initial noise [B,4,h,w] (or [4,h,w], repeated) and per-step
  // noise [steps,B,4,h,w] for ancestral samplers; they replace the seeded RNG.
  std::optional<Tensor> init_noise, step_noise;
  // img2img: an image [1 or B, 3, H, W] in [-1, 1] and how much of the schedule to run.
  std::optional<Tensor> init_image;
  float strength = 0.75f;
  // Masked img2img (needs init_image): [1, 1, H, W] in [0, 1], >= 0.5 = repaint, else keep.
  // diffusers' inpainting pipeline with a plain (4-channel) UNet: the mask is binarised and taken
  // to the latent grid by nearest sampling (the top-left pixel of each cell); after every step the
  // kept cells are replaced by the encoded init image noised to the next step's level (the same
  // noise as the start), and by the clean encoded image after the last step.
  std::optional<Tensor> mask;
  const Taesd* taesd_decoder = nullptr;  // decode with TAESD instead of the VAE
  // Token merging in the UNet for this generation (models/tome.h), with its own random stream.
  ToMeOptions tome;
  // Called after every step with (step done, total, current latents).
  std::function<void(int, int, const Tensor&)> on_step;
};

struct GenerateResult {
  Tensor latents;  // final latents [B,4,h,w] (scaled latent space, before decoding)
  Tensor image01;  // [B,3,H,W] in [0,1]
  int unet_calls = 0;
  std::vector<std::string> warnings;  // e.g. prompts cut at 77 tokens
  std::vector<LoraUse> loras;         // every LoRA applied (for the infotext's Lora hashes)
};

// img2img's start latents before noising: a sample of the VAE posterior, (mean + std * eps)
// scaled by the VAE's scaling_factor (diffusers: latent_dist.sample() * scaling_factor).
Tensor init_image_latents(const StableDiffusion& m, const VaeEncoding& e, const Tensor& eps);

// Prompt embeddings [N, 77, D] of the given texts as diffusers encodes them (no prompt syntax;
// warnings receive truncation notes). generate() uses encode_prompt_batch (prompt_encoding.h).
Tensor encode_prompts(const StableDiffusion& m, const std::vector<std::string>& texts,
                      int clip_skip, std::vector<std::string>* warnings);

GenerateResult generate(const StableDiffusion& m, const GenerateParams& p);

// The denoising part of generate() (scheduler, initial latents, UNet loop; no text encoding, no
// decoding) on precomputed text embeddings, run with `unet`: the model's own or another UNet of
// the same architecture, e.g. one built on weights with some layers palettized in memory.
// `context` is what generate() would encode: [2B, T, D] (unconditional rows first) when
// p.cfg_scale > 1, else [B, T, D] (T = 77, or a multiple of it for long prompts), with B =
// p.prompts.size(). Returns the final latents [B, 4, h, w], bit-identical to generate(m, p).latents
// when `unet` has m's weights.
// For SDXL `pooled` is required: text_encoder_2's pooled embeddings, one row per context row.
Tensor denoise_latents(const StableDiffusion& m, const UNet& unet, const Tensor& context,
                       const GenerateParams& p, int* unet_calls = nullptr,
                       const Tensor* pooled = nullptr);

// SDXL's add_time_ids of a generation: (original h, w, crop top, left, target h, w).
std::vector<float> sdxl_time_ids(const GenerateParams& p);

// A [1, 1, H, W] mask in [0, 1] on the latent grid [1, 1, H/f, W/f]: binarised (>= 0.5 -> 1) and
// sampled at the top-left pixel of each f x f cell (torch's F.interpolate 'nearest').
Tensor latent_mask(const Tensor& mask, int f);

// Pixels per latent cell: 2^(VAE levels - 1), 8 for SD (diffusers' vae_scale_factor).
int vae_scale_factor(const StableDiffusion& m);
// diffusers' default image side: unet sample_size * vae_scale_factor (512 for SD 1.5).
int default_image_size(const StableDiffusion& m);

// Latents -> image in [0,1] with the model's VAE (latents / scaling_factor, decode, /2+0.5, clamp).
Tensor decode_latents(const StableDiffusion& m, const Tensor& latents);

}  // namespace sdpal
