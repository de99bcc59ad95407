#include "models/random_model.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/safetensors.h"
#include "models/clip_text.h"
#include "models/config.h"
#include "models/unet.h"
#include "models/vae.h"

namespace sdpal {

namespace fs = std::filesystem;

// ---- Tensor discovery -----------------------------------------------------------------------

namespace {

// Builds a model on a store that invents every tensor it is asked for (shape only, no data) and
// returns the complete list. Every invented tensor must be consumed by the model.
std::vector<TensorSpec> discover(WeightStore& ws, const std::function<void(WeightStore&)>& build) {
  ws.set_synthesizer([](const std::string& name, const Shape& shape) {
    TensorView v;  // F32 without data: constructing a model never reads F32 weights
    v.name = name;
    v.shape = shape;
    return v;
  });
  build(ws);
  const auto unused = ws.unused();
  SDPAL_CHECK(unused.empty(), ws.label() + ": tensor '" + (unused.empty() ? "" : unused[0]) +
                                  "' was declared but not used by the model");
  std::vector<TensorSpec> specs;
  for (const std::string& name : ws.names()) specs.push_back({name, ws.find(name)->shape});
  return specs;
}

}  // namespace

std::vector<TensorSpec> unet_tensor_specs(const UNetConfig& cfg) {
  WeightStore ws("unet");
  return discover(ws, [&](WeightStore& s) { UNet model(s, cfg); });
}

std::vector<TensorSpec> vae_tensor_specs(const VaeConfig& cfg) {
  WeightStore ws("vae");
  // The Vae builds its encoder only when the store has one; declare its first tensor (the model
  // checks this shape against the config).
  TensorView first;
  first.name = "encoder.conv_in.weight";
  first.shape = {cfg.block_out_channels.at(0), cfg.in_channels, 3, 3};
  ws.add_view(first.name, first);
  return discover(ws, [&](WeightStore& s) { Vae model(s, cfg, /*with_encoder=*/true); });
}

std::vector<TensorSpec> clip_text_tensor_specs(const ClipTextConfig& cfg) {
  WeightStore ws("text_encoder");
  return discover(ws, [&](WeightStore& s) { ClipTextModel model(s, cfg); });
}

int64_t parameter_count(const std::vector<TensorSpec>& specs) {
  int64_t n = 0;
  for (const auto& s : specs) n += shape_numel(s.shape);
  return n;
}

// ---- Initial values ---------------------------------------------------------------------------

namespace {

constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ULL;

// splitmix64's output function: element i of a stream is mix(stream + (i + 1) * gamma), a
// counter-based generator, so any element range can be produced independently.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

float fan_in_bound(const Shape& weight) {
  int64_t fan_in = 1;
  for (size_t i = 1; i < weight.size(); ++i) fan_in *= weight[i];
  return 1.0f / std::sqrt(static_cast<float>(fan_in));
}

}  // namespace

uint64_t tensor_stream(uint64_t seed, const std::string& name) {
  uint64_t h = 0xCBF29CE484222325ULL;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 0x100000001B3ULL;
  return mix64(mix64(seed * kGamma + 1) ^ h);
}

InitRule initial_value_rule(const TensorSpec& spec, const std::vector<TensorSpec>& component) {
  const std::string& n = spec.name;
  const size_t rank = spec.shape.size();
  if (ends_with(n, "token_embedding.weight") || ends_with(n, "position_embedding.weight"))
    return {InitRule::kNormal, 0.02f};
  if (ends_with(n, ".weight") && rank >= 2) return {InitRule::kUniform, fan_in_bound(spec.shape)};
  if (ends_with(n, ".weight") && rank == 1) return {InitRule::kConstant, 1.0f};  // norm scale
  if (ends_with(n, ".bias") && rank == 1) {
    const std::string w = n.substr(0, n.size() - 4) + "weight";
    auto it = std::find_if(component.begin(), component.end(),
                           [&](const TensorSpec& s) { return s.name == w; });
    if (it != component.end() && it->shape.size() >= 2)
      return {InitRule::kUniform, fan_in_bound(it->shape)};  // Linear / Conv bias
    return {InitRule::kConstant, 0.0f};                      // norm shift
  }
  fail("random model: no initialiser for tensor '" + n + "' of shape " + shape_str(spec.shape));
}

void fill_initial_values(const InitRule& rule, uint64_t stream, int64_t first, int64_t n,
                         float* out) {
  constexpr float k24 = 1.0f / 16777216.0f;
  switch (rule.kind) {
    case InitRule::kConstant:
      std::fill_n(out, n, rule.a);
      break;
    case InitRule::kUniform:
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t r = mix64(stream + static_cast<uint64_t>(first + i + 1) * kGamma);
        out[i] = (static_cast<float>(r >> 40) * k24 * 2.0f - 1.0f) * rule.a;
      }
      break;
    case InitRule::kNormal:
      for (int64_t i = 0; i < n; ++i) {  // Box-Muller on the two halves of one draw
        const uint64_t r = mix64(stream + static_cast<uint64_t>(first + i + 1) * kGamma);
        const float u1 = (static_cast<float>(r >> 40) + 0.5f) * k24;
        const float u2 = static_cast<float>(r & 0xFFFFFF) * k24;
        out[i] = std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2) * rule.a;
      }
      break;
  }
}

