// Component golden tests: text encoder, UNet, VAE against the fixtures (diffusers/transformers).
#include <gtest/gtest.h>

#include <cmath>

#include "models/clip_text.h"
#include "models/config.h"
#include "models/unet.h"
#include "models/vae.h"
#include "support/fixtures.h"

using namespace sdpal;
using namespace sdpal::test;

namespace {

std::vector<std::vector<int>> ids_of(const Case& c) {
  Tensor t = c.file->to_f32("in.input_ids");
  std::vector<std::vector<int>> ids(t.dim(0), std::vector<int>(t.dim(1)));
  for (int64_t b = 0; b < t.dim(0); ++b)
    for (int64_t j = 0; j < t.dim(1); ++j) ids[b][j] = static_cast<int>(t[b * t.dim(1) + j]);
  return ids;
}

std::string weight_file(const std::string& dir, const std::string& stem, bool fp16) {
  return dir + "/" + stem + (fp16 ? ".fp16.safetensors" : ".safetensors");
}

struct Models {
  WeightStore te_ws{"text_encoder"}, unet_ws{"unet"}, vae_ws{"vae"};
  std::unique_ptr<ClipTextModel> te;
  std::unique_ptr<UNet> unet;
  std::unique_ptr<Vae> vae;
  explicit Models(const std::string& fixture, bool fp16 = false) {
    const std::string m = model_dir(fixture);
    te_ws.add_file(weight_file(m + "/text_encoder", "model", fp16));
    unet_ws.add_file(weight_file(m + "/unet", "diffusion_pytorch_model", fp16));
    vae_ws.add_file(weight_file(m + "/vae", "diffusion_pytorch_model", fp16));
    te = std::make_unique<ClipTextModel>(
        te_ws, ClipTextConfig::from_json(read_json_file(m + "/text_encoder/config.json"), "te"));
    unet = std::make_unique<UNet>(
        unet_ws, UNetConfig::from_json(read_json_file(m + "/unet/config.json"), "unet"));
    vae = std::make_unique<Vae>(
        vae_ws, VaeConfig::from_json(read_json_file(m + "/vae/config.json"), "vae"));
  }
};

std::vector<double> timesteps_of(const Case& c) {
  Tensor t = c.file->to_f32("in.timestep");
  std::vector<double> r;
  const auto& v = c.file->get("in.timestep");
  if (v.dtype == DType::F32 || v.dtype == DType::F64) {
    Tensor d = c.file->to_f32("in.timestep");
    for (int64_t i = 0; i < d.numel(); ++i) r.push_back(d[i]);
    // Keep the exact float value the reference used.
    if (v.dtype == DType::F32) return r;
  }
  r.clear();
  for (int64_t i = 0; i < t.numel(); ++i) r.push_back(t[i]);
  return r;
}

class ModelGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelGolden, TextEncoder) {
  SDPAL_REQUIRE_FIXTURES();
  Models m(GetParam());
  Case c = load_case(GetParam(), "text_encoder");
  auto ids = ids_of(c);
  ClipTextOutput o = m.te->forward(ids, 0);
  expect_close(o.hidden, c.out("last_hidden_state"), c.atol("last_hidden_state"), 1e-4, "last");
  expect_close(o.pooled, c.out("pooler_output"), c.atol("pooler_output"), 1e-4, "pooled");
  ClipTextOutput s = m.te->forward(ids, 1);
  expect_close(s.hidden, c.out("clip_skip_1"), c.atol("clip_skip_1"), 1e-4, "clip skip");
}

TEST_P(ModelGolden, UNet) {
  SDPAL_REQUIRE_FIXTURES();
  Models m(GetParam());
  for (const char* id : {"unet_t999", "unet_t1", "unet_t_float", "unet_t_per_sample"}) {
    Case c = load_case(GetParam(), id);
    Tensor out = m.unet->forward(c.in("sample"), timesteps_of(c), c.in("encoder_hidden_states"));
    expect_close(out, c.out("noise_pred"), c.atol("noise_pred"), 1e-4, id);
  }
}

TEST_P(ModelGolden, VaeDecode) {
  SDPAL_REQUIRE_FIXTURES();
  Models m(GetParam());
  Case c = load_case(GetParam(), "vae_decode");
  Tensor z = c.in("latents");
  const float sf = static_cast<float>(m.vae->config().scaling_factor);
  for (int64_t i = 0; i < z.numel(); ++i) z[i] /= sf;
  Tensor img = m.vae->decode(z);
  expect_close(img, c.out("image"), c.atol("image"), 1e-4, "image");
}

TEST_P(ModelGolden, VaeEncode) {
  SDPAL_REQUIRE_FIXTURES();
  Models m(GetParam());
  Case c = load_case(GetParam(), "vae_encode");
  VaeEncoding e = m.vae->encode(c.in("image"));
  expect_close(e.mean, c.out("mean"), c.atol("mean"), 1e-4, "mean");
  expect_close(e.logvar, c.out("logvar"), c.atol("logvar"), 1e-4, "logvar");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelGolden,
                         ::testing::Values("tiny-sd1", "tiny-sd2", "demo-fashion"));

}  // namespace

namespace {
// fp16 variant files: weights stay F16 in memory, compute is fp32.
class Fp16Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Fp16Golden, AllComponents) {
  SDPAL_REQUIRE_FIXTURES();
  Models m(GetParam(), /*fp16=*/true);
  EXPECT_GT(m.unet_ws.count_dtype(DType::F16), 0);
  Case c = load_case(GetParam(), "fp16_weights");
  Tensor out = m.unet->forward(c.in("sample"), timesteps_of(c), c.in("encoder_hidden_states"));
  expect_close(out, c.out("unet_noise_pred"), c.atol("unet_noise_pred"), 1e-4, "unet");
  ClipTextOutput t = m.te->forward(ids_of(c), 0);
  expect_close(t.hidden, c.out("text_last_hidden_state"), c.atol("text_last_hidden_state"), 1e-4,
               "text");
  Tensor z = c.in("latents");
  for (int64_t i = 0; i < z.numel(); ++i)
    z[i] /= static_cast<float>(m.vae->config().scaling_factor);
  expect_close(m.vae->decode(z), c.out("vae_image"), c.atol("vae_image"), 1e-4, "vae");
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Fp16Golden, ::testing::Values("tiny-sd2", "demo-fashion"));
}  // namespace
