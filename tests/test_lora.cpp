// LoRA at run time against tiny-lora's diffusers 0.24 goldens (kohya and diffusers file formats,
// scales 1 and 0.5; text encoder, UNet, merged weights, whole pipeline), branch vs merge, LoRA
// on compressed and int8 weights, and bad files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "formats/safetensors.h"
#include "models/lora.h"
#include "pipeline/generate.h"
#include "pipeline/lora_selection.h"
#include "support/fixtures.h"
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
    GenerateParams p;
    for (const auto& t : c.params()["prompts"]) p.prompts.push_back(t);
    p.negative_prompts = {c.params()["negative_prompt"].get<std::string>()};
    p.width = c.params()["width"];
    p.height = c.params()["height"];
    p.steps = c.params()["num_inference_steps"];
    p.cfg_scale = c.params()["guidance_scale"].get<float>();
    p.sampler = "euler";
    p.timestep_spacing = c.params()["scheduler_config"]["timestep_spacing"];
    p.init_noise = c.in("noise");
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

}  // namespace