// ---- Configs ----------------------------------------------------------------------------------

namespace {

// runwayml/stable-diffusion-v1-5, with every key diffusers 0.24 / transformers 4.31 write.
constexpr const char* kSd15Unet = R"({
  "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.24.0", "act_fn": "silu",
  "addition_embed_type": null, "addition_embed_type_num_heads": 64,
  "addition_time_embed_dim": null, "attention_head_dim": 8, "attention_type": "default",
  "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false,
  "class_embed_type": null, "class_embeddings_concat": false, "conv_in_kernel": 3,
  "conv_out_kernel": 3, "cross_attention_dim": 768, "cross_attention_norm": null,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                       "DownBlock2D"],
  "downsample_padding": 1, "dropout": 0.0, "dual_cross_attention": false,
  "encoder_hid_dim": null, "encoder_hid_dim_type": null, "flip_sin_to_cos": true,
  "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
  "mid_block_only_cross_attention": null, "mid_block_scale_factor": 1,
  "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32,
  "num_attention_heads": null, "num_class_embeds": null, "only_cross_attention": false,
  "out_channels": 4, "projection_class_embeddings_input_dim": null,
  "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": false,
  "resnet_time_scale_shift": "default", "reverse_transformer_layers_per_block": null,
  "sample_size": 64, "time_cond_proj_dim": null, "time_embedding_act_fn": null,
  "time_embedding_dim": null, "time_embedding_type": "positional", "timestep_post_act": null,
  "transformer_layers_per_block": 1,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                     "CrossAttnUpBlock2D"],
  "upcast_attention": false, "use_linear_projection": false
})";

constexpr const char* kSd15Vae = R"({
  "_class_name": "AutoencoderKL", "_diffusers_version": "0.24.0", "act_fn": "silu",
  "block_out_channels": [128, 256, 512, 512],
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D",
                       "DownEncoderBlock2D"],
  "force_upcast": true, "in_channels": 3, "latent_channels": 4, "layers_per_block": 2,
  "norm_num_groups": 32, "out_channels": 3, "sample_size": 512, "scaling_factor": 0.18215,
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D",
                     "UpDecoderBlock2D"]
})";

// openai/clip-vit-large-patch14, text tower.
constexpr const char* kSd15TextEncoder = R"({
  "_name_or_path": "openai/clip-vit-large-patch14", "architectures": ["CLIPTextModel"],
  "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2,
  "hidden_act": "quick_gelu", "hidden_size": 768, "initializer_factor": 1.0,
  "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
  "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 12,
  "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768, "torch_dtype": "float32",
  "transformers_version": "4.31.0", "vocab_size": 49408
})";

