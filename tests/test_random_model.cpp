// Random-weight model writer and analytic FLOP counts.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "models/clip_text.h"
#include "models/config.h"
#include "models/flops.h"
#include "models/random_model.h"
#include "models/unet.h"
#include "models/vae.h"
#include "pipeline/generate.h"
#include "support/fixtures.h"

namespace sdpal {
namespace {

namespace fs = std::filesystem;

std::map<std::string, Shape> as_map(const std::vector<TensorSpec>& specs) {
  std::map<std::string, Shape> m;
  for (const auto& s : specs) m[s.name] = s.shape;
  return m;
}

std::map<std::string, Shape> file_tensors(const std::string& path) {
  SafetensorsFile f(path);
  std::map<std::string, Shape> m;
  for (const auto& v : f.tensors()) m[v.name] = v.shape;
  return m;
}

bool all_finite(const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(t[i])) return false;
  return true;
}

// A scratch folder removed at the end of the test.
struct TempDir {
  fs::path path =
      fs::temp_directory_path() / ("sdpal-test-random-" + std::to_string(::getpid()) + "-" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TempDir() { fs::remove_all(path); }
  ~TempDir() { fs::remove_all(path); }
};

TEST(RandomModel, DiscoveredTensorsMatchTheDiffusersFilesOfTheFixture) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string dir = test::model_dir("tiny-sd1");
  const ModelConfigs c = model_configs_from_folder(dir);
  EXPECT_EQ(as_map(unet_tensor_specs(UNetConfig::from_json(c.unet, "unet"))),
            file_tensors(dir + "/unet/diffusion_pytorch_model.safetensors"));
  EXPECT_EQ(as_map(vae_tensor_specs(VaeConfig::from_json(c.vae, "vae"))),
            file_tensors(dir + "/vae/diffusion_pytorch_model.safetensors"));
  EXPECT_EQ(as_map(clip_text_tensor_specs(ClipTextConfig::from_json(c.text_encoder, "te"))),
            file_tensors(dir + "/text_encoder/model.safetensors"));
}

TEST(RandomModel, ParameterCountsOfTheRealArchitectures) {
  // Published sizes of the diffusers / transformers components, counted without allocating.
  const ModelConfigs sd15 = builtin_model_configs("sd15");
  EXPECT_EQ(parameter_count(unet_tensor_specs(UNetConfig::from_json(sd15.unet, "unet"))),
            859520964);
  EXPECT_EQ(parameter_count(vae_tensor_specs(VaeConfig::from_json(sd15.vae, "vae"))), 83653863);
  EXPECT_EQ(
      parameter_count(clip_text_tensor_specs(ClipTextConfig::from_json(sd15.text_encoder, "te"))),
      123060480);
  const ModelConfigs sd21 = builtin_model_configs("sd21");
  EXPECT_EQ(parameter_count(unet_tensor_specs(UNetConfig::from_json(sd21.unet, "unet"))),
            865910724);
  EXPECT_EQ(
      parameter_count(clip_text_tensor_specs(ClipTextConfig::from_json(sd21.text_encoder, "te"))),
      340387840);
  // stabilityai/stable-diffusion-xl-base-1.0: UNet 2.567 B, CLIP ViT-L 123 M, OpenCLIP bigG with
  // its projection 695 M; the VAE is SD's.
  const ModelConfigs sdxl = builtin_model_configs("sdxl");
  EXPECT_EQ(parameter_count(unet_tensor_specs(UNetConfig::from_json(sdxl.unet, "unet"))),
            2567463684);
  EXPECT_EQ(parameter_count(vae_tensor_specs(VaeConfig::from_json(sdxl.vae, "vae"))), 83653863);
  EXPECT_EQ(
      parameter_count(clip_text_tensor_specs(ClipTextConfig::from_json(sdxl.text_encoder, "te"))),
      123060480);
  EXPECT_EQ(parameter_count(
                clip_text_tensor_specs(ClipTextConfig::from_json(sdxl.text_encoder_2, "te2"))),
            694659840);
  EXPECT_EQ(sdxl.model_index["force_zeros_for_empty_prompt"], true);
  EXPECT_THROW(builtin_model_configs("sdxl-turbo"), Error);
}

TEST(RandomModel, DiscoveredTensorsMatchTheSdxlFixture) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string dir = test::model_dir("tiny-sdxl");
  const ModelConfigs c = model_configs_from_folder(dir);
  ASSERT_FALSE(c.text_encoder_2.is_null());
  EXPECT_EQ(as_map(unet_tensor_specs(UNetConfig::from_json(c.unet, "unet"))),
            file_tensors(dir + "/unet/diffusion_pytorch_model.safetensors"));
  EXPECT_EQ(as_map(clip_text_tensor_specs(ClipTextConfig::from_json(c.text_encoder_2, "te2"))),
            file_tensors(dir + "/text_encoder_2/model.safetensors"));
}

