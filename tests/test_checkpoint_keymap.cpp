// Single-file checkpoints: writing a diffusers fixture folder in the original layout and loading it
// back must give every tensor under its diffusers name with identical shape and bytes, the same
// configs (embedded) or the right structure (inferred), and clear errors for unsupported files.
#include <unistd.h>

#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "formats/checkpoint_keymap.h"
#include "formats/safetensors.h"
#include "models/single_file_loader.h"
#include "support/fixtures.h"

namespace sdpal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A scratch folder removed when the test ends.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("sdpal_ckpt_") + std::to_string(::getpid()) + "_" +
                       info->test_suite_name() + "_" + info->name();
    for (char& c : name)
      if (c == '/') c = '_';
    path_ = fs::temp_directory_path() / name;
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

std::string folder_weights(const std::string& fixture, const std::string& component) {
  const std::string stem = component == "text_encoder" ? "model" : "diffusion_pytorch_model";
  return test::model_dir(fixture) + "/" + component + "/" + stem + ".safetensors";
}

struct Loaded {
  WeightStore unet{"unet"}, vae{"vae"}, text{"text_encoder"};
  json unet_cfg, vae_cfg, text_cfg;
  std::string kind;
  explicit Loaded(const std::string& path) {
    load_single_file(path, unet, vae, text, &unet_cfg, &vae_cfg, &text_cfg, &kind);
  }
  const WeightStore& store(const std::string& component) const {
    return component == "unet" ? unet : component == "vae" ? vae : text;
  }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class SingleFileRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(SingleFileRoundTrip, EveryTensorAndConfigComesBack) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string fixture = GetParam();
  TempDir tmp;
  const std::string path = tmp.file(fixture + ".safetensors");
  write_single_file(test::model_dir(fixture), path);
  const Loaded got(path);

  const bool sd2 =
      read_json(test::model_dir(fixture) + "/text_encoder/config.json").value("hidden_act", "") ==
      "gelu";
  EXPECT_EQ(got.kind, sd2 ? "sd2" : "sd1");

  for (const std::string component : {"unet", "vae", "text_encoder"}) {
    SCOPED_TRACE(fixture + "/" + component);
    const SafetensorsFile want(folder_weights(fixture, component));
    const WeightStore& store = got.store(component);
    EXPECT_EQ(store.names().size(), want.tensors().size()) << "extra or missing tensors";
    int mismatches = 0;
    for (const TensorView& w : want.tensors()) {
      const TensorView* g = store.find(w.name);
      if (!g) {
        ADD_FAILURE() << "missing " << w.name;
        continue;
      }
      const bool same = g->dtype == w.dtype && g->shape == w.shape && g->nbytes == w.nbytes &&
                        std::memcmp(g->data, w.data, w.nbytes) == 0;
      if (!same && ++mismatches <= 5)
        ADD_FAILURE() << w.name << ": got " << dtype_name(g->dtype) << shape_str(g->shape)
                      << ", want " << dtype_name(w.dtype) << shape_str(w.shape)
                      << " (or different bytes)";
    }
    EXPECT_EQ(mismatches, 0);
  }
  const std::string dir = test::model_dir(fixture);
  EXPECT_EQ(got.unet_cfg, read_json(dir + "/unet/config.json"));
  EXPECT_EQ(got.vae_cfg, read_json(dir + "/vae/config.json"));
  EXPECT_EQ(got.text_cfg, read_json(dir + "/text_encoder/config.json"));
}