constexpr const char* kSd15Scheduler = R"({
  "_class_name": "PNDMScheduler", "_diffusers_version": "0.24.0", "beta_end": 0.012,
  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
  "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": false,
  "skip_prk_steps": true, "steps_offset": 1, "timestep_spacing": "leading",
  "trained_betas": null
})";

constexpr const char* kSd21Scheduler = R"({
  "_class_name": "DDIMScheduler", "_diffusers_version": "0.24.0", "beta_end": 0.012,
  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
  "clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995, "num_train_timesteps": 1000,
  "prediction_type": "v_prediction", "rescale_betas_zero_snr": false, "sample_max_value": 1.0,
  "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "thresholding": false,
  "timestep_spacing": "leading", "trained_betas": null
})";

constexpr const char* kModelIndex = R"({
  "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.24.0",
  "feature_extractor": [null, null], "image_encoder": [null, null],
  "requires_safety_checker": false, "safety_checker": [null, null],
  "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
  "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
  "vae": ["diffusers", "AutoencoderKL"]
})";

// stabilityai/stable-diffusion-xl-base-1.0 (diffusers 0.24 keys): three levels, transformer depths
// 1/2/10, 64-wide heads, 2048-wide context (both text encoders), text_time added conditions.
constexpr const char* kSdxlUnet = R"({
  "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.24.0", "act_fn": "silu",
  "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
  "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "attention_type": "default",
  "block_out_channels": [320, 640, 1280], "center_input_sample": false,
  "class_embed_type": null, "class_embeddings_concat": false, "conv_in_kernel": 3,
  "conv_out_kernel": 3, "cross_attention_dim": 2048, "cross_attention_norm": null,
  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  "downsample_padding": 1, "dropout": 0.0, "dual_cross_attention": false,
  "encoder_hid_dim": null, "encoder_hid_dim_type": null, "flip_sin_to_cos": true,
  "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
  "mid_block_only_cross_attention": null, "mid_block_scale_factor": 1,
  "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32,
  "num_attention_heads": null, "num_class_embeds": null, "only_cross_attention": false,
  "out_channels": 4, "projection_class_embeddings_input_dim": 2816,
  "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": false,
  "resnet_time_scale_shift": "default", "reverse_transformer_layers_per_block": null,
  "sample_size": 128, "time_cond_proj_dim": null, "time_embedding_act_fn": null,
  "time_embedding_dim": null, "time_embedding_type": "positional", "timestep_post_act": null,
  "transformer_layers_per_block": [1, 2, 10],
  "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  "upcast_attention": null, "use_linear_projection": true
})";
// OpenCLIP ViT-bigG text tower as CLIPTextModelWithProjection.
constexpr const char* kSdxlTextEncoder2 = R"({
  "architectures": ["CLIPTextModelWithProjection"], "attention_dropout": 0.0,
  "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "hidden_act": "gelu",
  "hidden_size": 1280, "initializer_factor": 1.0, "initializer_range": 0.02,
  "intermediate_size": 5120, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
  "model_type": "clip_text_model", "num_attention_heads": 20, "num_hidden_layers": 32,
  "pad_token_id": 1, "projection_dim": 1280, "torch_dtype": "float16",
  "transformers_version": "4.31.0", "vocab_size": 49408
})";
constexpr const char* kSdxlScheduler = R"({
  "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.24.0", "beta_end": 0.012,
  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
  "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
  "sample_max_value": 1.0, "set_alpha_to_one": false, "skip_prk_steps": true,
  "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": null,
  "use_karras_sigmas": false
})";
constexpr const char* kSdxlModelIndex = R"({
  "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.24.0",
  "feature_extractor": [null, null], "force_zeros_for_empty_prompt": true,
  "image_encoder": [null, null], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
  "text_encoder": ["transformers", "CLIPTextModel"],
  "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
  "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
  "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]
})";

}  // namespace