// The SDXL base architecture with every width cut down (same block structure, transformer depths
// 1/2/3 instead of 1/2/10): written, loaded as a model and run for one sampling step.
TEST(RandomModel, SmallSdxlFolderGeneratesOneStep) {
  SDPAL_REQUIRE_FIXTURES();
  TempDir tmp;
  ModelConfigs c = builtin_model_configs("sdxl");
  c.unet["block_out_channels"] = {32, 64, 64};
  c.unet["attention_head_dim"] = {1, 2, 4};
  c.unet["transformer_layers_per_block"] = {1, 2, 3};
  c.unet["norm_num_groups"] = 8;
  c.unet["cross_attention_dim"] = 64;  // 32 + 32: both text encoders
  c.unet["addition_time_embed_dim"] = 8;
  c.unet["projection_class_embeddings_input_dim"] = 16 + 6 * 8;
  c.unet["sample_size"] = 8;
  c.vae["block_out_channels"] = {8, 16, 16, 16};
  c.vae["norm_num_groups"] = 4;
  for (nlohmann::json* te : {&c.text_encoder, &c.text_encoder_2}) {
    (*te)["hidden_size"] = 32;
    (*te)["intermediate_size"] = 64;
    (*te)["num_attention_heads"] = 2;
    (*te)["num_hidden_layers"] = 3;
  }
  c.text_encoder_2["projection_dim"] = 16;
  const std::string fx = test::model_dir("tiny-sdxl");
  RandomModelOptions opt;
  opt.tokenizer_dir = fx + "/tokenizer";
  opt.tokenizer_2_dir = fx + "/tokenizer_2";
  opt.dtype = DType::F32;
  const RandomModelSummary s = write_random_model(c, tmp.path.string(), opt);
  EXPECT_GT(s.text_encoder_2_params, s.text_encoder_params);  // + text_projection
  EXPECT_EQ(s.bytes,
            4 * (s.unet_params + s.vae_params + s.text_encoder_params + s.text_encoder_2_params));
  const auto m = StableDiffusion::load(tmp.path.string());
  EXPECT_EQ(m->kind, "sdxl");
  EXPECT_EQ(default_image_size(*m), 64);
  GenerateParams p;
  p.prompts = {"a red cube"};
  p.width = p.height = 64;
  p.steps = 1;
  p.sampler = "euler";
  const GenerateResult r = generate(*m, p);
  EXPECT_EQ(r.unet_calls, 1);
  EXPECT_EQ(r.image01.shape(), (Shape{1, 3, 64, 64}));
  EXPECT_TRUE(all_finite(r.latents));
  RandomModelOptions no_tok2 = opt;
  no_tok2.tokenizer_2_dir.clear();
  no_tok2.force = true;
  EXPECT_THROW(write_random_model(c, tmp.path.string(), no_tok2), Error);
}

