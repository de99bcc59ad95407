#include "models/unet.h"

#include <cmath>

#include "core/error.h"
#include "core/limits.h"
#include "kernels/activation.h"
#include "kernels/resample.h"
#include "models/config.h"

namespace sdpal {

UNetConfig UNetConfig::from_json(const nlohmann::json& j, const std::string& where) {
  UNetConfig c;
  for (const char* k : {"class_embed_type", "encoder_hid_dim_type", "time_cond_proj_dim"})
    if (j.contains(k) && !j[k].is_null())
      fail(where + ": '" + std::string(k) + "' = " + j[k].dump() +
           " is not supported (SD 1.x / 2.x and SDXL UNets only)");
  c.addition_embed_type = cfg_str(j, "addition_embed_type", "", where);
  SDPAL_CHECK(c.addition_embed_type.empty() || c.addition_embed_type == "text_time",
              where + ": addition_embed_type '" + c.addition_embed_type +
                  "' is not supported (null, or SDXL's \"text_time\")");
  if (c.addition_embed_type == "text_time") {
    c.addition_time_embed_dim = cfg_int(j, "addition_time_embed_dim", where);
    c.projection_class_embeddings_input_dim =
        cfg_int(j, "projection_class_embeddings_input_dim", where);
    SDPAL_CHECK(c.addition_time_embed_dim > 0 && c.addition_time_embed_dim % 2 == 0 &&
                    c.addition_time_embed_dim <= 65536,
                where + ": addition_time_embed_dim must be an even number from 2 to 65536, got " +
                    std::to_string(c.addition_time_embed_dim));
    SDPAL_CHECK(c.projection_class_embeddings_input_dim > 0 &&
                    c.projection_class_embeddings_input_dim <= (1 << 20),
                where + ": projection_class_embeddings_input_dim must be from 1 to 2^20, got " +
                    std::to_string(c.projection_class_embeddings_input_dim));
  }
  if (cfg_bool(j, "dual_cross_attention", false, where) ||
      (j.contains("only_cross_attention") && j["only_cross_attention"].is_boolean() &&
       j["only_cross_attention"].get<bool>()))
    fail(where + ": dual/only cross-attention UNets are not supported");
  if (cfg_str(j, "resnet_time_scale_shift", "default", where) != "default" ||
      cfg_str(j, "time_embedding_type", "positional", where) != "positional" ||
      cfg_str(j, "act_fn", "silu", where) != "silu")
    fail(where + ": only SD-style UNets (silu, positional time embedding) are supported");
  c.in_channels = cfg_int(j, "in_channels", 4, where);
  c.out_channels = cfg_int(j, "out_channels", 4, where);
  c.block_out_channels = cfg_int_list(j, "block_out_channels", where);
  const size_t n = c.block_out_channels.size();
  SDPAL_CHECK(n >= 1, where + ": block_out_channels is empty");
  c.down_block_types = cfg_str_list(j, "down_block_types", where);
  c.up_block_types = cfg_str_list(j, "up_block_types", where);
  SDPAL_CHECK(c.down_block_types.size() == n && c.up_block_types.size() == n,
              where + ": down/up_block_types must have one entry per block_out_channels entry");
  for (const auto& t : c.down_block_types)
    SDPAL_CHECK(t == "CrossAttnDownBlock2D" || t == "DownBlock2D",
                where + ": unsupported down block type '" + t + "'");
  for (const auto& t : c.up_block_types)
    SDPAL_CHECK(t == "CrossAttnUpBlock2D" || t == "UpBlock2D",
                where + ": unsupported up block type '" + t + "'");
  c.mid_block_type = cfg_str(j, "mid_block_type", "UNetMidBlock2DCrossAttn", where);
  SDPAL_CHECK(c.mid_block_type == "UNetMidBlock2DCrossAttn",
              where + ": unsupported mid block type '" + c.mid_block_type + "'");
  c.layers_per_block = cfg_int_or_list(j, "layers_per_block", n, 2, where);
  // diffusers: num_attention_heads defaults to attention_head_dim (which, for historical reasons,
  // holds the number of heads in SD configs).
  if (j.contains("num_attention_heads") && !j["num_attention_heads"].is_null())
    c.heads = cfg_int_or_list(j, "num_attention_heads", n, 8, where);
  else
    c.heads = cfg_int_or_list(j, "attention_head_dim", n, 8, where);
  c.transformer_layers = cfg_int_or_list(j, "transformer_layers_per_block", n, 1, where);
  c.cross_attention_dim = cfg_int_or_list(j, "cross_attention_dim", n, 1280, where);
  c.norm_num_groups = cfg_int(j, "norm_num_groups", 32, where);
  c.norm_eps = static_cast<float>(cfg_num(j, "norm_eps", 1e-5, where));
  c.use_linear_projection = cfg_bool(j, "use_linear_projection", false, where);
  c.flip_sin_to_cos = cfg_bool(j, "flip_sin_to_cos", true, where);
  c.freq_shift = cfg_num(j, "freq_shift", 0, where);
  c.time_embed_dim = cfg_int(j, "time_embedding_dim", 4 * c.block_out_channels[0], where);
  c.sample_size = cfg_int(j, "sample_size", 64, where);
  // The default image side is sample_size * the VAE's scale factor (an int).
  SDPAL_CHECK(c.sample_size >= 1 && c.sample_size <= limits::kMaxImageSizePixels,
              where + ": sample_size " + std::to_string(c.sample_size) + " is out of range [1, " +
                  std::to_string(limits::kMaxImageSizePixels) + "]");
  for (size_t i = 0; i < n; ++i)
    SDPAL_CHECK(c.block_out_channels[i] > 0, where + ": block_out_channels[" + std::to_string(i) +
                                                 "] is " + std::to_string(c.block_out_channels[i]) +
                                                 ", not positive");
  for (size_t i = 0; i < n; ++i)
    SDPAL_CHECK(c.heads[i] > 0 && c.block_out_channels[i] % c.heads[i] == 0,
                where + ": block " + std::to_string(i) + " has " +
                    std::to_string(c.block_out_channels[i]) + " channels, not divisible into " +
                    std::to_string(c.heads[i]) + " heads");
  return c;
}

UNet::UNet(const WeightStore& ws, const UNetConfig& cfg) : cfg_(cfg) {
  const auto& C = cfg.block_out_channels;
  const int64_t n = C.size(), G = cfg.norm_num_groups, T = cfg.time_embed_dim;
  const float eps = cfg.norm_eps;
  conv_in_.load(ws, "conv_in", cfg.in_channels, C[0], 3);
  time_linear_1_.load(ws, "time_embedding.linear_1", C[0], T);
  time_linear_2_.load(ws, "time_embedding.linear_2", T, T);
  if (needs_text_time()) {
    add_linear_1_.load(ws, "add_embedding.linear_1", cfg.projection_class_embeddings_input_dim, T);
    add_linear_2_.load(ws, "add_embedding.linear_2", T, T);
  }

  int64_t ch = C[0];
  for (int64_t i = 0; i < n; ++i) {
    const std::string p = "down_blocks." + std::to_string(i);
    const bool attn = cfg.down_block_types[i] == "CrossAttnDownBlock2D";
    Level L;
    for (int64_t j = 0; j < cfg.layers_per_block[i]; ++j) {
      L.resnets.emplace_back();
      L.resnets.back().load(ws, p + ".resnets." + std::to_string(j), j == 0 ? ch : C[i], C[i], T, G,
                            eps);
      if (attn) {
        L.attentions.emplace_back();
        L.attentions.back().load(ws, p + ".attentions." + std::to_string(j), C[i], cfg.heads[i],
                                 C[i] / cfg.heads[i], cfg.cross_attention_dim[i],
                                 cfg.transformer_layers[i], G, cfg.use_linear_projection);
      }
    }
    if (i + 1 < n) {
      L.down.emplace();
      L.down->load(ws, p + ".downsamplers.0", C[i], false);
    }
    ch = C[i];
    down_.push_back(std::move(L));
  }

  mid_res0_.load(ws, "mid_block.resnets.0", C[n - 1], C[n - 1], T, G, eps);
  mid_attn_.emplace();
  mid_attn_->load(ws, "mid_block.attentions.0", C[n - 1], cfg.heads[n - 1],
                  C[n - 1] / cfg.heads[n - 1], cfg.cross_attention_dim[n - 1],
                  cfg.transformer_layers[n - 1], G, cfg.use_linear_projection);
  mid_res1_.load(ws, "mid_block.resnets.1", C[n - 1], C[n - 1], T, G, eps);

  // Up path: block i works at reversed channel index r = n-1-i.
  int64_t prev = C[n - 1];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = n - 1 - i;
    const int64_t out = C[r], in = C[std::max<int64_t>(r - 1, 0)];
    const int64_t layers = cfg.layers_per_block[r] + 1;
    const std::string p = "up_blocks." + std::to_string(i);
    const bool attn = cfg.up_block_types[i] == "CrossAttnUpBlock2D";
    Level L;
    for (int64_t j = 0; j < layers; ++j) {
      const int64_t skip = (j == layers - 1) ? in : out;
      const int64_t res_in = (j == 0) ? prev : out;
      L.resnets.emplace_back();
      L.resnets.back().load(ws, p + ".resnets." + std::to_string(j), res_in + skip, out, T, G, eps);
      if (attn) {
        L.attentions.emplace_back();
        L.attentions.back().load(ws, p + ".attentions." + std::to_string(j), out, cfg.heads[r],
                                 out / cfg.heads[r], cfg.cross_attention_dim[r],
                                 cfg.transformer_layers[r], G, cfg.use_linear_projection);
      }
    }
    if (i + 1 < n) {
      L.up.emplace();
      L.up->load(ws, p + ".upsamplers.0", out);
    }
    prev = out;
    up_.push_back(std::move(L));
  }
  norm_out_.load(ws, "conv_norm_out", C[0], G, eps);
  conv_out_.load(ws, "conv_out", C[0], cfg.out_channels, 3);
}

