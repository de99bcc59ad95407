// LoRA at run time against tiny-lora's diffusers 0.24 goldens (kohya and diffusers file formats,
// scales 1 and 0.5; text encoder, UNet, merged weights, whole pipeline), branch vs merge, LoRA
// on compressed and int8 weights, and bad files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "compression/calibrate.h"
#include "compression/compress_model.h"
#include "compression/quality.h"
#include "core/error.h"
#include "formats/safetensors.h"
#include "models/int8_calibration.h"
#include "models/lora.h"
#include "pipeline/generate.h"
#include "pipeline/lora_selection.h"
#include "support/cli.h"
#include "support/fixtures.h"
#include "support/golden_params.h"
#include "support/temp_dir.h"

using namespace sdpal;
using namespace sdpal::test;
namespace fs = std::filesystem;

namespace {

std::string lora_path(const std::string& file) {
  return fixtures_dir() + "/tiny-lora/lora/" + file + ".safetensors";
}

std::vector<std::vector<int>> ids_of(const Case& c, const std::string& name) {
  const TensorView& v = c.file->get("in." + name);
  const int64_t rows = v.shape[0], cols = v.shape[1];
  std::vector<std::vector<int>> ids(rows, std::vector<int>(cols));
  const auto* p = reinterpret_cast<const int64_t*>(v.data);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < cols; ++t) ids[r][t] = static_cast<int>(p[r * cols + t]);
  return ids;
}

const char* scale_tag(float s) { return s == 1.f ? "s1" : "s0p5"; }

class LoraGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    SDPAL_REQUIRE_FIXTURES();
    m_ = StableDiffusion::load(model_dir("tiny-sd1"));
    file_ = LoraFile::load(lora_path(GetParam()));
  }
  AdaptedModel adapt(float scale, bool merge = false) {
    return adapt_model(*m_, {{file_, scale, scale}}, merge);
  }
  std::unique_ptr<StableDiffusion> m_;
  std::shared_ptr<const LoraFile> file_;
};

TEST_P(LoraGolden, FileIsReadInFull) {
  EXPECT_EQ(file_->components().at("unet").size(), 192u);
  EXPECT_EQ(file_->components().at("text_encoder").size(), 18u);
  EXPECT_EQ(file_->format(), GetParam() == "sd1_lora_kohya" ? "kohya" : "diffusers");
  EXPECT_EQ(file_->short_hash().size(), 12u);
}

TEST_P(LoraGolden, TextEncoder) {
  const Case c = load_case("tiny-lora", "sd1_text_encoder_lora");
  for (float s : {1.f, 0.5f}) {
    const AdaptedModel a = adapt(s);
    ASSERT_TRUE(a.text_encoder);
    EXPECT_TRUE(a.warnings.empty());
    const Tensor got = a.text_encoder->forward(ids_of(c, "input_ids"), 0).hidden;
    const std::string out = std::string("prompt_embeds_") + scale_tag(s);
    expect_close(got, c.out(out), c.atol(out), 1e-4, out);
  }
}

TEST_P(LoraGolden, UNet) {
  const Case c = load_case("tiny-lora", "sd1_unet_lora");
  const Tensor sample = c.in("sample"), ehs = c.in("encoder_hidden_states");
  const Tensor plain = m_->unet->forward(sample, {500}, ehs);
  for (float s : {1.f, 0.5f}) {
    for (bool merge : {false, true}) {
      const AdaptedModel a = adapt(s, merge);
      ASSERT_TRUE(a.unet);
      const Tensor got = a.unet->forward(sample, {500}, ehs);
      const std::string out = std::string("noise_pred_") + scale_tag(s);
      expect_close(got, c.out(out), c.atol(out), 1e-4, out + (merge ? " merged" : " branch"));
    }
  }
  // The loaded model itself is unchanged.
  const Tensor again = m_->unet->forward(sample, {500}, ehs);
  for (int64_t i = 0; i < plain.numel(); ++i) ASSERT_EQ(again[i], plain[i]);
}