// The written file follows the original layout conventions, not just some invertible renaming.
TEST_P(SingleFileRoundTrip, WrittenFileUsesOriginalLayout) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string fixture = GetParam();
  const std::string dir = test::model_dir(fixture);
  const json unet_cfg = read_json(dir + "/unet/config.json");
  const json vae_cfg = read_json(dir + "/vae/config.json");
  const json text_cfg = read_json(dir + "/text_encoder/config.json");
  TempDir tmp;
  const std::string path = tmp.file("model.safetensors");
  write_single_file(dir, path, /*embed_configs=*/false);
  const SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().count(kUnetConfigKey), 0u);

  for (const TensorView& v : f.tensors()) {
    const bool known = v.name.starts_with("model.diffusion_model.") ||
                       v.name.starts_with("first_stage_model.") ||
                       v.name.starts_with("cond_stage_model.");
    EXPECT_TRUE(known) << v.name;
  }
  // UNet: input_blocks.0 is conv_in, each level has layers_per_block blocks then a downsampler.
  const int layers = unet_cfg["layers_per_block"].get<int>();
  const int64_t c0 = unet_cfg["block_out_channels"][0].get<int64_t>();
  EXPECT_EQ(f.get("model.diffusion_model.input_blocks.0.0.weight").shape[0], c0);
  EXPECT_TRUE(
      f.has("model.diffusion_model.input_blocks." + std::to_string(layers + 1) + ".0.op.weight"));
  EXPECT_TRUE(f.has("model.diffusion_model.middle_block.1.proj_in.weight"));
  const size_t proj_rank = unet_cfg["use_linear_projection"].get<bool>() ? 2 : 4;
  EXPECT_EQ(f.get("model.diffusion_model.middle_block.1.proj_in.weight").shape.size(), proj_rank);
  // up level 0 has no attention: its upsampler follows the resnet directly (slot 1).
  EXPECT_TRUE(
      f.has("model.diffusion_model.output_blocks." + std::to_string(layers) + ".1.conv.weight"));

  // VAE: mid-block attention as 1x1 convolutions, decoder levels numbered deepest first.
  const int64_t vae_levels = vae_cfg["block_out_channels"].size();
  const Shape& q = f.get("first_stage_model.encoder.mid.attn_1.q.weight").shape;
  ASSERT_EQ(q.size(), 4u);
  EXPECT_EQ(q[2], 1);
  EXPECT_EQ(q[3], 1);
  EXPECT_EQ(f.get("first_stage_model.decoder.up.0.block.0.conv1.weight").shape[0],
            vae_cfg["block_out_channels"][0].get<int64_t>());
  EXPECT_TRUE(f.has("first_stage_model.decoder.up." + std::to_string(vae_levels - 1) +
                    ".upsample.conv.weight"));

  const int64_t hidden = text_cfg["hidden_size"].get<int64_t>();
  const int text_layers = text_cfg["num_hidden_layers"].get<int>();
  if (text_cfg["hidden_act"] == "gelu") {  // OpenCLIP with one extra block
    const std::string extra =
        "cond_stage_model.model.transformer.resblocks." + std::to_string(text_layers) + ".";
    EXPECT_EQ(f.get(extra + "attn.in_proj_weight").shape, (Shape{3 * hidden, hidden}));
    EXPECT_EQ(f.get(extra + "attn.in_proj_bias").shape, (Shape{3 * hidden}));
    EXPECT_TRUE(f.has(extra + "mlp.c_fc.weight"));
    EXPECT_FALSE(f.has("cond_stage_model.model.transformer.resblocks." +
                       std::to_string(text_layers + 1) + ".ln_1.weight"));
    EXPECT_EQ(f.get("cond_stage_model.model.positional_embedding").shape[1], hidden);
  } else {
    EXPECT_TRUE(f.has("cond_stage_model.transformer.text_model.encoder.layers." +
                      std::to_string(text_layers - 1) + ".self_attn.q_proj.weight"));
  }
}

