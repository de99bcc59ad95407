#include "models/single_file_loader.h"

#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "formats/checkpoint_keymap.h"
#include "formats/safetensors.h"

namespace sdpal {

namespace {

// Splits the fused [3C, ...] tensors (registered under the q_proj names) into row views.
void split_fused_qkv(WeightStore& text, const std::vector<std::string>& prefixes) {
  for (const std::string& prefix : prefixes) {
    for (const char* part : {"weight", "bias"}) {
      const TensorView* fused = text.find(prefix + "q_proj." + part);
      if (!fused) continue;  // a bias-free projection
      const TensorView whole = *fused;
      const size_t third = whole.nbytes / 3;
      const char* names[3] = {"q_proj.", "k_proj.", "v_proj."};
      for (int i = 0; i < 3; ++i) {
        TensorView v = whole;
        v.name = prefix + names[i] + part;
        v.shape[0] /= 3;
        v.data = whole.data + i * third;
        v.nbytes = third;
        text.add_view(v.name, v);
      }
    }
  }
}

// Views the original 1x1-conv VAE attention weights as the Linear [C, C] weights diffusers uses.
void view_vae_attention_as_linear(WeightStore& vae) {
  for (const std::string& name : vae.names()) {
    if (!is_vae_attention_conv_weight(name)) continue;
    TensorView v = *vae.find(name);
    if (v.shape.size() != 4) continue;
    v.shape.resize(2);
    vae.add_view(name, v);
  }
}

std::function<std::optional<std::string>(const std::string&)> renamer(
    const std::map<std::string, std::string>& m) {
  return [&m](const std::string& k) -> std::optional<std::string> {
    auto it = m.find(k);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace

void load_single_file(const std::string& path, WeightStore& unet, WeightStore& vae,
                      WeightStore& text_encoder, nlohmann::json* unet_config,
                      nlohmann::json* vae_config, nlohmann::json* text_config, std::string* kind) {
  const SingleFileMap m = map_single_file(path, unet_config, vae_config, text_config);
  unet.add_file(path, renamer(m.unet));
  vae.add_file(path, renamer(m.vae));
  view_vae_attention_as_linear(vae);
  text_encoder.add_file(path, renamer(m.text_encoder));
  split_fused_qkv(text_encoder, m.fused_qkv);
  if (kind) *kind = m.kind;
}

}  // namespace sdpal
