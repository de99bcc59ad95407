// Blocks shared by the UNet and the VAE, named as diffusers names their modules:
// ResnetBlock2D, Attention (self/cross, multi-head), BasicTransformerBlock, Transformer2DModel,
// Downsample2D, Upsample2D. All activations are channel-last (NHWC or [B, T, C]).
#pragma once
#include <optional>

#include "models/layers.h"
#include "models/tome.h"

namespace sdpal {

struct ResnetBlock2D {
  GroupNorm norm1, norm2;
  Conv2d conv1, conv2;
  std::optional<Linear> time_emb_proj;  // absent in the VAE
  std::optional<Conv2d> conv_shortcut;  // 1x1, when in != out
  float output_scale = 1.f;
  void load(const WeightStore& ws, const std::string& path, int64_t in, int64_t out,
            int64_t temb_channels, int64_t groups, float eps);
  // temb_act: silu(temb) [B, temb_channels] (precomputed once per forward) or empty.
  Tensor operator()(const Tensor& x, const Tensor& temb_act) const;
};

// diffusers Attention: to_q, to_k, to_v (bias optional), to_out.0 (with bias).
struct Attention {
  Linear to_q, to_k, to_v, to_out;
  int64_t heads = 1;
  void load(const WeightStore& ws, const std::string& path, int64_t query_dim, int64_t context_dim,
            int64_t heads, int64_t head_dim, bool qkv_bias);
  // x: [B, T, C]; context: [B, S, Cc] or null for self-attention.
  Tensor operator()(const Tensor& x, const Tensor* context) const;
};

struct BasicTransformerBlock {
  LayerNorm norm1, norm2, norm3;
  Attention attn1, attn2;
  Linear ff_proj, ff_out;  // GEGLU: ff.net.0.proj -> [2*inner], ff.net.2
  void load(const WeightStore& ws, const std::string& path, int64_t dim, int64_t heads,
            int64_t head_dim, int64_t context_dim);
  // In place, x [B, h*w, C] (the h x w token grid, row-major). tome: merge tokens for
  // self-attention where the plan says so (null: off).
  void operator()(Tensor& x, const Tensor& context, int64_t h, int64_t w,
                  const ToMeCall* tome = nullptr) const;
};

struct Transformer2DModel {
  GroupNorm norm;
  Linear proj_in, proj_out;  // 1x1 conv or Linear: identical on channel-last data
  std::vector<BasicTransformerBlock> blocks;
  void load(const WeightStore& ws, const std::string& path, int64_t channels, int64_t heads,
            int64_t head_dim, int64_t context_dim, int64_t layers, int64_t groups,
            bool linear_projection);  // diffusers' use_linear_projection (else 1x1 convs)
  Tensor operator()(const Tensor& x, const Tensor& context,
                    const ToMeCall* tome = nullptr) const;  // NHWC
};

struct Downsample2D {
  Conv2d conv;
  // UNet: stride-2 3x3 conv with padding 1. VAE encoder: padding 0 after a (0,1,0,1) pad.
  void load(const WeightStore& ws, const std::string& path, int64_t channels, bool vae_padding);
  Tensor operator()(const Tensor& x) const { return conv(x); }
};

struct Upsample2D {
  Conv2d conv;
  void load(const WeightStore& ws, const std::string& path, int64_t channels);
  // Nearest resize to (h, w) (x2 normally; the skip tensor's size for odd sizes), then 3x3 conv.
  Tensor operator()(const Tensor& x, int64_t h, int64_t w) const;
};

}  // namespace sdpal