TEST_P(LoraGolden, MergedWeights) {
  const Case c = load_case("tiny-lora", "sd1_lora_merge");
  for (float s : {1.f, 0.5f}) {
    AdaptedModel a = adapt(s, /*merge=*/true);
    for (const auto& L : c.params()["layers"]) {
      const std::string id = L["id"], module = L["module"], comp = L["component"];
      auto layers = comp == "unet" ? a.unet->weight_layers() : a.text_encoder->weight_layers();
      const WeightLayer* layer = nullptr;
      for (const WeightLayer* l : layers)
        if (l->name == module) layer = l;
      ASSERT_TRUE(layer) << module;
      EXPECT_FALSE(layer->low_rank) << module << " should be merged";
      const Param& w = dynamic_cast<const Linear*>(layer) ? dynamic_cast<const Linear*>(layer)->w
                                                          : dynamic_cast<const Conv2d*>(layer)->w;
      const std::string out = id + "_merged_" + scale_tag(s);
      const Tensor want = c.out(out);
      const Tensor got = Tensor::from(want.shape(), w.f32().get());
      ASSERT_EQ(w.numel(), want.numel());
      expect_close(got, want, c.atol(out), 1e-4, out);
    }
  }
}

TEST_P(LoraGolden, Pipeline) {
  for (float s : {1.f, 0.5f}) {
    const Case c = load_case("tiny-lora", std::string("sd1_pipeline_lora_") + scale_tag(s));
    GenerateParams p = golden_generate_params(c);
    p.loras = {{file_, s, s}};
    const GenerateResult r = generate(*m_, p);
    expect_close(r.latents, c.out("latents"), c.atol("latents"), 1e-4, "latents");
    expect_close(r.image01, c.out("image_01"), c.atol("image_01"), 1e-4, "image_01");
    ASSERT_EQ(r.loras.size(), 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, LoraGolden,
                         ::testing::Values("sd1_lora_kohya", "sd1_lora_diffusers"));

class LoraFiles : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    SDPAL_REQUIRE_FIXTURES();
  }
  // Writes a LoRA file with the given tensors (fp32).
  std::string write(const std::string& name,
                    const std::vector<std::pair<std::string, Tensor>>& ts) {
    std::vector<std::pair<std::string, const Tensor*>> refs;
    for (const auto& [n, t] : ts) refs.emplace_back(n, &t);
    const std::string p = path(name + ".safetensors");
    write_safetensors_f32(p, refs);
    return p;
  }
};

TEST_F(LoraFiles, PromptTagEqualsGivenFile) {
  auto m = StableDiffusion::load(model_dir("tiny-sd1"));
  fs::copy_file(lora_path("sd1_lora_kohya"), path("style.safetensors"));
  GenerateParams p;
  p.prompts = {"a photo of sks dog <lora:style:0.5>"};
  p.width = p.height = 64;
  p.steps = 2;
  p.seed = 3;
  p.lora_dir = path("");
  const GenerateResult tagged = generate(*m, p);
  ASSERT_EQ(tagged.loras.size(), 1u);
  EXPECT_EQ(tagged.loras[0].unet_scale, 0.5f);
  GenerateParams q = p;
  q.prompts = {"a photo of sks dog"};
  q.loras = {{LoraFile::load(lora_path("sd1_lora_kohya")), 0.5f, 0.5f}};
  const GenerateResult given = generate(*m, q);
  for (int64_t i = 0; i < given.latents.numel(); ++i)
    ASSERT_EQ(tagged.latents[i], given.latents[i]);
  EXPECT_EQ(lora_hashes(tagged.loras).substr(0, 7), "style: ");
  // A1111's te/unet multipliers.
  const auto uses = loras_from_tags({{"lora", {"style", "0.3", "0.7"}}}, path(""));
  EXPECT_EQ(uses[0].text_encoder_scale, 0.3f);
  EXPECT_EQ(uses[0].unet_scale, 0.7f);
  // Names, not paths; missing files and folders; bad multipliers.
  for (const ExtraNetworkTag& t :
       {ExtraNetworkTag{"lora", {"../style", "1"}}, ExtraNetworkTag{"lora", {"nothere", "1"}},
        ExtraNetworkTag{"lora", {"style", "x"}}, ExtraNetworkTag{"lora", {"style", "1", "2", "3"}}})
    EXPECT_THROW(loras_from_tags({t}, path("")), Error) << t.args[0];
  EXPECT_THROW(loras_from_tags({{"lora", {"style"}}}, ""), Error);
}