TEST(RandomModel, InitialValuesFollowPyTorchDefaults) {
  const std::vector<TensorSpec> comp{{"conv.weight", {64, 32, 3, 3}},
                                     {"conv.bias", {64}},
                                     {"norm.weight", {64}},
                                     {"norm.bias", {64}},
                                     {"emb.token_embedding.weight", {1000, 64}}};
  const int64_t n = 64 * 32 * 9;
  const float bound = 1.0f / std::sqrt(32.0f * 9.0f);
  const InitRule w = initial_value_rule(comp[0], comp);
  ASSERT_EQ(w.kind, InitRule::kUniform);
  EXPECT_FLOAT_EQ(w.a, bound);
  const InitRule b = initial_value_rule(comp[1], comp);
  EXPECT_EQ(b.kind, InitRule::kUniform);
  EXPECT_FLOAT_EQ(b.a, bound);  // a bias takes its weight's fan-in
  EXPECT_EQ(initial_value_rule(comp[2], comp).kind, InitRule::kConstant);
  EXPECT_EQ(initial_value_rule(comp[2], comp).a, 1.0f);
  EXPECT_EQ(initial_value_rule(comp[3], comp).a, 0.0f);
  const InitRule e = initial_value_rule(comp[4], comp);
  EXPECT_EQ(e.kind, InitRule::kNormal);

  std::vector<float> v(n);
  fill_initial_values(w, tensor_stream(7, comp[0].name), 0, n, v.data());
  double mean = 0, sq = 0;
  for (float x : v) {
    EXPECT_LE(std::fabs(x), bound);
    mean += x;
    sq += double(x) * x;
  }
  mean /= n;
  const double sd = std::sqrt(sq / n - mean * mean);
  EXPECT_NEAR(mean, 0, 0.05 * bound);
  EXPECT_NEAR(sd, bound / std::sqrt(3.0), 0.03 * bound);  // uniform(-a, a) has sd a/sqrt(3)

  // Any element range reproduces the same values (thread-count independence).
  std::vector<float> part(100);
  fill_initial_values(w, tensor_stream(7, comp[0].name), 1000, 100, part.data());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(part[i], v[1000 + i]);
  // Other seeds and names give other values.
  fill_initial_values(w, tensor_stream(8, comp[0].name), 1000, 100, part.data());
  EXPECT_NE(part[0], v[1000]);

  std::vector<float> g(64000);
  fill_initial_values(e, tensor_stream(7, comp[4].name), 0, 64000, g.data());
  double gs = 0, gm = 0;
  for (float x : g) {
    gm += x;
    gs += double(x) * x;
  }
  gm /= g.size();
  EXPECT_NEAR(gm, 0, 0.001);
  EXPECT_NEAR(std::sqrt(gs / g.size() - gm * gm), 0.02, 0.001);
}

void check_folder_runs(const fs::path& dir, DType dtype) {
  const ModelConfigs c = model_configs_from_folder(dir.string());
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(dir / "tokenizer" / f)) << f;

  WeightStore te_ws("text_encoder");
  te_ws.add_file((dir / "text_encoder/model.safetensors").string());
  EXPECT_EQ(te_ws.count_dtype(dtype), static_cast<int64_t>(te_ws.names().size()));
  ClipTextModel te(te_ws, ClipTextConfig::from_json(c.text_encoder, "te"));
  EXPECT_TRUE(te_ws.unused().empty());
  std::vector<int> ids(77, 49407);
  ids[0] = 49406;
  ids[1] = 320;
  const ClipTextOutput text = te.forward({ids, ids});
  EXPECT_TRUE(all_finite(text.hidden));

  WeightStore unet_ws("unet");
  unet_ws.add_file((dir / "unet/diffusion_pytorch_model.safetensors").string());
  const UNetConfig ucfg = UNetConfig::from_json(c.unet, "unet");
  UNet unet(unet_ws, ucfg);
  EXPECT_TRUE(unet_ws.unused().empty());
  Tensor sample({2, 4, 16, 16});
  for (int64_t i = 0; i < sample.numel(); ++i) sample[i] = std::sin(0.37f * i);
  const Tensor eps = unet.forward(sample, {500}, text.hidden);
  EXPECT_EQ(eps.shape(), sample.shape());
  EXPECT_TRUE(all_finite(eps));
  double sq = 0;
  for (int64_t i = 0; i < eps.numel(); ++i) sq += double(eps[i]) * eps[i];
  EXPECT_GT(sq, 0);  // random everywhere: the output is not zero

  WeightStore vae_ws("vae");
  vae_ws.add_file((dir / "vae/diffusion_pytorch_model.safetensors").string());
  Vae vae(vae_ws, VaeConfig::from_json(c.vae, "vae"));
  EXPECT_TRUE(vae.has_encoder());
  EXPECT_TRUE(vae_ws.unused().empty());
  const Tensor image = vae.decode(sample);
  EXPECT_EQ(image.shape(), (Shape{2, 3, 128, 128}));
  EXPECT_TRUE(all_finite(image));
  EXPECT_TRUE(all_finite(vae.encode(image).mean));
}

