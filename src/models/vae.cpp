#include "models/vae.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/resample.h"
#include "models/config.h"

namespace sdpal {

namespace {
constexpr float kVaeEps = 1e-6f;
}

VaeConfig VaeConfig::from_json(const nlohmann::json& j, const std::string& where) {
  VaeConfig c;
  c.in_channels = cfg_int(j, "in_channels", 3, where);
  c.out_channels = cfg_int(j, "out_channels", 3, where);
  c.latent_channels = cfg_int(j, "latent_channels", 4, where);
  c.layers_per_block = cfg_int(j, "layers_per_block", 2, where);
  c.block_out_channels = cfg_int_list(j, "block_out_channels", where);
  SDPAL_CHECK(!c.block_out_channels.empty(), where + ": block_out_channels is empty");
  // The scale factor is 2^(levels - 1) (an int shift): SD has 4 levels.
  SDPAL_CHECK(c.block_out_channels.size() <= 8, where + ": block_out_channels has " +
                                                    std::to_string(c.block_out_channels.size()) +
                                                    " levels, more than the bound of 8");
  c.norm_num_groups = cfg_int(j, "norm_num_groups", 32, where);
  c.scaling_factor = cfg_num(j, "scaling_factor", 0.18215, where);
  SDPAL_CHECK(c.scaling_factor > 0, where + ": scaling_factor must be positive");
  return c;
}

void Vae::MidBlock::load(const WeightStore& ws, const std::string& p, int64_t ch, int64_t groups) {
  res0.load(ws, p + ".resnets.0", ch, ch, 0, groups, kVaeEps);
  res1.load(ws, p + ".resnets.1", ch, ch, 0, groups, kVaeEps);
  const std::string a = p + ".attentions.0";
  attn_norm.load(ws, a + ".group_norm", ch, groups, kVaeEps);
  // Older diffusers folders name the projections query/key/value/proj_attn.
  const bool legacy = !ws.has(a + ".to_q.weight") && ws.has(a + ".query.weight");
  q.load(ws, a + (legacy ? ".query" : ".to_q"), ch, ch);
  k.load(ws, a + (legacy ? ".key" : ".to_k"), ch, ch);
  v.load(ws, a + (legacy ? ".value" : ".to_v"), ch, ch);
  o.load(ws, a + (legacy ? ".proj_attn" : ".to_out.0"), ch, ch);
}

Tensor Vae::MidBlock::operator()(const Tensor& x0) const {
  Tensor x = res0(x0, Tensor());
  const int64_t B = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  Tensor h = attn_norm(x).reshaped({B, H * W, C});
  Tensor a = o(k::attention(q(h), k(h), v(h), 1, false)).reshaped({B, H, W, C});
  k::add_(a, x);
  return res1(a, Tensor());
}

Vae::Vae(const WeightStore& ws, const VaeConfig& cfg, bool with_encoder) : cfg_(cfg) {
  const auto& C = cfg.block_out_channels;
  const int64_t n = C.size(), G = cfg.norm_num_groups, L = cfg.latent_channels;
  has_encoder_ = with_encoder && ws.has("encoder.conv_in.weight");
  if (has_encoder_) {
    enc_conv_in_.load(ws, "encoder.conv_in", cfg.in_channels, C[0], 3);
    int64_t ch = C[0];
    for (int64_t i = 0; i < n; ++i) {
      Level lv;
      const std::string p = "encoder.down_blocks." + std::to_string(i);
      for (int64_t j = 0; j < cfg.layers_per_block; ++j) {
        lv.resnets.emplace_back();
        lv.resnets.back().load(ws, p + ".resnets." + std::to_string(j), j == 0 ? ch : C[i], C[i], 0,
                               G, kVaeEps);
      }
      if (i + 1 < n) {
        lv.down.emplace();
        lv.down->load(ws, p + ".downsamplers.0", C[i], /*vae_padding=*/true);
      }
      ch = C[i];
      enc_levels_.push_back(std::move(lv));
    }
    enc_mid_.load(ws, "encoder.mid_block", C[n - 1], G);
    enc_norm_out_.load(ws, "encoder.conv_norm_out", C[n - 1], G, kVaeEps);
    enc_conv_out_.load(ws, "encoder.conv_out", C[n - 1], 2 * L, 3);
    quant_conv_.load(ws, "quant_conv", 2 * L, 2 * L, 1, 1, 0);
  }
  post_quant_conv_.load(ws, "post_quant_conv", L, L, 1, 1, 0);
  dec_conv_in_.load(ws, "decoder.conv_in", L, C[n - 1], 3);
  dec_mid_.load(ws, "decoder.mid_block", C[n - 1], G);
  int64_t prev = C[n - 1];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t out = C[n - 1 - i];
    Level lv;
    const std::string p = "decoder.up_blocks." + std::to_string(i);
    for (int64_t j = 0; j < cfg.layers_per_block + 1; ++j) {
      lv.resnets.emplace_back();
      lv.resnets.back().load(ws, p + ".resnets." + std::to_string(j), j == 0 ? prev : out, out, 0,
                             G, kVaeEps);
    }
    if (i + 1 < n) {
      lv.up.emplace();
      lv.up->load(ws, p + ".upsamplers.0", out);
    }
    prev = out;
    dec_levels_.push_back(std::move(lv));
  }
  dec_norm_out_.load(ws, "decoder.conv_norm_out", C[0], G, kVaeEps);
  dec_conv_out_.load(ws, "decoder.conv_out", C[0], cfg.out_channels, 3);
}

