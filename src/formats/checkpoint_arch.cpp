#include "formats/checkpoint_arch.h"

#include <functional>

#include "core/error.h"

namespace sdpal {

namespace {

using nlohmann::json;

// Real SD releases use 64-channel attention heads in SD2 and 32 GroupNorm groups everywhere.
constexpr int64_t kSd2HeadSize = 64;
constexpr int64_t kNormGroups = 32;
constexpr double kSdVaeScalingFactor = 0.18215;

class Shapes {
 public:
  Shapes(const ShapeMap& m, std::string component, std::string where)
      : m_(m), component_(std::move(component)), where_(std::move(where)) {}
  bool has(const std::string& name) const { return m_.count(name) != 0; }
  // The shape of a tensor the inference needs; throws naming it when absent or of another rank.
  const Shape& at(const std::string& name, size_t rank) const {
    auto it = m_.find(name);
    if (it == m_.end())
      fail(where_ + ": cannot infer the " + component_ + " config: tensor '" + name +
           "' is missing (not an SD 1.x/2.x " + component_ + "?)");
    if (it->second.size() != rank)
      fail(where_ + ": cannot infer the " + component_ + " config: tensor '" + name +
           "' has shape " + shape_str(it->second) + ", expected rank " + std::to_string(rank));
    return it->second;
  }
  // Number of consecutive indices i = 0, 1, ... for which name(i) exists.
  int count(const std::function<std::string(int)>& name) const {
    int n = 0;
    while (has(name(n))) ++n;
    return n;
  }
  [[noreturn]] void bad(const std::string& why) const {
    fail(where_ + ": cannot infer the " + component_ + " config: " + why);
  }

