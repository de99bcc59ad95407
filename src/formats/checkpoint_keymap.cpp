// Tensor-name mapping between the original (CompVis / OpenCLIP) layout and diffusers names.
// Original UNet numbering: input_blocks.0 is conv_in; each down level then has layers_per_block
// entries (resnet at .0, attention at .1) plus one downsampler entry (.0.op), except the last
// level. output_blocks has layers_per_block + 1 entries per up level; the last entry of a level
// also holds its upsampler, after the resnet (.1) or after resnet + attention (.2).
#include "formats/checkpoint_keymap.h"

#include <array>
#include <charconv>
#include <string_view>
#include <utility>

#include "core/limits.h"

namespace sdpal {

namespace {

using Pair = std::pair<std::string_view, std::string_view>;

// Consumes `prefix` from the front of `s`.
bool eat(std::string_view& s, std::string_view prefix) {
  if (!s.starts_with(prefix)) return false;
  s.remove_prefix(prefix.size());
  return true;
}

// Consumes "<non-negative int>." from the front of `s`. Indices past limits::kMaxCheckpointIndex
// are refused (the key then has no counterpart), so that the block arithmetic below cannot
// overflow.
bool eat_index(std::string_view& s, int* n) {
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, *n);
  if (ec != std::errc() || p == s.data() || p == end || *p != '.' || *n < 0 ||
      *n > limits::kMaxCheckpointIndex)
    return false;
  s.remove_prefix(p - s.data() + 1);
  return true;
}

// layers_per_block as the mapping functions accept it: positive and bounded.
bool valid_layers_per_block(int layers_per_block) {
  return layers_per_block >= 1 && layers_per_block <= limits::kMaxCheckpointIndex;
}

// Replaces a leading `from` of `s` by `to` for the first matching pair (direction: first->second
// when forward, else second->first).
template <size_t N>
std::optional<std::string> rename_prefix(std::string_view s, const std::array<Pair, N>& table,
                                         bool forward) {
  for (const auto& [a, b] : table) {
    std::string_view from = forward ? a : b, to = forward ? b : a;
    if (s.starts_with(from)) return std::string(to) + std::string(s.substr(from.size()));
  }
  return std::nullopt;
}

// Block numbers are computed in 64 bits: (level + 1) * per_level of two bounded indices can pass
// INT_MAX.
std::string idx(int64_t n) { return std::to_string(n) + "."; }

// (original, diffusers)
constexpr std::array<Pair, 5> kUnetTop = {{{"time_embed.0.", "time_embedding.linear_1."},
                                           {"time_embed.2.", "time_embedding.linear_2."},
                                           {"input_blocks.0.0.", "conv_in."},
                                           {"out.0.", "conv_norm_out."},
                                           {"out.2.", "conv_out."}}};
constexpr std::array<Pair, 6> kUnetResnet = {{{"in_layers.0.", "norm1."},
                                              {"in_layers.2.", "conv1."},
                                              {"emb_layers.1.", "time_emb_proj."},
                                              {"out_layers.0.", "norm2."},
                                              {"out_layers.3.", "conv2."},
                                              {"skip_connection.", "conv_shortcut."}}};
// Transformer2DModel / SpatialTransformer members share their names in both layouts.
constexpr std::array<std::string_view, 4> kTransformerMembers = {"norm.", "proj_in.", "proj_out.",
                                                                 "transformer_blocks."};

bool is_transformer_member(std::string_view rest) {
  for (auto m : kTransformerMembers)
    if (rest.starts_with(m)) return true;
  return false;
}

std::optional<std::string> unet_resnet(std::string_view rest, bool forward) {
  return rename_prefix(rest, kUnetResnet, forward);
}

std::optional<std::string> unet_attention(std::string_view rest) {
  if (!is_transformer_member(rest)) return std::nullopt;
  return std::string(rest);
}

std::optional<std::string> prefixed(const std::string& prefix,
                                    const std::optional<std::string>& rest) {
  if (!rest) return std::nullopt;
  return prefix + *rest;
}

// (original, diffusers); the resnet members norm1/conv1/norm2/conv2 are shared.
constexpr std::array<Pair, 5> kVaeResnet = {{{"nin_shortcut.", "conv_shortcut."},
                                             {"norm1.", "norm1."},
                                             {"conv1.", "conv1."},
                                             {"norm2.", "norm2."},
                                             {"conv2.", "conv2."}}};
constexpr std::array<Pair, 5> kVaeAttention = {{{"norm.", "group_norm."},
                                                {"q.", "to_q."},
                                                {"k.", "to_k."},
                                                {"v.", "to_v."},
                                                {"proj_out.", "to_out.0."}}};
constexpr std::array<Pair, 3> kVaeCoderTop = {
    {{"conv_in.", "conv_in."}, {"conv_out.", "conv_out."}, {"norm_out.", "conv_norm_out."}}};
constexpr std::array<Pair, 3> kVaeMid = {{{"mid.block_1.", "mid_block.resnets.0."},
                                          {"mid.block_2.", "mid_block.resnets.1."},
                                          {"mid.attn_1.", "mid_block.attentions.0."}}};

// (OpenCLIP, transformers)
constexpr std::array<Pair, 4> kOpenClipTop = {
    {{"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
     {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
     {"ln_final.weight", "text_model.final_layer_norm.weight"},
     {"ln_final.bias", "text_model.final_layer_norm.bias"}}};
constexpr std::array<Pair, 7> kOpenClipBlock = {
    {{"ln_1.", "layer_norm1."},
     {"ln_2.", "layer_norm2."},
     {"mlp.c_fc.", "mlp.fc1."},
     {"mlp.c_proj.", "mlp.fc2."},
     {"attn.out_proj.", "self_attn.out_proj."},
     {"attn.in_proj_weight", "self_attn.in_proj_weight"},
     {"attn.in_proj_bias", "self_attn.in_proj_bias"}}};

}  // namespace

std::optional<std::string> unet_key_to_diffusers(const std::string& key, int layers_per_block) {
  if (!valid_layers_per_block(layers_per_block)) return std::nullopt;
  const int per_level = layers_per_block + 1;
  std::string_view s = key;
  if (auto r = rename_prefix(s, kUnetTop, true)) return r;
  int k = 0, m = 0;
  if (eat(s, "input_blocks.")) {
    if (!eat_index(s, &k) || !eat_index(s, &m) || k == 0) return std::nullopt;
    const int level = (k - 1) / per_level, j = (k - 1) % per_level;
    const std::string down = "down_blocks." + idx(level);
    if (j == layers_per_block) {  // the level's downsampler
      if (m != 0 || !eat(s, "op.")) return std::nullopt;
      return down + "downsamplers.0.conv." + std::string(s);
    }
    if (m == 0) return prefixed(down + "resnets." + idx(j), unet_resnet(s, true));
    if (m == 1) return prefixed(down + "attentions." + idx(j), unet_attention(s));
    return std::nullopt;
  }
  if (eat(s, "middle_block.")) {
    if (!eat_index(s, &m)) return std::nullopt;
    if (m == 0) return prefixed("mid_block.resnets.0.", unet_resnet(s, true));
    if (m == 1) return prefixed("mid_block.attentions.0.", unet_attention(s));
    if (m == 2) return prefixed("mid_block.resnets.1.", unet_resnet(s, true));
    return std::nullopt;
  }
  if (eat(s, "output_blocks.")) {
    if (!eat_index(s, &k) || !eat_index(s, &m)) return std::nullopt;
    const int level = k / per_level, j = k % per_level;
    const std::string up = "up_blocks." + idx(level);
    if (m == 0) return prefixed(up + "resnets." + idx(j), unet_resnet(s, true));
    // Attention modules have no top-level "conv", so a conv in slot 1 or 2 is the upsampler.
    if ((m == 1 || m == 2) && j == layers_per_block && eat(s, "conv."))
      return up + "upsamplers.0.conv." + std::string(s);
    if (m == 1) return prefixed(up + "attentions." + idx(j), unet_attention(s));
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::string> unet_key_to_original(const std::string& key, int layers_per_block,
                                                const std::vector<bool>& up_has_attention) {
  if (!valid_layers_per_block(layers_per_block)) return std::nullopt;
  const int64_t per_level = layers_per_block + 1;
  std::string_view s = key;
  if (auto r = rename_prefix(s, kUnetTop, false)) return r;
  int level = 0, j = 0;
  if (eat(s, "down_blocks.")) {
    if (!eat_index(s, &level)) return std::nullopt;
    if (eat(s, "downsamplers.0.conv."))
      return "input_blocks." + idx((level + 1) * per_level) + "0.op." + std::string(s);
    const bool resnet = eat(s, "resnets.");
    if (!resnet && !eat(s, "attentions.")) return std::nullopt;
    if (!eat_index(s, &j) || j >= layers_per_block) return std::nullopt;
    const std::string block = "input_blocks." + idx(level * per_level + j + 1);
    return resnet ? prefixed(block + "0.", unet_resnet(s, false))
                  : prefixed(block + "1.", unet_attention(s));
  }
  if (eat(s, "mid_block.")) {
    if (eat(s, "resnets.0.")) return prefixed("middle_block.0.", unet_resnet(s, false));
    if (eat(s, "resnets.1.")) return prefixed("middle_block.2.", unet_resnet(s, false));
    if (eat(s, "attentions.0.")) return prefixed("middle_block.1.", unet_attention(s));
    return std::nullopt;
  }
  if (eat(s, "up_blocks.")) {
    if (!eat_index(s, &level)) return std::nullopt;
    if (eat(s, "upsamplers.0.conv.")) {
      if (level >= static_cast<int>(up_has_attention.size())) return std::nullopt;
      const int slot = up_has_attention[level] ? 2 : 1;
      return "output_blocks." + idx(level * per_level + layers_per_block) + idx(slot) + "conv." +
             std::string(s);
    }
    const bool resnet = eat(s, "resnets.");
    if (!resnet && !eat(s, "attentions.")) return std::nullopt;
    if (!eat_index(s, &j) || j >= per_level) return std::nullopt;
    const std::string block = "output_blocks." + idx(level * per_level + j);
    return resnet ? prefixed(block + "0.", unet_resnet(s, false))
                  : prefixed(block + "1.", unet_attention(s));
  }
  return std::nullopt;
}

std::optional<std::string> vae_key_to_diffusers(const std::string& key, int num_levels) {
  std::string_view s = key;
  if (s.starts_with("quant_conv.") || s.starts_with("post_quant_conv.")) return key;
  const bool encoder = eat(s, "encoder.");
  if (!encoder && !eat(s, "decoder.")) return std::nullopt;
  const std::string coder = encoder ? "encoder." : "decoder.";
  if (auto r = rename_prefix(s, kVaeCoderTop, true)) return coder + *r;
  if (eat(s, "mid.attn_1.")) {
    return prefixed(coder + "mid_block.attentions.0.", rename_prefix(s, kVaeAttention, true));
  }
  if (eat(s, "mid.block_1."))
    return prefixed(coder + "mid_block.resnets.0.", rename_prefix(s, kVaeResnet, true));
  if (eat(s, "mid.block_2."))
    return prefixed(coder + "mid_block.resnets.1.", rename_prefix(s, kVaeResnet, true));
  int level = 0, j = 0;
  if (!eat(s, encoder ? "down." : "up.") || !eat_index(s, &level) || level >= num_levels)
    return std::nullopt;
  // Decoder levels run from the deepest (up.{n-1}) to the shallowest in diffusers' up_blocks.
  const std::string block =
      coder + (encoder ? "down_blocks." + idx(level) : "up_blocks." + idx(num_levels - 1 - level));
  if (eat(s, encoder ? "downsample.conv." : "upsample.conv."))
    return block + (encoder ? "downsamplers.0.conv." : "upsamplers.0.conv.") + std::string(s);
  if (!eat(s, "block.") || !eat_index(s, &j)) return std::nullopt;
  return prefixed(block + "resnets." + idx(j), rename_prefix(s, kVaeResnet, true));
}

std::optional<std::string> vae_key_to_original(const std::string& key, int num_levels) {
  std::string_view s = key;
  if (s.starts_with("quant_conv.") || s.starts_with("post_quant_conv.")) return key;
  const bool encoder = eat(s, "encoder.");
  if (!encoder && !eat(s, "decoder.")) return std::nullopt;
  const std::string coder = encoder ? "encoder." : "decoder.";
  if (auto r = rename_prefix(s, kVaeCoderTop, false)) return coder + *r;
  if (eat(s, "mid_block.attentions.0."))
    return prefixed(coder + "mid.attn_1.", rename_prefix(s, kVaeAttention, false));
  if (eat(s, "mid_block.resnets.0."))
    return prefixed(coder + "mid.block_1.", rename_prefix(s, kVaeResnet, false));
  if (eat(s, "mid_block.resnets.1."))
    return prefixed(coder + "mid.block_2.", rename_prefix(s, kVaeResnet, false));
  int level = 0, j = 0;
  if (!eat(s, encoder ? "down_blocks." : "up_blocks.") || !eat_index(s, &level) ||
      level >= num_levels)
    return std::nullopt;
  const std::string block =
      coder + (encoder ? "down." + idx(level) : "up." + idx(num_levels - 1 - level));
  if (eat(s, encoder ? "downsamplers.0.conv." : "upsamplers.0.conv."))
    return block + (encoder ? "downsample.conv." : "upsample.conv.") + std::string(s);
  if (!eat(s, "resnets.") || !eat_index(s, &j)) return std::nullopt;
  return prefixed(block + "block." + idx(j), rename_prefix(s, kVaeResnet, false));
}

bool is_vae_attention_conv_weight(const std::string& key) {
  std::string_view s = key;
  if (!eat(s, "encoder.") && !eat(s, "decoder.")) return false;
  if (!eat(s, "mid_block.attentions.0.")) return false;
  return s == "to_q.weight" || s == "to_k.weight" || s == "to_v.weight" || s == "to_out.0.weight";
}

std::optional<std::string> clip_key_to_diffusers(const std::string& key) {
  // transformers < 4.21 stored CLIPTextModel without the text_model level.
  std::string name = key.starts_with("text_model.") ? key : "text_model." + key;
  std::string_view s = name;
  if (s.starts_with("text_model.embeddings.token_embedding.") ||
      s.starts_with("text_model.embeddings.position_embedding.") ||
      s.starts_with("text_model.encoder.layers.") || s.starts_with("text_model.final_layer_norm."))
    return name;
  return std::nullopt;
}

std::optional<std::string> openclip_key_to_diffusers(const std::string& key) {
  std::string_view s = key;
  for (const auto& [orig, diff] : kOpenClipTop)
    if (s == orig) return std::string(diff);
  int n = 0;
  if (!eat(s, "transformer.resblocks.") || !eat_index(s, &n)) return std::nullopt;
  return prefixed("text_model.encoder.layers." + idx(n), rename_prefix(s, kOpenClipBlock, true));
}

std::optional<std::string> openclip_key_to_original(const std::string& key) {
  std::string_view s = key;
  for (const auto& [orig, diff] : kOpenClipTop)
    if (s == diff) return std::string(orig);
  int n = 0;
  if (!eat(s, "text_model.encoder.layers.") || !eat_index(s, &n)) return std::nullopt;
  return prefixed("transformer.resblocks." + idx(n), rename_prefix(s, kOpenClipBlock, false));
}

}  // namespace sdpal