void UNet::set_fused_lut(bool on) {
  for (WeightLayer* l : weight_layers()) l->fused_lut = on;
}

std::vector<WeightLayer*> UNet::weight_layers() {
  std::vector<WeightLayer*> r;
  auto resnet = [&r](ResnetBlock2D& b) {
    r.insert(r.end(), {&b.conv1, &b.conv2});
    if (b.time_emb_proj) r.insert(r.end() - 1, &*b.time_emb_proj);
    if (b.conv_shortcut) r.push_back(&*b.conv_shortcut);
  };
  auto transformer = [&r](Transformer2DModel& t) {
    r.push_back(&t.proj_in);
    for (auto& blk : t.blocks) {
      for (Attention* a : {&blk.attn1, &blk.attn2})
        r.insert(r.end(), {&a->to_q, &a->to_k, &a->to_v, &a->to_out});
      r.insert(r.end(), {&blk.ff_proj, &blk.ff_out});
    }
    r.push_back(&t.proj_out);
  };
  auto level = [&](Level& L) {
    for (size_t j = 0; j < L.resnets.size(); ++j) {
      resnet(L.resnets[j]);
      if (!L.attentions.empty()) transformer(L.attentions[j]);
    }
    if (L.down) r.push_back(&L.down->conv);
    if (L.up) r.push_back(&L.up->conv);
  };
  r.insert(r.end(), {&time_linear_1_, &time_linear_2_});
  if (needs_text_time()) r.insert(r.end(), {&add_linear_1_, &add_linear_2_});
  r.push_back(&conv_in_);
  for (Level& L : down_) level(L);
  resnet(mid_res0_);
  transformer(*mid_attn_);
  resnet(mid_res1_);
  for (Level& L : up_) level(L);
  r.push_back(&conv_out_);
  return r;
}