TEST_F(LoraFiles, OtherArchitectureIsRefusedByName) {
  auto m = StableDiffusion::load(model_dir("tiny-sd1"));
  const auto sdxl = LoraFile::load(lora_path("sdxl_lora_kohya"));
  EXPECT_EQ(sdxl->architecture(), "SDXL");
  try {
    adapt_model(*m, {{sdxl, 1.f, 1.f}}, false);
    ADD_FAILURE() << "an SDXL LoRA was accepted on SD 1";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SDXL"), std::string::npos) << e.what();
  }
}

TEST_F(LoraFiles, BadFilesGiveClearErrors) {
  const Tensor d = Tensor::full({4, 32}, 0.1f), u8 = Tensor::full({32, 8}, 0.1f);
  const Tensor u = Tensor::full({32, 4}, 0.1f), a = Tensor::full({1}, NAN);
  auto expect_error = [](const std::string& p, const std::string& words) {
    try {
      LoraFile::load(p);
      ADD_FAILURE() << p << " loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  const std::string k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
  expect_error(write("rank", {{k + ".lora_down.weight", d}, {k + ".lora_up.weight", u8}}),
               "not a low-rank pair");
  expect_error(write("half", {{k + ".lora_down.weight", d}}), "up weight is missing");
  expect_error(
      write("alpha", {{k + ".lora_down.weight", d}, {k + ".lora_up.weight", u}, {k + ".alpha", a}}),
      "alpha");
  expect_error(write("loha", {{k + ".hada_w1_a", d}}), "LoHa");
  // Truncated: the header promises more data than the file holds.
  const std::string full = lora_path("sd1_lora_kohya");
  const std::string cut = path("cut.safetensors");
  {
    std::ifstream in(full, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  EXPECT_THROW(LoraFile::load(cut), Error);
  // A LoRA whose down does not take the layer's inputs (an SD 2 LoRA on SD 1, in miniature).
  auto m = StableDiffusion::load(model_dir("tiny-sd1"));
  const Tensor wide = Tensor::full({4, 48}, 0.1f);
  const auto bad =
      LoraFile::load(write("wide", {{k + ".lora_down.weight", wide}, {k + ".lora_up.weight", u}}));
  EXPECT_THROW(adapt_model(*m, {{bad, 1.f, 1.f}}, false), Error);
}

Tensor filled(const Shape& shape, uint32_t seed) {
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) {
    seed = seed * 1664525u + 1013904223u;
    t[i] = static_cast<float>(seed >> 8) / float(1 << 24) * 2.f - 1.f;
  }
  return t;
}

const WeightLayer* layer_named(UNet& u, const std::string& name) {
  for (const WeightLayer* l : u.weight_layers())
    if (l->name == name) return l;
  return nullptr;
}

// The low-rank branch is the same computation whatever the weight's form: on palettized, linear
// 8-bit and int8 layers it adds what it adds on the dense layer; end to end the LoRA'd image of
// a compressed model is as close to the dense LoRA'd image as without LoRA.
TEST_F(LoraFiles, BranchOnCompressedAndInt8WeightsEqualsDense) {
  auto dense = StableDiffusion::load(model_dir("tiny-sd1"));
  const auto lora = LoraFile::load(lora_path("sd1_lora_kohya"));
  std::vector<std::pair<std::string, std::unique_ptr<StableDiffusion>>> variants;
  for (const auto& [label, mode] : {std::pair{"palettized 6-bit", CompressMode::Palettize},
                                    std::pair{"linear 8-bit", CompressMode::Linear8}}) {
    CompressOptions o;
    o.mode = mode;
    o.nbits = mode == CompressMode::Palettize ? 6 : 8;
    o.min_elements = 500;
    const std::string out = path(std::string(label).substr(0, 3));
    compress_model(model_dir("tiny-sd1"), out, o);
    variants.emplace_back(label, StableDiffusion::load(out));
  }
  write_int8_calibration(path("cal.json"), calibrate_int8(*dense, {}));
  LoadOptions lo;
  lo.int8 = true;
  lo.int8_calibration = path("cal.json");
  variants.emplace_back("int8", StableDiffusion::load(model_dir("tiny-sd1"), lo));

  const std::string name = "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj";
  auto branch_of = [&](const StableDiffusion& m) {
    UNet adapted = adapt_model(m, {{lora, 1.f, 1.f}}, false).unet.value();
    UNet plain = *m.unet;
    const auto* with = dynamic_cast<const Linear*>(layer_named(adapted, name));
    const auto* without = dynamic_cast<const Linear*>(layer_named(plain, name));
    EXPECT_TRUE(with && without && with->low_rank && !without->low_rank);
    const Tensor x = filled({2, 16, with->in}, 7);
    const Tensor a = (*with)(x), b = (*without)(x);
    Tensor d(a.shape());
    for (int64_t i = 0; i < a.numel(); ++i) d[i] = a[i] - b[i];
    return std::make_pair(d, without->w.compressed() || without->int8());
  };
  const Tensor want = branch_of(*dense).first;

  GenerateParams p;
  p.prompts = {"a photo of sks dog sitting on a sofa"};
  p.width = p.height = 64;
  p.steps = 4;
  p.seed = 9;
  p.sampler = "euler";
  const Tensor ref_plain = generate(*dense, p).image01;
  p.loras = {{lora, 1.f, 1.f}};
  const Tensor ref_lora = generate(*dense, p).image01;
  for (const auto& [label, m] : variants) {
    const auto [got, compressed] = branch_of(*m);
    EXPECT_TRUE(compressed) << label << ": the test layer is not compressed";
    double err = 0, mag = 0;
    for (int64_t i = 0; i < want.numel(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << label;
      err = std::max(err, double(std::abs(got[i] - want[i])));
      mag = std::max(mag, double(std::abs(want[i])));
    }
    EXPECT_GT(mag, 1e-3) << "the LoRA branch adds nothing";
    EXPECT_LT(err, 1e-5 * (1 + mag) + 1e-6) << label << ": branch differs from the dense one";
    p.loras = {};
    const double q_plain = psnr(ref_plain, generate(*m, p).image01);
    p.loras = {{lora, 1.f, 1.f}};
    const double q_lora = psnr(ref_lora, generate(*m, p).image01);
    std::printf(
        "[ measured ] tiny-sd1 %s: image PSNR vs dense %.2f dB without LoRA, %.2f dB with\n",
        label.c_str(), q_plain, q_lora);
    EXPECT_TRUE(std::isfinite(q_lora));
    EXPECT_GT(q_lora, q_plain - 3.0) << label;
  }
}

// LoCon: make-random-lora --conv adapts the UNet's convolutions too; the 3x3 branch run beside the
// weight equals the LoRA merged into it.
TEST_F(LoraFiles, ConvolutionLoraBranchEqualsMerged) {
  const auto r = run_cli({"make-random-lora", "--model", model_dir("tiny-sd1"), "--rank", "4",
                          "--conv", "--output", path("locon.safetensors")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto m = StableDiffusion::load(model_dir("tiny-sd1"));
  const auto f = LoraFile::load(path("locon.safetensors"));
  const AdaptedModel branch = adapt_model(*m, {{f, 0.7f, 0.7f}}, false);
  EXPECT_TRUE(branch.warnings.empty());
  UNet u = *branch.unet;
  const auto* conv = dynamic_cast<const Conv2d*>(layer_named(u, "down_blocks.0.resnets.0.conv1"));
  ASSERT_TRUE(conv && conv->low_rank);
  const AdaptedModel merged = adapt_model(*m, {{f, 0.7f, 0.7f}}, true);
  const Tensor x = filled({1, 4, 16, 16}, 3), ctx = filled({1, 77, 32}, 5);
  const Tensor a = branch.unet->forward(x, {300}, ctx), b = merged.unet->forward(x, {300}, ctx);
  const Tensor plain = m->unet->forward(x, {300}, ctx);
  EXPECT_GT(psnr(a, b), 80.0);
  EXPECT_LT(psnr(a, plain), 60.0);  // the LoRA changes the output
}

}  // namespace