 private:
  const ShapeMap& m_;
  std::string component_, where_;
};

std::string str(int i) { return std::to_string(i); }

}  // namespace

json infer_unet_config(const ShapeMap& unet, bool sd2, const std::string& where) {
  Shapes s(unet, "unet", where);
  const int levels =
      s.count([](int i) { return "down_blocks." + str(i) + ".resnets.0.conv1.weight"; });
  if (levels == 0) s.bad("no down_blocks.0.resnets.0 tensors");
  const int layers =
      s.count([](int j) { return "down_blocks.0.resnets." + str(j) + ".conv1.weight"; });
  const int up_levels =
      s.count([](int i) { return "up_blocks." + str(i) + ".resnets.0.conv1.weight"; });
  if (up_levels != levels)
    s.bad(std::to_string(levels) + " down levels but " + std::to_string(up_levels) + " up levels");

  json block_out = json::array(), down_types = json::array(), up_types = json::array();
  json heads = json::array();
  for (int i = 0; i < levels; ++i) {
    const int64_t ch = s.at("down_blocks." + str(i) + ".resnets.0.conv2.weight", 4)[0];
    block_out.push_back(ch);
    heads.push_back(ch % kSd2HeadSize == 0 ? ch / kSd2HeadSize : 1);
    const bool attends = s.has("down_blocks." + str(i) + ".attentions.0.proj_in.weight");
    down_types.push_back(attends ? "CrossAttnDownBlock2D" : "DownBlock2D");
    const bool up_attends = s.has("up_blocks." + str(i) + ".attentions.0.proj_in.weight");
    up_types.push_back(up_attends ? "CrossAttnUpBlock2D" : "UpBlock2D");
  }

  const std::string mid = "mid_block.attentions.0.";
  if (!s.has(mid + "proj_in.weight"))
    s.bad(
        "the mid block has no attention (only SD 1.x/2.x UNets with UNetMidBlock2DCrossAttn "
        "are supported)");
  const Shape& proj_in = unet.at(mid + "proj_in.weight");
  if (proj_in.size() != 2 && proj_in.size() != 4)
    s.bad("proj_in weight has shape " + shape_str(proj_in) + " (expected 2-D or 1x1 conv)");
  const int64_t cross_dim = s.at(mid + "transformer_blocks.0.attn2.to_k.weight", 2)[1];
  const int depth =
      s.count([&](int t) { return mid + "transformer_blocks." + str(t) + ".norm1.weight"; });

  const Shape& conv_in = s.at("conv_in.weight", 4);
  const Shape& conv_out = s.at("conv_out.weight", 4);
  const int64_t time_dim = s.at("time_embedding.linear_1.weight", 2)[0];

  json c = {
      {"_class_name", "UNet2DConditionModel"},
      {"act_fn", "silu"},
      {"addition_embed_type", nullptr},
      {"addition_embed_type_num_heads", 64},
      {"addition_time_embed_dim", nullptr},
      // diffusers' legacy name: the number of heads per block. SD1 uses 8 heads everywhere, SD2
      // heads of 64 channels.
      {"attention_head_dim", sd2 ? heads : json(8)},
      {"attention_type", "default"},
      {"block_out_channels", block_out},
      {"center_input_sample", false},
      {"class_embed_type", nullptr},
      {"class_embeddings_concat", false},
      {"conv_in_kernel", conv_in[2]},
      {"conv_out_kernel", conv_out[2]},
      {"cross_attention_dim", cross_dim},
      {"cross_attention_norm", nullptr},
      {"down_block_types", down_types},
      {"downsample_padding", 1},
      {"dropout", 0.0},
      {"dual_cross_attention", false},
      {"encoder_hid_dim", nullptr},
      {"encoder_hid_dim_type", nullptr},
      {"flip_sin_to_cos", true},
      {"freq_shift", 0},
      {"in_channels", conv_in[1]},
      {"layers_per_block", layers},
      {"mid_block_only_cross_attention", nullptr},
      {"mid_block_scale_factor", 1},
      {"mid_block_type", "UNetMidBlock2DCrossAttn"},
      {"norm_eps", 1e-5},
      {"norm_num_groups", kNormGroups},
      {"num_attention_heads", nullptr},
      {"num_class_embeds", nullptr},
      {"only_cross_attention", false},
      {"out_channels", conv_out[0]},
      {"projection_class_embeddings_input_dim", nullptr},
      {"resnet_out_scale_factor", 1.0},
      {"resnet_skip_time_act", false},
      {"resnet_time_scale_shift", "default"},
      {"reverse_transformer_layers_per_block", nullptr},
      // 512-pixel SD1 models; SD2's most used releases are the 768-pixel ones.
      {"sample_size", sd2 ? 96 : 64},
      {"time_cond_proj_dim", nullptr},
      {"time_embedding_act_fn", nullptr},
      {"time_embedding_dim",
       time_dim == 4 * block_out[0].get<int64_t>() ? json(nullptr) : json(time_dim)},
      {"time_embedding_type", "positional"},
      {"timestep_post_act", nullptr},
      {"transformer_layers_per_block", depth},
      {"up_block_types", up_types},
      {"upcast_attention", sd2},
      {"use_linear_projection", proj_in.size() == 2},
  };
  return c;
}

json infer_vae_config(const ShapeMap& vae, bool sd2, const std::string& where) {
  Shapes s(vae, "vae", where);
  const int levels =
      s.count([](int i) { return "encoder.down_blocks." + str(i) + ".resnets.0.conv1.weight"; });
  if (levels == 0) s.bad("no encoder.down_blocks.0.resnets.0 tensors");
  const int layers =
      s.count([](int j) { return "encoder.down_blocks.0.resnets." + str(j) + ".conv1.weight"; });
  json block_out = json::array(), down_types = json::array(), up_types = json::array();
  for (int i = 0; i < levels; ++i) {
    block_out.push_back(s.at("encoder.down_blocks." + str(i) + ".resnets.0.conv2.weight", 4)[0]);
    down_types.push_back("DownEncoderBlock2D");
    up_types.push_back("UpDecoderBlock2D");
  }
  json c = {
      {"_class_name", "AutoencoderKL"},
      {"act_fn", "silu"},
      {"block_out_channels", block_out},
      {"down_block_types", down_types},
      {"force_upcast", true},
      {"in_channels", s.at("encoder.conv_in.weight", 4)[1]},
      {"latent_channels", s.at("post_quant_conv.weight", 4)[0]},
      {"layers_per_block", layers},
      {"norm_num_groups", kNormGroups},
      {"out_channels", s.at("decoder.conv_out.weight", 4)[0]},
      {"sample_size", sd2 ? 768 : 512},
      {"scaling_factor", kSdVaeScalingFactor},
      {"up_block_types", up_types},
  };
  return c;
}

json infer_text_encoder_config(const ShapeMap& text, bool sd2, DType dtype,
                               const std::string& where) {
  Shapes s(text, "text_encoder", where);
  const Shape& tokens = s.at("text_model.embeddings.token_embedding.weight", 2);
  const Shape& positions = s.at("text_model.embeddings.position_embedding.weight", 2);
  const int layers =
      s.count([](int n) { return "text_model.encoder.layers." + str(n) + ".layer_norm1.weight"; });
  if (layers == 0) s.bad("no text_model.encoder.layers.0 tensors");
  const int64_t hidden = tokens[1];
  const int64_t intermediate = s.at("text_model.encoder.layers.0.mlp.fc1.weight", 2)[0];
  // Both CLIP ViT-L and OpenCLIP ViT-H use 64-channel heads.
  const int64_t heads = hidden % 64 == 0 ? hidden / 64 : 1;
  json c = {
      {"architectures", {"CLIPTextModel"}},
      {"attention_dropout", 0.0},
      {"bos_token_id", 0},
      {"dropout", 0.0},
      {"eos_token_id", 2},
      {"hidden_act", sd2 ? "gelu" : "quick_gelu"},
      {"hidden_size", hidden},
      {"initializer_factor", 1.0},
      {"initializer_range", 0.02},
      {"intermediate_size", intermediate},
      {"layer_norm_eps", 1e-5},
      {"max_position_embeddings", positions[0]},
      {"model_type", "clip_text_model"},
      {"num_attention_heads", heads},
      {"num_hidden_layers", layers},
      {"pad_token_id", 1},
      {"projection_dim", sd2 ? 512 : 768},
      {"torch_dtype", dtype == DType::F16    ? "float16"
                      : dtype == DType::BF16 ? "bfloat16"
                                             : "float32"},
      {"vocab_size", tokens[0]},
  };
  return c;
}

}  // namespace sdpal