const std::vector<std::string>& builtin_archs() {
  static const std::vector<std::string> archs{"sd15", "sd21", "sdxl"};
  return archs;
}

ModelConfigs builtin_model_configs(const std::string& arch) {
  ModelConfigs c;
  c.model_index = nlohmann::json::parse(kModelIndex);
  c.unet = nlohmann::json::parse(kSd15Unet);
  c.vae = nlohmann::json::parse(kSd15Vae);
  c.text_encoder = nlohmann::json::parse(kSd15TextEncoder);
  c.scheduler = nlohmann::json::parse(kSd15Scheduler);
  if (arch == "sd15") return c;
  if (arch == "sd21") {
    // stabilityai/stable-diffusion-2-1: 64-wide heads, linear projections, OpenCLIP ViT-H text
    // encoder (23 of its 24 layers, as diffusers converts it), 768 px, v-prediction.
    c.unet["attention_head_dim"] = {5, 10, 20, 20};
    c.unet["cross_attention_dim"] = 1024;
    c.unet["use_linear_projection"] = true;
    c.unet["upcast_attention"] = true;
    c.unet["sample_size"] = 96;
    c.vae["sample_size"] = 768;
    c.text_encoder["_name_or_path"] = "stabilityai/stable-diffusion-2-1";
    c.text_encoder["hidden_act"] = "gelu";
    c.text_encoder["hidden_size"] = 1024;
    c.text_encoder["intermediate_size"] = 4096;
    c.text_encoder["num_attention_heads"] = 16;
    c.text_encoder["num_hidden_layers"] = 23;
    c.text_encoder["projection_dim"] = 512;
    c.scheduler = nlohmann::json::parse(kSd21Scheduler);
    c.model_index["scheduler"] = {"diffusers", "DDIMScheduler"};
    return c;
  }
  if (arch == "sdxl") {
    // The VAE is SD's with SDXL's scaling factor; text_encoder is CLIP ViT-L as in SD 1.5.
    c.model_index = nlohmann::json::parse(kSdxlModelIndex);
    c.unet = nlohmann::json::parse(kSdxlUnet);
    c.vae["sample_size"] = 1024;
    c.vae["scaling_factor"] = 0.13025;
    c.text_encoder_2 = nlohmann::json::parse(kSdxlTextEncoder2);
    c.scheduler = nlohmann::json::parse(kSdxlScheduler);
    return c;
  }
  std::string known;
  for (const auto& a : builtin_archs()) known += (known.empty() ? "" : ", ") + a;
  fail("unknown architecture '" + arch + "' (known: " + known + ")");
}

ModelConfigs model_configs_from_folder(const std::string& dir) {
  ModelConfigs c;
  c.model_index = read_json_file(dir + "/model_index.json");
  c.unet = read_json_file(dir + "/unet/config.json");
  c.vae = read_json_file(dir + "/vae/config.json");
  c.text_encoder = read_json_file(dir + "/text_encoder/config.json");
  c.scheduler = read_json_file(dir + "/scheduler/scheduler_config.json");
  if (fs::exists(dir + "/text_encoder_2/config.json"))
    c.text_encoder_2 = read_json_file(dir + "/text_encoder_2/config.json");
  return c;
}

// ---- Writing ----------------------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void write_json(const fs::path& path, const nlohmann::json& j) {
  const std::string text = j.dump(2) + "\n";
  write_file_atomic(path.string(), [&](std::FILE* f) {
    if (std::fwrite(text.data(), 1, text.size(), f) != text.size())
      fail("cannot write " + path.string());
  });
}