TEST(RandomModel, WrittenTinyFolderLoadsAndRuns) {
  SDPAL_REQUIRE_FIXTURES();
  TempDir tmp;
  const std::string src = test::model_dir("tiny-sd1");
  const ModelConfigs c = model_configs_from_folder(src);
  RandomModelOptions opt;
  opt.tokenizer_dir = src + "/tokenizer";
  opt.seed = 3;
  const RandomModelSummary s = write_random_model(c, tmp.path.string(), opt);
  EXPECT_EQ(s.unet_params,
            parameter_count(unet_tensor_specs(UNetConfig::from_json(c.unet, "unet"))));
  EXPECT_EQ(s.bytes, 2 * (s.unet_params + s.vae_params + s.text_encoder_params));
  EXPECT_EQ(read_json_file((tmp.path / "unet/config.json").string()), c.unet);
  EXPECT_EQ(read_json_file((tmp.path / "model_index.json").string()), c.model_index);
  check_folder_runs(tmp.path, DType::F16);
}

TEST(RandomModel, Fp32FolderOfTheSd2FixtureArchitecture) {
  SDPAL_REQUIRE_FIXTURES();
  TempDir tmp;
  const std::string src = test::model_dir("tiny-sd2");
  RandomModelOptions opt;
  opt.tokenizer_dir = src + "/tokenizer";
  opt.dtype = DType::F32;
  write_random_model(model_configs_from_folder(src), tmp.path.string(), opt);
  check_folder_runs(tmp.path, DType::F32);
}

TEST(RandomModel, SameSeedSameBytesAndOverwriteNeedsForce) {
  SDPAL_REQUIRE_FIXTURES();
  TempDir tmp;
  const std::string src = test::model_dir("tiny-sd1");
  const ModelConfigs c = model_configs_from_folder(src);
  RandomModelOptions opt;
  opt.tokenizer_dir = src + "/tokenizer";
  const fs::path a = tmp.path / "a", b = tmp.path / "b";
  write_random_model(c, a.string(), opt);
  write_random_model(c, b.string(), opt);
  auto bytes = [](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  const char* unet_file = "unet/diffusion_pytorch_model.safetensors";
  EXPECT_EQ(bytes(a / unet_file), bytes(b / unet_file));

  EXPECT_THROW(write_random_model(c, a.string(), opt), Error);  // not empty
  opt.force = true;
  opt.seed = 1;
  write_random_model(c, a.string(), opt);
  EXPECT_NE(bytes(a / unet_file), bytes(b / unet_file));
  for (const auto& e : fs::directory_iterator(tmp.path))  // no temp folders left behind
    EXPECT_TRUE(e.path() == a || e.path() == b) << e.path();

  opt.tokenizer_dir = (tmp.path / "missing").string();
  EXPECT_THROW(write_random_model(c, (tmp.path / "c").string(), opt), Error);
  EXPECT_FALSE(fs::exists(tmp.path / "c"));
}

TEST(Flops, Sd15UnetAndVaeDecoderAt512) {
  const ModelConfigs sd15 = builtin_model_configs("sd15");
  const UNetConfig u = UNetConfig::from_json(sd15.unet, "unet");
  // The team's reference: 803 G multiply-accumulates for one CFG step (batch 2) at 512x512,
  // i.e. 1607 GFLOP at 2 FLOP per FMA.
  const ComputeCost step = unet_cost(u, 2, 64, 64);
  EXPECT_NEAR(step.macs() / 1e9, 803, 803 * 0.01);
  EXPECT_DOUBLE_EQ(step.flops(), 2 * step.macs());
  EXPECT_DOUBLE_EQ(unet_cost(u, 1, 64, 64).macs() * 2, step.macs());
  // Attention grows with the square of the token count: 256 px costs less than a quarter.
  EXPECT_LT(unet_cost(u, 2, 32, 32).macs(), step.macs() / 4);
  EXPECT_GT(step.attention_macs, 0);

  const VaeConfig v = VaeConfig::from_json(sd15.vae, "vae");
  EXPECT_NEAR(vae_decoder_cost(v, 1, 64, 64).macs() / 1e9, 1257, 1257 * 0.01);
}

}  // namespace
}  // namespace sdpal
