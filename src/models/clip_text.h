// CLIPTextModel (transformers) as Stable Diffusion uses it: token + position embeddings, pre-LN
// transformer layers with a causal mask, final LayerNorm. Driven by the text_encoder config.json.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "models/layers.h"

namespace sdpal {

struct ClipTextConfig {
  int64_t hidden = 768, intermediate = 3072, heads = 12, layers = 12, vocab = 49408, positions = 77;
  std::string act = "quick_gelu";
  float eps = 1e-5f;
  static ClipTextConfig from_json(const nlohmann::json& j, const std::string& where);
};

struct ClipTextOutput {
  Tensor hidden;  // [B, T, hidden]: final_layer_norm of the selected layer's output
  Tensor pooled;  // [B, hidden]: hidden at the first EOS (argmax id) position (last layer only)
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
  ClipTextOutput forward(const std::vector<std::vector<int>>& ids, int skip_layers = 0,
                         const std::vector<TokenEmbeddingOverride>& overrides = {}) const;
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
};

}  // namespace sdpal
