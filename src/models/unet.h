// UNet2DConditionModel (diffusers) for SD 1.x / 2.x and SDXL, built from its config.json: every
// block type of those models, conv or linear projections, per-block head counts and transformer
// depths, sinusoidal timestep embedding exactly as diffusers computes it, and SDXL's "text_time"
// added conditioning (pooled text embeddings and size/crop time ids).
#pragma once
#include <nlohmann/json.hpp>
#include <vector>

#include "models/blocks.h"

namespace sdpal {

struct UNetConfig {
  int64_t in_channels = 4, out_channels = 4;
  std::vector<int64_t> block_out_channels;
  std::vector<int64_t> layers_per_block;     // per down block
  std::vector<int64_t> heads;                // per down block
  std::vector<int64_t> transformer_layers;   // per down block
  std::vector<int64_t> cross_attention_dim;  // per down block
  std::vector<std::string> down_block_types, up_block_types;
  std::string mid_block_type = "UNetMidBlock2DCrossAttn";
  int64_t norm_num_groups = 32;
  float norm_eps = 1e-5f;
  bool use_linear_projection = false;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  int64_t time_embed_dim = 0;  // 4 * block_out_channels[0]
  int64_t sample_size = 64;
  // SDXL: addition_embed_type "text_time" ("" for none). add_embedding maps
  // cat(text_embeds, flatten(Timesteps(addition_time_embed_dim)(time_ids))) of width
  // projection_class_embeddings_input_dim to the time embedding, which it is added to.
  std::string addition_embed_type;
  int64_t addition_time_embed_dim = 0, projection_class_embeddings_input_dim = 0;
  static UNetConfig from_json(const nlohmann::json& j, const std::string& where);
};

// SDXL's added conditions (addition_embed_type "text_time"), one row per batch element.
struct TextTimeCond {
  Tensor text_embeds;  // [B, P]: pooled, projected text embeddings (text_encoder_2's text_embeds)
  Tensor time_ids;     // [B, n]: SDXL base (original h, w, crop top, left, target h, w)
};

class UNet {
 public:
  UNet(const WeightStore& ws, const UNetConfig& cfg);
  const UNetConfig& config() const { return cfg_; }
  // sample [B, C, h, w] (NCHW), timesteps: 1 value (shared) or B values, context [B, S, D].
  // tome: token merging in the transformer blocks (see models/tome.h), the caller's own setting
  // and random stream (one per generation); null or ratio 0 leaves the result unchanged, bit for
  // bit. added: SDXL's text_time conditions, required exactly when the config has them.
  // forward() changes nothing in the UNet: calls may run at the same time.
  Tensor forward(const Tensor& sample, const std::vector<double>& timesteps, const Tensor& context,
                 const ToMe* tome = nullptr, const TextTimeCond* added = nullptr) const;
  bool needs_text_time() const { return cfg_.addition_embed_type == "text_time"; }
  // Every Linear and Conv2d, in forward order: for int8 preparation and calibration.
  std::vector<WeightLayer*> weight_layers();
  // Compressed weights through the fused kernels (the default) or expanded per layer first (see
  // WeightLayer::fused_lut); benchmarks compare both.
  void set_fused_lut(bool on);

 private:
  struct Level {
    std::vector<ResnetBlock2D> resnets;
    std::vector<Transformer2DModel> attentions;  // empty for plain blocks
    std::optional<Downsample2D> down;
    std::optional<Upsample2D> up;
  };
  Tensor time_embedding(const std::vector<double>& t, int64_t batch) const;
  Tensor added_embedding(const TextTimeCond& added, int64_t batch) const;
  UNetConfig cfg_;
  Conv2d conv_in_, conv_out_;
  Linear time_linear_1_, time_linear_2_;
  Linear add_linear_1_, add_linear_2_;  // add_embedding (text_time only)
  std::vector<Level> down_, up_;
  ResnetBlock2D mid_res0_, mid_res1_;
  std::optional<Transformer2DModel> mid_attn_;
  GroupNorm norm_out_;
};

}  // namespace sdpal