// Generates all tensors of a component in parallel and writes them as one safetensors file.
int64_t write_component(const fs::path& path, const std::vector<TensorSpec>& specs, DType dtype,
                        uint64_t seed) {
  const size_t es = dtype_size(dtype);
  std::vector<size_t> offset(specs.size());
  size_t total = 0;
  for (size_t t = 0; t < specs.size(); ++t) {
    offset[t] = total;
    total += (shape_numel(specs[t].shape) * es + 63) / 64 * 64;
  }
  // Uninitialised on purpose: the pages are first touched by the generating threads.
  std::unique_ptr<uint8_t[]> buffer(new uint8_t[std::max<size_t>(total, 1)]);

  struct Piece {
    size_t tensor;
    int64_t first, n;
  };
  constexpr int64_t kPiece = 1 << 16;
  std::vector<Piece> pieces;
  std::vector<InitRule> rules;
  std::vector<uint64_t> streams;
  for (size_t t = 0; t < specs.size(); ++t) {
    rules.push_back(initial_value_rule(specs[t], specs));
    streams.push_back(tensor_stream(seed, specs[t].name));
    const int64_t n = shape_numel(specs[t].shape);
    for (int64_t s = 0; s < n; s += kPiece) pieces.push_back({t, s, std::min(kPiece, n - s)});
  }
#pragma omp parallel
  {
    std::vector<float> f32(kPiece);
#pragma omp for schedule(dynamic, 4)
    for (size_t i = 0; i < pieces.size(); ++i) {
      const Piece& p = pieces[i];
      uint8_t* dst = buffer.get() + offset[p.tensor] + p.first * es;
      float* values = dtype == DType::F32 ? reinterpret_cast<float*>(dst) : f32.data();
      fill_initial_values(rules[p.tensor], streams[p.tensor], p.first, p.n, values);
      if (dtype == DType::F16) convert_f32_to_f16(values, reinterpret_cast<uint16_t*>(dst), p.n);
    }
  }
  std::vector<TensorToWrite> out;
  for (size_t t = 0; t < specs.size(); ++t)
    out.push_back({specs[t].name, dtype, specs[t].shape, buffer.get() + offset[t]});
  write_safetensors(path.string(), out, {{"format", "pt"}});
  int64_t bytes = 0;
  for (const auto& s : specs) bytes += shape_numel(s.shape) * es;
  return bytes;
}

bool is_nonempty_dir(const fs::path& p) {
  return fs::is_directory(p) && fs::directory_iterator(p) != fs::directory_iterator();
}

}  // namespace

