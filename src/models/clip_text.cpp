#include "models/clip_text.h"

#include "core/error.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/resample.h"
#include "models/config.h"

namespace sdpal {

ClipTextConfig ClipTextConfig::from_json(const nlohmann::json& j, const std::string& where) {
  ClipTextConfig c;
  c.hidden = cfg_int(j, "hidden_size", where);
  c.intermediate = cfg_int(j, "intermediate_size", where);
  c.heads = cfg_int(j, "num_attention_heads", where);
  c.layers = cfg_int(j, "num_hidden_layers", where);
  c.vocab = cfg_int(j, "vocab_size", 49408, where);
  c.positions = cfg_int(j, "max_position_embeddings", 77, where);
  c.act = cfg_str(j, "hidden_act", "quick_gelu", where);
  c.eps = static_cast<float>(cfg_num(j, "layer_norm_eps", 1e-5, where));
  if (j.contains("architectures") && j["architectures"].is_array())
    for (const auto& a : j["architectures"])
      if (a == "CLIPTextModelWithProjection")
        c.projection_dim = cfg_int(j, "projection_dim", 512, where);
  SDPAL_CHECK(c.projection_dim >= 0 && c.projection_dim <= 65536,
              where + ": projection_dim must be from 0 to 65536");
  SDPAL_CHECK(c.act == "quick_gelu" || c.act == "gelu",
              where + ": unsupported hidden_act '" + c.act + "' (quick_gelu or gelu)");
  SDPAL_CHECK(c.hidden > 0 && c.heads > 0 && c.hidden % c.heads == 0 && c.layers > 0,
              where + ": hidden_size must be a positive multiple of num_attention_heads");
  return c;
}

ClipTextModel::ClipTextModel(const WeightStore& ws, const ClipTextConfig& cfg)
    : ws_(ws), cfg_(cfg) {
  const std::string p = "text_model.";
  tok_emb_ = &ws.get(p + "embeddings.token_embedding.weight", {cfg.vocab, cfg.hidden});
  pos_emb_ = ws.param(p + "embeddings.position_embedding.weight", {cfg.positions, cfg.hidden});
  // Positions are 0..T-1; a stored position_ids buffer is known and not needed.
  if (ws.has(p + "embeddings.position_ids")) ws.get(p + "embeddings.position_ids");
  const int64_t D = cfg.hidden;
  for (int64_t i = 0; i < cfg.layers; ++i) {
    const std::string l = p + "encoder.layers." + std::to_string(i) + ".";
    Layer L;
    L.ln1.load(ws, l + "layer_norm1", D, cfg.eps);
    L.ln2.load(ws, l + "layer_norm2", D, cfg.eps);
    L.q.load(ws, l + "self_attn.q_proj", D, D);
    L.k.load(ws, l + "self_attn.k_proj", D, D);
    L.v.load(ws, l + "self_attn.v_proj", D, D);
    L.o.load(ws, l + "self_attn.out_proj", D, D);
    L.fc1.load(ws, l + "mlp.fc1", D, cfg.intermediate);
    L.fc2.load(ws, l + "mlp.fc2", cfg.intermediate, D);
    layers_.push_back(std::move(L));
  }
  final_ln_.load(ws, p + "final_layer_norm", D, cfg.eps);
  if (cfg.projection_dim > 0) {
    text_projection_.emplace();
    text_projection_->load(ws, "text_projection", D, cfg.projection_dim, /*bias=*/false);
  }
}

std::vector<WeightLayer*> ClipTextModel::weight_layers() {
  std::vector<WeightLayer*> out;
  for (Layer& L : layers_)
    for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.fc1, &L.fc2}) out.push_back(l);
  if (text_projection_) out.push_back(&*text_projection_);
  return out;
}

ClipTextOutput ClipTextModel::forward(const std::vector<std::vector<int>>& ids, int skip,
                                      const std::vector<TokenEmbeddingOverride>& overrides,
                                      bool final_norm) const {
  SDPAL_CHECK(!ids.empty(), "text encoder: no prompts");
  SDPAL_CHECK(skip >= 0 && skip < cfg_.layers,
              "clip skip " + std::to_string(skip) + " out of range for a " +
                  std::to_string(cfg_.layers) + "-layer text encoder");
  const int64_t B = ids.size(), T = ids[0].size(), D = cfg_.hidden;
  SDPAL_CHECK(T > 0 && T <= cfg_.positions, "text encoder: sequence length " + std::to_string(T) +
                                                " exceeds " + std::to_string(cfg_.positions));
  Tensor x({B, T, D});
  const F32Data pos_data = pos_emb_.f32();
  const float* pos = pos_data.get();
  const size_t es = dtype_size(tok_emb_->dtype);
  for (int64_t b = 0; b < B; ++b) {
    SDPAL_CHECK(static_cast<int64_t>(ids[b].size()) == T, "text encoder: ragged token batch");
    for (int64_t t = 0; t < T; ++t) {
      const int id = ids[b][t];
      SDPAL_CHECK(id >= 0 && id < cfg_.vocab,
                  "text encoder: token id " + std::to_string(id) + " outside the vocabulary");
      float* row = x.data() + (b * T + t) * D;
      convert_to_f32(tok_emb_->dtype, tok_emb_->data + static_cast<size_t>(id) * D * es, row, D);
      for (int64_t d = 0; d < D; ++d) row[d] += pos[t * D + d];
    }
  }
  for (const TokenEmbeddingOverride& o : overrides) {
    SDPAL_CHECK(o.row >= 0 && o.row < B && o.pos >= 0 && o.count >= 0 && o.pos + o.count <= T,
                "text encoder: an embedding override lies outside the token batch");
    for (int64_t t = o.pos; t < o.pos + o.count; ++t) {
      float* row = x.data() + (o.row * T + t) * D;
      const float* v = o.data + (t - o.pos) * D;
      for (int64_t d = 0; d < D; ++d) row[d] = v[d] + pos[t * D + d];
    }
  }
  // All layers run: the pooled output comes from the last one whichever layer is selected.
  const int64_t selected = cfg_.layers - skip;
  ClipTextOutput out;
  for (int64_t i = 0; i < cfg_.layers; ++i) {
    const Layer& L = layers_[i];
    Tensor h = L.ln1(x);
    Tensor a = k::attention(L.q(h), L.k(h), L.v(h), cfg_.heads, /*causal=*/true);
    k::add_(x, L.o(a));
    h = L.ln2(x);
    Tensor f = L.fc1(h);
    if (cfg_.act == "gelu")
      k::gelu_(f);
    else
      k::quick_gelu_(f);
    k::add_(x, L.fc2(f));
    if (i + 1 == selected && i + 1 < cfg_.layers) out.hidden = final_norm ? final_ln_(x) : x;
  }
  const Tensor last = final_ln_(x);
  if (selected == cfg_.layers) out.hidden = final_norm ? last : x;
  out.pooled = Tensor({B, D});
  for (int64_t b = 0; b < B; ++b) {
    int64_t best = 0;
    for (int64_t t = 1; t < T; ++t)
      if (ids[b][t] > ids[b][best]) best = t;
    std::copy_n(last.data() + (b * T + best) * D, D, out.pooled.data() + b * D);
  }
  if (text_projection_) out.text_embeds = (*text_projection_)(out.pooled);
  return out;
}

}  // namespace sdpal
