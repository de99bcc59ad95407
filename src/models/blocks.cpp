#include "models/blocks.h"

#include "core/error.h"
#include "core/parallel.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/norm.h"
#include "kernels/resample.h"

namespace sdpal {

void ResnetBlock2D::load(const WeightStore& ws, const std::string& p, int64_t in, int64_t out,
                         int64_t temb_channels, int64_t groups, float eps) {
  norm1.load(ws, join(p, "norm1"), in, groups, eps);
  conv1.load(ws, join(p, "conv1"), in, out, 3);
  if (temb_channels > 0) {
    time_emb_proj.emplace();
    time_emb_proj->load(ws, join(p, "time_emb_proj"), temb_channels, out);
  }
  norm2.load(ws, join(p, "norm2"), out, groups, eps);
  conv2.load(ws, join(p, "conv2"), out, out, 3);
  if (in != out) {
    conv_shortcut.emplace();
    conv_shortcut->load(ws, join(p, "conv_shortcut"), in, out, 1, 1, 0);
  }
}

Tensor ResnetBlock2D::operator()(const Tensor& x, const Tensor& temb_act) const {
  Tensor h = conv1(norm1(x, /*silu=*/true));
  if (time_emb_proj) {
    Tensor t = (*time_emb_proj)(temb_act);  // [B, out]
    const int64_t B = h.dim(0), C = h.dim(3), S = h.dim(1) * h.dim(2);
#pragma omp parallel for collapse(2) if (h.numel() > kParallelGrain)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < S; ++s) {
        float* r = h.data() + (b * S + s) * C;
        const float* tb = t.data() + b * C;
        for (int64_t c = 0; c < C; ++c) r[c] += tb[c];
      }
  }
  h = conv2(norm2(h, /*silu=*/true));
  if (conv_shortcut) {
    k::add_(h, (*conv_shortcut)(x));
  } else {
    k::add_(h, x);
  }
  if (output_scale != 1.f)
    for (int64_t i = 0; i < h.numel(); ++i) h[i] /= output_scale;
  return h;
}

void Attention::load(const WeightStore& ws, const std::string& p, int64_t query_dim,
                     int64_t context_dim, int64_t heads_, int64_t head_dim, bool qkv_bias) {
  heads = heads_;
  const int64_t inner = heads * head_dim;
  to_q.load(ws, join(p, "to_q"), query_dim, inner, qkv_bias);
  to_k.load(ws, join(p, "to_k"), context_dim, inner, qkv_bias);
  to_v.load(ws, join(p, "to_v"), context_dim, inner, qkv_bias);
  to_out.load(ws, join(p, "to_out.0"), inner, query_dim);
}

Tensor Attention::operator()(const Tensor& x, const Tensor* context) const {
  const Tensor& c = context ? *context : x;
  return to_out(k::attention(to_q(x), to_k(c), to_v(c), heads, /*causal=*/false));
}

void BasicTransformerBlock::load(const WeightStore& ws, const std::string& p, int64_t dim,
                                 int64_t heads, int64_t head_dim, int64_t context_dim) {
  norm1.load(ws, join(p, "norm1"), dim, 1e-5f);
  attn1.load(ws, join(p, "attn1"), dim, dim, heads, head_dim, false);
  norm2.load(ws, join(p, "norm2"), dim, 1e-5f);
  attn2.load(ws, join(p, "attn2"), dim, context_dim, heads, head_dim, false);
  norm3.load(ws, join(p, "norm3"), dim, 1e-5f);
  ff_proj.load(ws, join(p, "ff.net.0.proj"), dim, dim * 8);
  ff_out.load(ws, join(p, "ff.net.2"), dim * 4, dim);
}

void BasicTransformerBlock::operator()(Tensor& x, const Tensor& context, int64_t h, int64_t w,
                                       const ToMeCall* tome) const {
  // ToMe matches on x before norm1 (as tomesd does) and merges only around self-attention.
  if (std::optional<TokenMerge> m = tome ? tome->plan(x, h, w) : std::nullopt)
    m->unmerge_add(attn1(m->merge(norm1(x)), nullptr), x);
  else
    k::add_(x, attn1(norm1(x), nullptr));
  k::add_(x, attn2(norm2(x), &context));
  k::add_(x, ff_out(k::geglu(ff_proj(norm3(x)))));
}

void Transformer2DModel::load(const WeightStore& ws, const std::string& p, int64_t channels,
                              int64_t heads, int64_t head_dim, int64_t context_dim, int64_t layers,
                              int64_t groups, bool linear_projection) {
  const int64_t inner = heads * head_dim;
  norm.load(ws, join(p, "norm"), channels, groups, 1e-6f);
  proj_in.load(ws, join(p, "proj_in"), channels, inner, true, !linear_projection);
  // Grown block by block: a config's layer count (up to limits::kMaxConfigInt) is allocated only
  // as far as the weights go; the first missing block's weights end the load with an error.
  blocks.clear();
  for (int64_t i = 0; i < layers; ++i)
    blocks.emplace_back().load(ws, join(p, "transformer_blocks." + std::to_string(i)), inner, heads,
                               head_dim, context_dim);
  proj_out.load(ws, join(p, "proj_out"), inner, channels, true, !linear_projection);
}

Tensor Transformer2DModel::operator()(const Tensor& x, const Tensor& context,
                                      const ToMeCall* tome) const {
  const int64_t B = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  Tensor h = proj_in(norm(x)).reshaped({B, H * W, proj_in.out});
  for (const auto& blk : blocks) blk(h, context, H, W, tome);
  Tensor y = proj_out(h).reshaped({B, H, W, C});
  k::add_(y, x);
  return y;
}

void Downsample2D::load(const WeightStore& ws, const std::string& p, int64_t channels,
                        bool vae_padding) {
  conv.load(ws, join(p, "conv"), channels, channels, 3, 2, 1);
  if (vae_padding) {
    conv.p.pad_t = conv.p.pad_l = 0;
    conv.p.pad_b = conv.p.pad_r = 1;
  }
}

void Upsample2D::load(const WeightStore& ws, const std::string& p, int64_t channels) {
  conv.load(ws, join(p, "conv"), channels, channels, 3);
}

Tensor Upsample2D::operator()(const Tensor& x, int64_t h, int64_t w) const {
  return conv(k::upsample_nearest(x, h, w));
}

}  // namespace sdpal