RandomModelSummary write_random_model(const ModelConfigs& configs, const std::string& out_dir,
                                      const RandomModelOptions& opt) {
  auto log = [&](const std::string& line) {
    if (opt.log) opt.log(line);
  };
  SDPAL_CHECK(opt.dtype == DType::F16 || opt.dtype == DType::F32,
              "random model: dtype must be F16 or F32");
  const UNetConfig unet_cfg = UNetConfig::from_json(configs.unet, "unet/config.json");
  const VaeConfig vae_cfg = VaeConfig::from_json(configs.vae, "vae/config.json");
  const ClipTextConfig te_cfg =
      ClipTextConfig::from_json(configs.text_encoder, "text_encoder/config.json");
  const bool sdxl = !configs.text_encoder_2.is_null();
  const ClipTextConfig te2_cfg =
      sdxl ? ClipTextConfig::from_json(configs.text_encoder_2, "text_encoder_2/config.json")
           : ClipTextConfig{};
  const fs::path tok_2(opt.tokenizer_2_dir);
  if (sdxl && (opt.tokenizer_2_dir.empty() || !fs::exists(tok_2 / "vocab.json") ||
               !fs::exists(tok_2 / "merges.txt")))
    fail("random model: SDXL needs tokenizer_2 files (vocab.json, merges.txt) in '" +
         opt.tokenizer_2_dir +
         "'; the real ones are in ../shared/fixtures/tiny-sdxl/model/tokenizer_2 beside the "
         "repository");

  const fs::path tok(opt.tokenizer_dir);
  if (opt.tokenizer_dir.empty() || !fs::exists(tok / "vocab.json") ||
      !fs::exists(tok / "merges.txt"))
    fail("random model: no CLIP tokenizer files (vocab.json, merges.txt) in '" + opt.tokenizer_dir +
         "'; the real ones are in ../shared/fixtures/tiny-sd1/model/tokenizer beside the "
         "repository (pass the folder with --tokenizer)");

  const fs::path out = fs::absolute(fs::path(out_dir)).lexically_normal();
  const fs::path target = out.filename().empty() ? out.parent_path() : out;
  if (fs::exists(target) && !fs::is_directory(target))
    fail("random model: " + target.string() + " exists and is not a folder");
  if (is_nonempty_dir(target) && !opt.force)
    fail("random model: " + target.string() + " is not empty (use --force to replace it)");
  fs::create_directories(target.parent_path());
  const fs::path tmp = temp_folder_for(target);
  fs::remove_all(tmp);

  RandomModelSummary sum;
  try {
    for (const char* sub : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"})
      fs::create_directories(tmp / sub);
    if (sdxl)
      for (const char* sub : {"text_encoder_2", "tokenizer_2"}) fs::create_directories(tmp / sub);
    nlohmann::json te_json = configs.text_encoder;
    te_json["torch_dtype"] = opt.dtype == DType::F16 ? "float16" : "float32";
    write_json(tmp / "model_index.json", configs.model_index);
    write_json(tmp / "unet" / "config.json", configs.unet);
    write_json(tmp / "vae" / "config.json", configs.vae);
    write_json(tmp / "text_encoder" / "config.json", te_json);
    write_json(tmp / "scheduler" / "scheduler_config.json", configs.scheduler);
    if (sdxl) {
      nlohmann::json te2_json = configs.text_encoder_2;
      te2_json["torch_dtype"] = te_json["torch_dtype"];
      write_json(tmp / "text_encoder_2" / "config.json", te2_json);
    }
    auto copy_tokenizer = [&](const fs::path& from, const char* sub) {
      for (const auto& e : fs::directory_iterator(from)) {
        if (!e.is_regular_file()) continue;
        const fs::path dst = tmp / sub / e.path().filename();
        fs::copy_file(e.path(), dst);
        fs::permissions(dst, fs::perms::owner_write, fs::perm_options::add);
      }
    };
    copy_tokenizer(tok, "tokenizer");
    if (sdxl) copy_tokenizer(tok_2, "tokenizer_2");

    struct Part {
      const char* label;
      fs::path file;
      std::vector<TensorSpec> specs;
      int64_t* params;
    };
    std::vector<Part> parts = {
        {"unet", tmp / "unet" / "diffusion_pytorch_model.safetensors", unet_tensor_specs(unet_cfg),
         &sum.unet_params},
        {"vae", tmp / "vae" / "diffusion_pytorch_model.safetensors", vae_tensor_specs(vae_cfg),
         &sum.vae_params},
        {"text_encoder", tmp / "text_encoder" / "model.safetensors", clip_text_tensor_specs(te_cfg),
         &sum.text_encoder_params},
    };
    if (sdxl)
      parts.push_back({"text_encoder_2", tmp / "text_encoder_2" / "model.safetensors",
                       clip_text_tensor_specs(te2_cfg), &sum.text_encoder_2_params});
    for (const Part& p : parts) {
      const auto t0 = Clock::now();
      *p.params = parameter_count(p.specs);
      const int64_t bytes = write_component(p.file, p.specs, opt.dtype, opt.seed);
      sum.bytes += bytes;
      char line[200];
      std::snprintf(line, sizeof line, "%-14s %5zu tensors %13lld params %8.1f MB  %.1f s", p.label,
                    p.specs.size(), static_cast<long long>(*p.params), bytes / 1e6,
                    seconds_since(t0));
      log(line);
    }
    replace_folder_atomic(tmp, target);  // an existing target (empty, or --force) is removed
  } catch (const fs::filesystem_error& e) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    fail("random model: cannot write " + target.string() + ": " + e.what());
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
  return sum;
}

}  // namespace sdpal
