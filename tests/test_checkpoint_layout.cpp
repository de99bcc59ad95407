// The single-file writer and reader share one mapping table (formats/checkpoint_keymap), so a
// round trip cannot catch an error in it. This test checks the written file against the original
// CompVis / A1111 key names of Stable Diffusion 1.x, listed here by hand from that layout (not
// from our table): tiny-sd1 has SD 1.5's block structure (4 levels, 2 layers per block, attention
// in the first three), so these are SD 1.5's own indices. Each named tensor must hold exactly the
// bytes of its diffusers counterpart.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "formats/checkpoint_keymap.h"
#include "formats/safetensors.h"
#include "support/fixtures.h"

namespace sdpal {
namespace {

namespace fs = std::filesystem;

struct Pair {
  const char* original;   // key in the single file
  const char* component;  // diffusers folder
  const char* diffusers;  // key there
};

// clang-format off
const Pair kPairs[] = {
    // UNet: model.diffusion_model.*
    {"model.diffusion_model.input_blocks.0.0.weight", "unet", "conv_in.weight"},
    {"model.diffusion_model.time_embed.0.weight", "unet", "time_embedding.linear_1.weight"},
    {"model.diffusion_model.time_embed.2.bias", "unet", "time_embedding.linear_2.bias"},
    {"model.diffusion_model.input_blocks.1.0.in_layers.0.weight", "unet", "down_blocks.0.resnets.0.norm1.weight"},
    {"model.diffusion_model.input_blocks.1.0.in_layers.2.weight", "unet", "down_blocks.0.resnets.0.conv1.weight"},
    {"model.diffusion_model.input_blocks.1.0.emb_layers.1.weight", "unet", "down_blocks.0.resnets.0.time_emb_proj.weight"},
    {"model.diffusion_model.input_blocks.1.0.out_layers.0.bias", "unet", "down_blocks.0.resnets.0.norm2.bias"},
    {"model.diffusion_model.input_blocks.1.0.out_layers.3.weight", "unet", "down_blocks.0.resnets.0.conv2.weight"},
    {"model.diffusion_model.input_blocks.1.1.norm.weight", "unet", "down_blocks.0.attentions.0.norm.weight"},
    {"model.diffusion_model.input_blocks.1.1.proj_in.weight", "unet", "down_blocks.0.attentions.0.proj_in.weight"},
    {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", "unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"},
    {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", "unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"},
    {"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.ff.net.0.proj.weight", "unet", "down_blocks.0.attentions.1.transformer_blocks.0.ff.net.0.proj.weight"},
    {"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.norm3.weight", "unet", "down_blocks.0.attentions.1.transformer_blocks.0.norm3.weight"},
    {"model.diffusion_model.input_blocks.3.0.op.weight", "unet", "down_blocks.0.downsamplers.0.conv.weight"},
    {"model.diffusion_model.input_blocks.5.1.proj_out.weight", "unet", "down_blocks.1.attentions.1.proj_out.weight"},
    {"model.diffusion_model.input_blocks.6.0.op.bias", "unet", "down_blocks.1.downsamplers.0.conv.bias"},
    {"model.diffusion_model.input_blocks.7.0.skip_connection.weight", "unet", "down_blocks.2.resnets.0.conv_shortcut.weight"},
    {"model.diffusion_model.input_blocks.8.1.transformer_blocks.0.attn2.to_out.0.weight", "unet", "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_out.0.weight"},
    {"model.diffusion_model.input_blocks.9.0.op.weight", "unet", "down_blocks.2.downsamplers.0.conv.weight"},
    {"model.diffusion_model.input_blocks.10.0.in_layers.2.weight", "unet", "down_blocks.3.resnets.0.conv1.weight"},
    {"model.diffusion_model.input_blocks.11.0.out_layers.3.weight", "unet", "down_blocks.3.resnets.1.conv2.weight"},
    {"model.diffusion_model.middle_block.0.in_layers.2.weight", "unet", "mid_block.resnets.0.conv1.weight"},
    {"model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_v.weight", "unet", "mid_block.attentions.0.transformer_blocks.0.attn1.to_v.weight"},
    {"model.diffusion_model.middle_block.2.out_layers.3.weight", "unet", "mid_block.resnets.1.conv2.weight"},
    {"model.diffusion_model.output_blocks.0.0.skip_connection.weight", "unet", "up_blocks.0.resnets.0.conv_shortcut.weight"},
    {"model.diffusion_model.output_blocks.2.0.in_layers.2.weight", "unet", "up_blocks.0.resnets.2.conv1.weight"},
    {"model.diffusion_model.output_blocks.2.1.conv.weight", "unet", "up_blocks.0.upsamplers.0.conv.weight"},
    {"model.diffusion_model.output_blocks.3.1.proj_in.weight", "unet", "up_blocks.1.attentions.0.proj_in.weight"},
    {"model.diffusion_model.output_blocks.5.2.conv.weight", "unet", "up_blocks.1.upsamplers.0.conv.weight"},
    {"model.diffusion_model.output_blocks.8.2.conv.bias", "unet", "up_blocks.2.upsamplers.0.conv.bias"},
    {"model.diffusion_model.output_blocks.11.1.transformer_blocks.0.ff.net.2.weight", "unet", "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.2.weight"},
    {"model.diffusion_model.out.0.weight", "unet", "conv_norm_out.weight"},
    {"model.diffusion_model.out.2.weight", "unet", "conv_out.weight"},
    // VAE: first_stage_model.* (the decoder's levels run in the opposite order)
    {"first_stage_model.encoder.conv_in.weight", "vae", "encoder.conv_in.weight"},
    {"first_stage_model.encoder.down.0.block.0.norm1.weight", "vae", "encoder.down_blocks.0.resnets.0.norm1.weight"},
    {"first_stage_model.encoder.down.0.downsample.conv.weight", "vae", "encoder.down_blocks.0.downsamplers.0.conv.weight"},
    {"first_stage_model.encoder.down.1.block.0.nin_shortcut.weight", "vae", "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"},
    {"first_stage_model.encoder.mid.block_1.conv1.weight", "vae", "encoder.mid_block.resnets.0.conv1.weight"},
    {"first_stage_model.encoder.mid.attn_1.norm.weight", "vae", "encoder.mid_block.attentions.0.group_norm.weight"},
    {"first_stage_model.encoder.mid.attn_1.q.weight", "vae", "encoder.mid_block.attentions.0.to_q.weight"},
    {"first_stage_model.encoder.mid.attn_1.proj_out.weight", "vae", "encoder.mid_block.attentions.0.to_out.0.weight"},
    {"first_stage_model.encoder.norm_out.weight", "vae", "encoder.conv_norm_out.weight"},
    {"first_stage_model.quant_conv.weight", "vae", "quant_conv.weight"},
    {"first_stage_model.post_quant_conv.weight", "vae", "post_quant_conv.weight"},
    {"first_stage_model.decoder.mid.block_2.conv2.weight", "vae", "decoder.mid_block.resnets.1.conv2.weight"},
    {"first_stage_model.decoder.up.3.block.0.conv1.weight", "vae", "decoder.up_blocks.0.resnets.0.conv1.weight"},
    {"first_stage_model.decoder.up.3.upsample.conv.weight", "vae", "decoder.up_blocks.0.upsamplers.0.conv.weight"},
    {"first_stage_model.decoder.up.0.block.2.conv2.weight", "vae", "decoder.up_blocks.3.resnets.2.conv2.weight"},
    {"first_stage_model.decoder.conv_out.weight", "vae", "decoder.conv_out.weight"},
    // Text encoder: cond_stage_model.transformer.* (OpenAI CLIP, transformers' names inside)
    {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", "text_encoder", "text_model.embeddings.token_embedding.weight"},
    {"cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight", "text_encoder", "text_model.encoder.layers.0.self_attn.q_proj.weight"},
    {"cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight", "text_encoder", "text_model.encoder.layers.1.mlp.fc2.weight"},
    {"cond_stage_model.transformer.text_model.final_layer_norm.weight", "text_encoder", "text_model.final_layer_norm.weight"},
};
// clang-format on

TEST(CheckpointLayout, WrittenFileHasSd15OriginalKeys) {
  SDPAL_REQUIRE_FIXTURES();
  const fs::path dir = fs::temp_directory_path() / ("sdpal-layout-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string file = (dir / "model.safetensors").string();
  write_single_file(test::model_dir("tiny-sd1"), file);
  const SafetensorsFile single(file);
  const std::string m = test::model_dir("tiny-sd1");
  const SafetensorsFile unet(m + "/unet/diffusion_pytorch_model.safetensors"),
      vae(m + "/vae/diffusion_pytorch_model.safetensors"),
      text(m + "/text_encoder/model.safetensors");
  for (const Pair& p : kPairs) {
    SCOPED_TRACE(p.original);
    const SafetensorsFile& src = std::string(p.component) == "unet" ? unet
                                 : std::string(p.component) == "vae" ? vae
                                                                     : text;
    const TensorView* got = single.find(p.original);
    ASSERT_NE(got, nullptr) << "missing in the single file";
    const TensorView& want = src.get(p.diffusers);
    ASSERT_EQ(got->dtype, want.dtype);
    // The VAE's attention projections are 1x1 convolutions there and Linear here: same values.
    ASSERT_EQ(got->numel(), want.numel());
    EXPECT_EQ(std::memcmp(got->data, want.data, want.nbytes), 0) << "different values";
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sdpal
