// AutoencoderKL (diffusers) encoder and decoder, built from the vae config.json.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "models/blocks.h"

namespace sdpal {

struct VaeConfig {
  int64_t in_channels = 3, out_channels = 3, latent_channels = 4, layers_per_block = 2;
  std::vector<int64_t> block_out_channels;
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.18215;
  static VaeConfig from_json(const nlohmann::json& j, const std::string& where);
};

struct VaeEncoding {
  Tensor mean, logvar;  // [B, latent, h, w], logvar clamped to [-30, 20]
};

class Vae {
 public:
  // The encoder is optional: decode-only use needs no encoder weights.
  Vae(const WeightStore& ws, const VaeConfig& cfg, bool with_encoder = true);
  const VaeConfig& config() const { return cfg_; }
  bool has_encoder() const { return has_encoder_; }
  // z: unscaled latents [B, latent, h, w] -> image [B, 3, 8h, 8w] (raw, nominally [-1, 1]).
  Tensor decode(const Tensor& z) const;
  // image [B, 3, H, W] in [-1, 1] -> posterior moments.
  VaeEncoding encode(const Tensor& image) const;

 private:
  struct MidBlock {
    ResnetBlock2D res0, res1;
    GroupNorm attn_norm;
    Linear q, k, v, o;
    void load(const WeightStore& ws, const std::string& p, int64_t ch, int64_t groups);
    Tensor operator()(const Tensor& x) const;
  };
  struct Level {
    std::vector<ResnetBlock2D> resnets;
    std::optional<Downsample2D> down;
    std::optional<Upsample2D> up;
  };
  VaeConfig cfg_;
  bool has_encoder_ = false;
  // encoder
  Conv2d enc_conv_in_, enc_conv_out_, quant_conv_;
  std::vector<Level> enc_levels_;
  MidBlock enc_mid_;
  GroupNorm enc_norm_out_;
  // decoder
  Conv2d post_quant_conv_, dec_conv_in_, dec_conv_out_;
  std::vector<Level> dec_levels_;
  MidBlock dec_mid_;
  GroupNorm dec_norm_out_;
};

}  // namespace sdpal