// Without embedded configs the structure is inferred from shapes.
TEST_P(SingleFileRoundTrip, InferredConfigHasTheFolderStructure) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string fixture = GetParam();
  const std::string dir = test::model_dir(fixture);
  TempDir tmp;
  const std::string path = tmp.file("model.safetensors");
  write_single_file(dir, path, /*embed_configs=*/false);
  const Loaded got(path);

  const json unet = read_json(dir + "/unet/config.json");
  for (const char* key :
       {"block_out_channels", "layers_per_block", "use_linear_projection", "cross_attention_dim",
        "in_channels", "out_channels", "down_block_types", "up_block_types", "mid_block_type",
        "upcast_attention", "transformer_layers_per_block", "flip_sin_to_cos", "freq_shift"})
    EXPECT_EQ(got.unet_cfg[key], unet[key]) << "unet " << key;
  const bool sd2 = got.kind == "sd2";
  if (sd2) {  // heads of 64 channels per block
    ASSERT_TRUE(got.unet_cfg["attention_head_dim"].is_array());
    EXPECT_EQ(got.unet_cfg["attention_head_dim"].size(), unet["block_out_channels"].size());
  } else {
    EXPECT_EQ(got.unet_cfg["attention_head_dim"], 8);
  }
  EXPECT_EQ(got.unet_cfg["norm_num_groups"], 32);

  const json vae = read_json(dir + "/vae/config.json");
  for (const char* key : {"block_out_channels", "layers_per_block", "latent_channels",
                          "in_channels", "out_channels", "down_block_types", "up_block_types"})
    EXPECT_EQ(got.vae_cfg[key], vae[key]) << "vae " << key;
  EXPECT_DOUBLE_EQ(got.vae_cfg["scaling_factor"].get<double>(), 0.18215);

  const json text = read_json(dir + "/text_encoder/config.json");
  for (const char* key : {"hidden_size", "num_hidden_layers", "intermediate_size", "hidden_act",
                          "vocab_size", "max_position_embeddings", "layer_norm_eps"})
    EXPECT_EQ(got.text_cfg[key], text[key]) << "text_encoder " << key;
  // The extra OpenCLIP block is not mapped.
  const int text_layers = text["num_hidden_layers"].get<int>();
  EXPECT_FALSE(got.text.has("text_model.encoder.layers." + std::to_string(text_layers) +
                            ".layer_norm1.weight"));
  EXPECT_TRUE(got.text.has("text_model.encoder.layers." + std::to_string(text_layers - 1) +
                           ".self_attn.v_proj.bias"));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SingleFileRoundTrip,
                         ::testing::Values("tiny-sd1", "tiny-sd2", "demo-fashion"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

TEST(SingleFile, FromFp16VariantKeepsHalfPrecision) {
  SDPAL_REQUIRE_FIXTURES();
  // A folder holding only the fp16 variants (copied so the writer must fall back to them).
  TempDir tmp;
  const fs::path src = test::model_dir("tiny-sd2"), dst = tmp.file("folder");
  for (const std::string component : {"unet", "vae", "text_encoder"}) {
    fs::create_directories(dst / component);
    fs::copy_file(src / component / "config.json", dst / component / "config.json");
    const std::string stem = component == "text_encoder" ? "model" : "diffusion_pytorch_model";
    fs::copy_file(src / component / (stem + ".fp16.safetensors"),
                  dst / component / (stem + ".fp16.safetensors"));
  }
  const std::string path = tmp.file("half.safetensors");
  write_single_file(dst.string(), path);
  const Loaded got(path);
  const SafetensorsFile want((src / "text_encoder" / "model.fp16.safetensors").string());
  for (const TensorView& w : want.tensors()) {
    const TensorView* g = got.text.find(w.name);
    ASSERT_TRUE(g) << w.name;
    EXPECT_EQ(g->dtype, DType::F16);
    EXPECT_EQ(g->shape, w.shape);
    EXPECT_EQ(std::memcmp(g->data, w.data, w.nbytes), 0) << w.name;
  }
  EXPECT_EQ(got.text_cfg["torch_dtype"],
            read_json((src / "text_encoder" / "config.json").string())["torch_dtype"]);
}

TEST(SingleFile, UnrecognisedKeysGiveAClearError) {
  TempDir tmp;
  const std::string path = tmp.file("other.safetensors");
  const Tensor t = Tensor::zeros({4, 4});
  write_safetensors_f32(path, {{"encoder.layer.0.weight", &t}, {"head.bias", &t}});
  const std::string msg = error_of([&] { Loaded l(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.diffusion_model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("encoder.layer"), std::string::npos) << "should say what was found: " << msg;
  EXPECT_NE(msg.find("Supported"), std::string::npos) << msg;
}

TEST(SingleFile, SdxlIsRefusedByName) {
  TempDir tmp;
  const std::string path = tmp.file("sdxl.safetensors");
  const Tensor t = Tensor::zeros({4, 4});
  write_safetensors_f32(
      path, {{"model.diffusion_model.input_blocks.0.0.weight", &t},
             {"conditioner.embedders.0.transformer.text_model.final_layer_norm.weight", &t},
             {"first_stage_model.encoder.conv_in.weight", &t}});
  const std::string msg = error_of([&] { Loaded l(path); });
  EXPECT_NE(msg.find("SDXL"), std::string::npos) << msg;
}

TEST(SingleFile, UnknownTensorsInAComponentAreRefused) {
  SDPAL_REQUIRE_FIXTURES();
  TempDir tmp;
  const std::string good = tmp.file("good.safetensors"), bad = tmp.file("bad.safetensors");
  write_single_file(test::model_dir("tiny-sd1"), good);
  const SafetensorsFile f(good);
  std::vector<TensorToWrite> tensors;
  for (const TensorView& v : f.tensors()) tensors.push_back({v.name, v.dtype, v.shape, v.data});
  const Tensor extra = Tensor::zeros({8, 8});
  tensors.push_back(
      {"model.diffusion_model.label_emb.0.0.weight", DType::F32, extra.shape(), extra.data()});
  write_safetensors(bad, tensors, f.metadata());
  const std::string msg = error_of([&] { Loaded l(bad); });
  EXPECT_NE(msg.find("label_emb"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not supported"), std::string::npos) << msg;
}

TEST(SingleFile, PickleCheckpointsAreRefused) {
  TempDir tmp;
  const std::string ckpt = tmp.file("model.ckpt");
  std::ofstream(ckpt) << "anything";
  std::string msg = error_of([&] { Loaded l(ckpt); });
  EXPECT_NE(msg.find("pickle"), std::string::npos) << msg;
  EXPECT_NE(msg.find("execute code"), std::string::npos) << msg;
  EXPECT_NE(msg.find(".safetensors"), std::string::npos) << msg;

  // A torch zip archive renamed to .safetensors is recognised by its signature.
  const std::string disguised = tmp.file("model.safetensors");
  std::ofstream(disguised, std::ios::binary) << std::string("PK\x03\x04", 4) << "archive/data.pkl";
  msg = error_of([&] { refuse_pickle_checkpoint(disguised); });
  EXPECT_NE(msg.find("pickle"), std::string::npos) << msg;
}

// A minimal SD2-like file: just enough UNet / VAE keys to be recognised, and an OpenCLIP text tower
// of `blocks` blocks of width `width` (vocab 2 keeps it small).
void write_openclip_stub(const std::string& path, int blocks, int64_t width) {
  std::deque<Tensor> keep;
  std::vector<std::pair<std::string, const Tensor*>> tensors;
  auto add = [&](const std::string& name, Shape shape) {
    tensors.emplace_back(name, &keep.emplace_back(Tensor::zeros(std::move(shape))));
  };
  add("model.diffusion_model.input_blocks.1.0.in_layers.0.weight", {4});
  add("first_stage_model.encoder.down.0.block.0.norm1.weight", {4});
  const std::string m = "cond_stage_model.model.";
  add(m + "token_embedding.weight", {2, width});
  add(m + "positional_embedding", {77, width});
  add(m + "text_projection", {width, width});
  for (int n = 0; n < blocks; ++n) {
    const std::string b = m + "transformer.resblocks." + std::to_string(n) + ".";
    add(b + "ln_1.weight", {width});
    // Inference reads only the output size of the MLP; a 1-wide input keeps the file small.
    add(b + "mlp.c_fc.weight", {4 * width, 1});
  }
  write_safetensors_f32(path, tensors);
}

TEST(SingleFile, OpenClipUsesThePenultimateBlock) {
  TempDir tmp;
  struct Case {
    int blocks;
    int64_t width;
    int want_layers;
  };
  // Real OpenCLIP ViT-H: 24 blocks, SD2 uses 23. Converted from diffusers: 23 blocks, all used.
  for (const Case& c : {Case{24, 1024, 23}, Case{23, 1024, 23}, Case{4, 16, 3}}) {
    SCOPED_TRACE(std::to_string(c.blocks) + " blocks of width " + std::to_string(c.width));
    const std::string path = tmp.file("stub" + std::to_string(c.blocks) + ".safetensors");
    write_openclip_stub(path, c.blocks, c.width);
    WeightStore unet, vae, text;
    json text_cfg;
    std::string kind;
    load_single_file(path, unet, vae, text, nullptr, nullptr, &text_cfg, &kind);
    EXPECT_EQ(kind, "sd2");
    EXPECT_EQ(text_cfg["num_hidden_layers"], c.want_layers);
    EXPECT_EQ(text_cfg["hidden_size"], c.width);
    EXPECT_EQ(text_cfg["hidden_act"], "gelu");
    EXPECT_EQ(text_cfg["intermediate_size"], 4 * c.width);
    const std::string last = "text_model.encoder.layers." + std::to_string(c.want_layers - 1);
    EXPECT_TRUE(text.has(last + ".layer_norm1.weight"));
    EXPECT_FALSE(text.has("text_model.encoder.layers." + std::to_string(c.want_layers) +
                          ".layer_norm1.weight"));
    EXPECT_FALSE(text.has("text_projection"));
  }
}

TEST(SingleFileKeymap, NamesInvertEachOther) {
  // Spot checks of both directions on names the fixtures do not contain.
  EXPECT_EQ(unet_key_to_diffusers("input_blocks.4.1.proj_in.weight", 2),
            "down_blocks.1.attentions.0.proj_in.weight");
  EXPECT_EQ(unet_key_to_original("down_blocks.1.attentions.0.proj_in.weight", 2, {}),
            "input_blocks.4.1.proj_in.weight");
  EXPECT_EQ(unet_key_to_diffusers("output_blocks.8.2.conv.bias", 2),
            "up_blocks.2.upsamplers.0.conv.bias");
  EXPECT_EQ(unet_key_to_diffusers("input_blocks.1.0.in_layers.9.weight", 2), std::nullopt);
  EXPECT_EQ(unet_key_to_diffusers("label_emb.0.0.weight", 2), std::nullopt);
  EXPECT_EQ(vae_key_to_diffusers("decoder.up.3.upsample.conv.weight", 4),
            "decoder.up_blocks.0.upsamplers.0.conv.weight");
  EXPECT_EQ(vae_key_to_original("encoder.mid_block.attentions.0.to_out.0.weight", 4),
            "encoder.mid.attn_1.proj_out.weight");
  EXPECT_EQ(clip_key_to_diffusers("embeddings.token_embedding.weight"),
            "text_model.embeddings.token_embedding.weight");
  EXPECT_EQ(openclip_key_to_diffusers("transformer.resblocks.22.mlp.c_proj.bias"),
            "text_model.encoder.layers.22.mlp.fc2.bias");
  EXPECT_EQ(openclip_key_to_original("text_model.encoder.layers.22.self_attn.q_proj.weight"),
            std::nullopt);
}

}  // namespace
}  // namespace sdpal
