// TAESD (Tiny AutoEncoder for Stable Diffusion): a small distilled VAE that maps images in [0, 1]
// to the diffusion model's (already scaled) latent space and back, at a fraction of the VAE's cost.
//
// Weights come in two layouts, detected from the tensor names:
//  * taesd.py (madebyollin/taesd): <prefix>_encoder.safetensors / <prefix>_decoder.safetensors,
//    keys of an nn.Sequential ("<index>.weight", "<index>.conv.<j>.weight", "<index>.skip.weight");
//  * diffusers AutoencoderTiny: one diffusion_pytorch_model.safetensors with the same modules under
//    "encoder.layers.<index>..." / "decoder.layers.<index>..." (and an optional config.json).
// The layer sequence (channel widths, number of blocks, downsampling/upsampling stages) is derived
// from the tensors present, not hard-coded.
#pragma once
#include <memory>
#include <string>

#include "core/tensor.h"

namespace sdpal {

class Taesd {
 public:
  // `path` is one of:
  //  * a folder with diffusion_pytorch_model.safetensors (diffusers AutoencoderTiny), or with
  //    exactly one pair of <prefix>_encoder/_decoder.safetensors files (either may be absent);
  //  * a file prefix such as ".../taesdxl" for ".../taesdxl_encoder.safetensors" and
  //    ".../taesdxl_decoder.safetensors" (either may be absent: decoder-only is the common use);
  //  * a single .safetensors file in either layout.
  // Throws sdpal::Error naming the file when nothing is found or the tensors do not form a TAESD.
  static Taesd load(const std::string& path);

  bool has_encoder() const { return encoder_ != nullptr; }
  bool has_decoder() const { return decoder_ != nullptr; }
  int64_t latent_channels() const;  // 4 for SD 1.x/2.x/XL TAESDs
  int spatial_scale() const;        // image size / latent size (8)

  // [B, 3, H, W] image in [0, 1] -> latents [B, C, ceil(H/8), ceil(W/8)], already in the diffusion
  // model's scaled latent space (no scaling_factor to apply).
  Tensor encode(const Tensor& image01_nchw) const;
  // Latents [B, C, h, w] -> [B, 3, 8h, 8w] image, nominally in [0, 1] but not clamped.
  Tensor decode(const Tensor& latents_nchw) const;

  struct Stack;  // one parsed nn.Sequential (defined in taesd.cpp)

 private:
  std::shared_ptr<const Stack> encoder_, decoder_;
};

}  // namespace sdpal