Tensor Vae::decode(const Tensor& z) const {
  SDPAL_CHECK(z.ndim() == 4 && z.dim(1) == cfg_.latent_channels,
              "vae: latents must be [B, " + std::to_string(cfg_.latent_channels) + ", h, w], got " +
                  shape_str(z.shape()));
  Tensor x = dec_conv_in_(post_quant_conv_(nchw_to_nhwc(z)));
  x = dec_mid_(x);
  for (const Level& lv : dec_levels_) {
    for (const auto& r : lv.resnets) x = r(x, Tensor());
    if (lv.up) x = (*lv.up)(x, x.dim(1) * 2, x.dim(2) * 2);
  }
  x = dec_conv_out_(dec_norm_out_(x, /*silu=*/true));
  return nhwc_to_nchw(x);
}

VaeEncoding Vae::encode(const Tensor& image) const {
  SDPAL_CHECK(has_encoder_, "vae: this model has no encoder weights (needed for img2img)");
  SDPAL_CHECK(image.ndim() == 4 && image.dim(1) == cfg_.in_channels,
              "vae: image must be [B, 3, H, W], got " + shape_str(image.shape()));
  Tensor x = enc_conv_in_(nchw_to_nhwc(image));
  for (const Level& lv : enc_levels_) {
    for (const auto& r : lv.resnets) x = r(x, Tensor());
    if (lv.down) x = (*lv.down)(x);
  }
  x = enc_mid_(x);
  x = quant_conv_(enc_conv_out_(enc_norm_out_(x, /*silu=*/true)));
  Tensor m = nhwc_to_nchw(x);  // [B, 2L, h, w]
  const int64_t B = m.dim(0), L = cfg_.latent_channels, HW = m.dim(2) * m.dim(3);
  VaeEncoding e{Tensor({B, L, m.dim(2), m.dim(3)}), Tensor({B, L, m.dim(2), m.dim(3)})};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < L; ++c)
      for (int64_t p = 0; p < HW; ++p) {
        e.mean[(b * L + c) * HW + p] = m[(b * 2 * L + c) * HW + p];
        e.logvar[(b * L + c) * HW + p] = std::clamp(m[(b * 2 * L + L + c) * HW + p], -30.f, 20.f);
      }
  return e;
}

}  // namespace sdpal