namespace {

// diffusers' get_timestep_embedding in float32: one row of `dim` per value.
Tensor sinusoidal_embedding(const std::vector<float>& values, int64_t dim, bool flip_sin_to_cos,
                            double freq_shift) {
  const int64_t half = dim / 2;
  std::vector<float> freq(half);
  for (int64_t i = 0; i < half; ++i) {
    float e = -std::log(10000.0f) * static_cast<float>(i);
    e = e / static_cast<float>(half - freq_shift);
    freq[i] = std::exp(e);
  }
  const int64_t n = static_cast<int64_t>(values.size());
  Tensor emb({n, dim});
  for (int64_t b = 0; b < n; ++b) {
    const float t = values[b];
    float* row = emb.data() + b * dim;
    for (int64_t i = 0; i < half; ++i) {
      const float a = t * freq[i];
      const float s = static_cast<float>(std::sin(static_cast<double>(a)));
      const float c = static_cast<float>(std::cos(static_cast<double>(a)));
      row[i] = flip_sin_to_cos ? c : s;
      row[half + i] = flip_sin_to_cos ? s : c;
    }
  }
  return emb;
}

}  // namespace

Tensor UNet::time_embedding(const std::vector<double>& ts, int64_t B) const {
  SDPAL_CHECK(
      ts.size() == 1 || static_cast<int64_t>(ts.size()) == B,
      "unet: " + std::to_string(ts.size()) + " timesteps for a batch of " + std::to_string(B));
  std::vector<float> t(B);
  for (int64_t b = 0; b < B; ++b) t[b] = static_cast<float>(ts.size() == 1 ? ts[0] : ts[b]);
  Tensor h = time_linear_1_(
      sinusoidal_embedding(t, cfg_.block_out_channels[0], cfg_.flip_sin_to_cos, cfg_.freq_shift));
  k::silu_(h);
  return time_linear_2_(h);
}

