#include "models/flops.h"

#include <vector>

namespace sdpal {

namespace {

struct Size {
  int64_t h, w;
  double pixels() const { return static_cast<double>(h) * static_cast<double>(w); }
};

// Accumulates the cost of the blocks in models/blocks.h for a batch of `b` images.
struct Counter {
  double b;
  ComputeCost c;

  void conv(Size out, int64_t cin, int64_t cout, int64_t k) {
    c.conv_macs += b * out.pixels() * static_cast<double>(cin * cout * k * k);
  }
  void linear(double rows, int64_t in, int64_t out) {
    c.linear_macs += b * rows * static_cast<double>(in * out);
  }
  void attention(double tq, double tk, int64_t inner) {  // heads * head_dim = inner
    c.attention_macs += 2 * b * tq * tk * static_cast<double>(inner);
  }
  // ResnetBlock2D; temb = 0 for the VAE (no time projection).
  void resnet(Size s, int64_t in, int64_t out, int64_t temb) {
    conv(s, in, out, 3);
    conv(s, out, out, 3);
    if (in != out) conv(s, in, out, 1);
    if (temb > 0) linear(1, temb, out);
  }
  // Transformer2DModel with one or more BasicTransformerBlocks (inner == channels in SD).
  void transformer(Size s, int64_t channels, int64_t inner, int64_t layers, int64_t ctx_len,
                   int64_t ctx_dim) {
    const double t = s.pixels();
    linear(t, channels, inner);  // proj_in
    for (int64_t l = 0; l < layers; ++l) {
      linear(t, inner, inner * 3);  // attn1 q, k, v
      attention(t, t, inner);
      linear(t, inner, inner);                                   // attn1 out
      linear(t, inner, inner);                                   // attn2 q
      linear(static_cast<double>(ctx_len), ctx_dim, inner * 2);  // attn2 k, v
      attention(t, static_cast<double>(ctx_len), inner);
      linear(t, inner, inner);      // attn2 out
      linear(t, inner, inner * 8);  // GEGLU projection
      linear(t, inner * 4, inner);  // ff out
    }
    linear(t, inner, channels);  // proj_out
  }
};

Size half(Size s) { return {(s.h + 1) / 2, (s.w + 1) / 2}; }

}  // namespace

ComputeCost unet_cost(const UNetConfig& cfg, int64_t batch, int64_t latent_h, int64_t latent_w,
                      int64_t context_len) {
  const auto& C = cfg.block_out_channels;
  const int64_t n = static_cast<int64_t>(C.size()), T = cfg.time_embed_dim;
  Counter k{static_cast<double>(batch), {}};
  Size s{latent_h, latent_w};
  k.conv(s, cfg.in_channels, C[0], 3);
  k.linear(1, C[0], T);
  k.linear(1, T, T);

  std::vector<Size> level_size;  // spatial size of each down level
  std::vector<int64_t> skips{C[0]};
  int64_t ch = C[0];
  for (int64_t i = 0; i < n; ++i) {
    level_size.push_back(s);
    const bool attn = cfg.down_block_types[i] == "CrossAttnDownBlock2D";
    for (int64_t j = 0; j < cfg.layers_per_block[i]; ++j) {
      k.resnet(s, j == 0 ? ch : C[i], C[i], T);
      if (attn)
        k.transformer(s, C[i], C[i], cfg.transformer_layers[i], context_len,
                      cfg.cross_attention_dim[i]);
      skips.push_back(C[i]);
    }
    ch = C[i];
    if (i + 1 < n) {
      s = half(s);
      k.conv(s, C[i], C[i], 3);
      skips.push_back(C[i]);
    }
  }
  k.resnet(s, C[n - 1], C[n - 1], T);
  k.transformer(s, C[n - 1], C[n - 1], cfg.transformer_layers[n - 1], context_len,
                cfg.cross_attention_dim[n - 1]);
  k.resnet(s, C[n - 1], C[n - 1], T);

  int64_t prev = C[n - 1];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = n - 1 - i, out = C[r];
    const bool attn = cfg.up_block_types[i] == "CrossAttnUpBlock2D";
    for (int64_t j = 0; j < cfg.layers_per_block[r] + 1; ++j) {
      k.resnet(s, (j == 0 ? prev : out) + skips.back(), out, T);
      skips.pop_back();
      if (attn)
        k.transformer(s, out, out, cfg.transformer_layers[r], context_len,
                      cfg.cross_attention_dim[r]);
    }
    prev = out;
    if (i + 1 < n) {
      s = level_size[r - 1];  // upsampled to the size of the next skip
      k.conv(s, out, out, 3);
    }
  }
  k.conv(s, C[0], cfg.out_channels, 3);
  return k.c;
}

ComputeCost vae_decoder_cost(const VaeConfig& cfg, int64_t batch, int64_t latent_h,
                             int64_t latent_w) {
  const auto& C = cfg.block_out_channels;
  const int64_t n = static_cast<int64_t>(C.size()), top = C[n - 1];
  Counter k{static_cast<double>(batch), {}};
  Size s{latent_h, latent_w};
  k.conv(s, cfg.latent_channels, cfg.latent_channels, 1);  // post_quant_conv
  k.conv(s, cfg.latent_channels, top, 3);
  // Mid block: resnet, single-head self-attention over all pixels, resnet.
  k.resnet(s, top, top, 0);
  k.linear(s.pixels(), top, top * 4);  // q, k, v, out
  k.attention(s.pixels(), s.pixels(), top);
  k.resnet(s, top, top, 0);
  int64_t prev = top;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t out = C[n - 1 - i];
    for (int64_t j = 0; j < cfg.layers_per_block + 1; ++j) k.resnet(s, j == 0 ? prev : out, out, 0);
    prev = out;
    if (i + 1 < n) {
      s = {s.h * 2, s.w * 2};
      k.conv(s, out, out, 3);
    }
  }
  k.conv(s, C[0], cfg.out_channels, 3);
  return k.c;
}

}  // namespace sdpal
