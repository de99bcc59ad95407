// CLIPTextModel (transformers) as Stable Diffusion uses it: token + position embeddings, pre-LN
// transformer layers with a causal mask, final LayerNorm. Driven by the text_encoder config.json.
// CLIPTextModelWithProjection (SDXL's text_encoder_2) adds text_projection (no bias) of the pooled
// output.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "models/layers.h"

namespace sdpal {

struct ClipTextConfig {
  int64_t hidden = 768, intermediate = 3072, heads = 12, layers = 12, vocab = 49408, positions = 77;
  std::string act = "quick_gelu";
  float eps = 1e-5f;
  // CLIPTextModelWithProjection (config "architectures"): the width of text_projection; 0 without.
  int64_t projection_dim = 0;
  static ClipTextConfig from_json(const nlohmann::json& j, const std::string& where);
};

struct ClipTextOutput {
  Tensor hidden;  // [B, T, hidden]: the selected layer's output (final_layer_norm applied or not)
  Tensor pooled;  // [B, hidden]: final_layer_norm(last layer) at the first EOS (argmax id)
  Tensor text_embeds;  // [B, projection_dim]: text_projection(pooled); empty without projection
};

// Token embeddings replaced by given vectors before the transformer (textual inversion): batch row
// `row`, positions [pos, pos + count), `count` vectors of `hidden` floats at `data`.
struct TokenEmbeddingOverride {
  int64_t row = 0, pos = 0, count = 0;
  const float* data = nullptr;
};

class ClipTextModel {
 public:
  ClipTextModel(const WeightStore& ws, const ClipTextConfig& cfg);
  const ClipTextConfig& config() const { return cfg_; }
  // ids: [B][T] token ids. skip_layers = diffusers' clip_skip (0: last layer; 1: penultimate...).
  // overrides: token embeddings replaced before the transformer (textual inversion).
  // final_norm: apply final_layer_norm to that layer's output (SD 1/2 do; SDXL takes the raw
  // hidden state). pooled / text_embeds always come from the last layer.
  ClipTextOutput forward(const std::vector<std::vector<int>>& ids, int skip_layers = 0,
                         const std::vector<TokenEmbeddingOverride>& overrides = {},
                         bool final_norm = true) const;
  // Every Linear, in forward order (e.g. to attach LoRA branches to a copy of the model).
  std::vector<WeightLayer*> weight_layers();

 private:
  struct Layer {
    LayerNorm ln1, ln2;
    Linear q, k, v, o, fc1, fc2;
  };
  const WeightStore& ws_;
  ClipTextConfig cfg_;
  const TensorView* tok_emb_;
  Param pos_emb_;
  std::vector<Layer> layers_;
  LayerNorm final_ln_;
  std::optional<Linear> text_projection_;
};

}  // namespace sdpal