Tensor UNet::added_embedding(const TextTimeCond& a, int64_t B) const {
  const int64_t P = a.text_embeds.ndim() == 2 ? a.text_embeds.dim(1) : -1;
  const int64_t n = a.time_ids.ndim() == 2 ? a.time_ids.dim(1) : -1;
  const int64_t E = cfg_.addition_time_embed_dim;
  SDPAL_CHECK(a.text_embeds.ndim() == 2 && a.text_embeds.dim(0) == B && a.time_ids.ndim() == 2 &&
                  a.time_ids.dim(0) == B && P + n * E == cfg_.projection_class_embeddings_input_dim,
              "unet: text_embeds " + shape_str(a.text_embeds.shape()) + " and time_ids " +
                  shape_str(a.time_ids.shape()) + " do not fit a batch of " + std::to_string(B) +
                  " and add_embedding's input width " +
                  std::to_string(cfg_.projection_class_embeddings_input_dim) +
                  " (= text_embeds + " + std::to_string(E) + " per time id)");
  std::vector<float> ids(a.time_ids.data(), a.time_ids.data() + a.time_ids.numel());
  const Tensor t = sinusoidal_embedding(ids, E, cfg_.flip_sin_to_cos, cfg_.freq_shift);
  Tensor in({B, P + n * E});
  for (int64_t b = 0; b < B; ++b) {
    float* row = in.data() + b * (P + n * E);
    std::copy_n(a.text_embeds.data() + b * P, P, row);
    std::copy_n(t.data() + b * n * E, n * E, row + P);
  }
  Tensor h = add_linear_1_(in);
  k::silu_(h);
  return add_linear_2_(h);
}

Tensor UNet::forward(const Tensor& sample, const std::vector<double>& timesteps,
                     const Tensor& context, const ToMe* tome_setting,
                     const TextTimeCond* added) const {
  SDPAL_CHECK(sample.ndim() == 4 && sample.dim(1) == cfg_.in_channels,
              "unet: sample must be [B, " + std::to_string(cfg_.in_channels) + ", h, w], got " +
                  shape_str(sample.shape()));
  const int64_t B = sample.dim(0);
  SDPAL_CHECK(
      context.ndim() == 3 && context.dim(0) == B && context.dim(2) == cfg_.cross_attention_dim[0],
      "unet: encoder_hidden_states must be [" + std::to_string(B) + ", S, " +
          std::to_string(cfg_.cross_attention_dim[0]) + "], got " + shape_str(context.shape()));
  Tensor temb = time_embedding(timesteps, B);
  SDPAL_CHECK(needs_text_time() == (added != nullptr),
              needs_text_time()
                  ? "unet: this SDXL UNet needs its added conditions (text_embeds, time_ids)"
                  : "unet: text_embeds/time_ids given to a UNet without addition_embed_type");
  if (added) k::add_(temb, added_embedding(*added, B));
  k::silu_(temb);  // every resnet applies SiLU to temb before its projection

  const ToMeCall tome_call{tome_setting, sample.dim(2) * sample.dim(3)};
  const ToMeCall* tome = tome_setting && tome_setting->on() ? &tome_call : nullptr;

  Tensor x = conv_in_(nchw_to_nhwc(sample));
  std::vector<Tensor> skips;
  skips.push_back(x);
  for (const Level& L : down_) {
    for (size_t j = 0; j < L.resnets.size(); ++j) {
      x = L.resnets[j](x, temb);
      if (!L.attentions.empty()) x = L.attentions[j](x, context, tome);
      skips.push_back(x);
    }
    if (L.down) {
      x = (*L.down)(x);
      skips.push_back(x);
    }
  }
  x = mid_res0_(x, temb);
  x = (*mid_attn_)(x, context, tome);
  x = mid_res1_(x, temb);
  for (const Level& L : up_) {
    for (size_t j = 0; j < L.resnets.size(); ++j) {
      x = L.resnets[j](k::concat_channels(x, skips.back()), temb);
      skips.pop_back();
      if (!L.attentions.empty()) x = L.attentions[j](x, context, tome);
    }
    // Upsample to the size of the skip tensor consumed next (x2 unless a size was odd).
    if (L.up) x = (*L.up)(x, skips.back().dim(1), skips.back().dim(2));
  }
  x = conv_out_(norm_out_(x, /*silu=*/true));
  return nhwc_to_nchw(x);
}

}  // namespace sdpal
