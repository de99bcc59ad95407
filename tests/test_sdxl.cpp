// SDXL against the tiny-sdxl goldens (diffusers StableDiffusionXLPipeline): both tokenizers, both
// text encoders, the UNet with its text_time added conditions, the VAE, and every txt2img case
// through the library and the CLI; plus the conditioning details (prompt syntax, time ids).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/error.h"
#include "formats/safetensors.h"
#include "models/lora.h"
#include "pipeline/embeddings.h"
#include "pipeline/generate.h"
#include "pipeline/lora_selection.h"
#include "pipeline/prompt_encoding.h"
#include "support/cli.h"
#include "support/fixtures.h"
#include "support/golden_params.h"

using namespace sdpal;
using namespace sdpal::test;
namespace fs = std::filesystem;

namespace {

const char* kFixture = "tiny-sdxl";

std::vector<std::vector<int>> ids_of(const Case& c, const std::string& key) {
  const Tensor t = c.file->to_f32(key);
  std::vector<std::vector<int>> ids(t.dim(0), std::vector<int>(t.dim(1)));
  for (int64_t b = 0; b < t.dim(0); ++b)
    for (int64_t j = 0; j < t.dim(1); ++j) ids[b][j] = static_cast<int>(t[b * t.dim(1) + j]);
  return ids;
}

std::vector<double> timesteps_of(const Case& c) {
  const Tensor t = c.file->to_f32("in.timestep");
  return std::vector<double>(t.data(), t.data() + t.numel());
}

class Sdxl : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (fixtures_available()) model_ = StableDiffusion::load(model_dir(kFixture)).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  const StableDiffusion& m() const { return *model_; }
  static StableDiffusion* model_;
};
StableDiffusion* Sdxl::model_ = nullptr;

TEST_F(Sdxl, LoadsAsSdxl) {
  SDPAL_REQUIRE_FIXTURES();
  EXPECT_EQ(m().kind, "sdxl");
  ASSERT_TRUE(m().text_encoder_2 && m().tokenizer_2);
  EXPECT_EQ(m().text_encoder_2->config().projection_dim, 16);
  EXPECT_TRUE(m().unet->needs_text_time());
  EXPECT_TRUE(m().force_zeros_for_empty_prompt);
  EXPECT_EQ(m().tokenizer_2->pad(), 0);
  EXPECT_EQ(m().tokenizer->pad(), 49407);
}

TEST_F(Sdxl, Tokenizers) {
  SDPAL_REQUIRE_FIXTURES();
  Case c = load_case(kFixture, "tokenizer");
  const auto want_1 = ids_of(c, "out.input_ids"), want_2 = ids_of(c, "out.input_ids_tokenizer_2");
  const auto& prompts = c.params()["prompts"];
  ASSERT_EQ(prompts.size(), want_1.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string p = prompts[i];
    EXPECT_EQ(m().tokenizer->encode_padded(p), want_1[i]) << "tokenizer, prompt " << i;
    EXPECT_EQ(m().tokenizer_2->encode_padded(p), want_2[i]) << "tokenizer_2, prompt " << i;
  }
}

TEST_F(Sdxl, TextEncoders) {
  SDPAL_REQUIRE_FIXTURES();
  Case c = load_case(kFixture, "text_encoder");
  const auto ids_1 = ids_of(c, "in.input_ids"), ids_2 = ids_of(c, "in.input_ids_2");
  const ClipTextOutput last = m().text_encoder->forward(ids_1, 0);
  expect_close(last.hidden, c.out("te1_last_hidden_state"), c.atol("te1_last_hidden_state"), 1e-4,
               "te1 last");
  const ClipTextOutput t1 = m().text_encoder->forward(ids_1, 1, {}, /*final_norm=*/false);
  expect_close(t1.hidden, c.out("te1_penultimate"), c.atol("te1_penultimate"), 1e-4, "te1 pen");
  const ClipTextOutput t2 = m().text_encoder_2->forward(ids_2, 1, {}, /*final_norm=*/false);
  expect_close(t2.hidden, c.out("te2_penultimate"), c.atol("te2_penultimate"), 1e-4, "te2 pen");
  expect_close(t2.text_embeds, c.out("te2_text_embeds"), c.atol("te2_text_embeds"), 1e-4,
               "te2 text_embeds");
  EXPECT_TRUE(last.text_embeds.shape().empty() || last.text_embeds.numel() == 0);
}

// The text_encoder case's rows are the tokenizer case's prompts: the prompt encoding, with syntax
// off and (for prompts without syntax characters) on, gives diffusers' prompt_embeds.
TEST_F(Sdxl, PromptEncodingMatchesDiffusers) {
  SDPAL_REQUIRE_FIXTURES();
  Case c = load_case(kFixture, "text_encoder");
  Case tok = load_case(kFixture, "tokenizer");
  const auto& prompts = tok.params()["prompts"];
  ASSERT_EQ(ids_of(c, "in.input_ids"), ids_of(tok, "out.input_ids"));
  const Tensor want = c.out("prompt_embeds"), want_pooled = c.out("te2_text_embeds");
  const double atol = c.atol("prompt_embeds");
  std::vector<std::string> texts;
  for (const auto& p : prompts) texts.push_back(p);
  const EncodedPrompts plain = encode_prompt_batch(m(), texts, {1, /*syntax=*/false});
  expect_close(plain.hidden, want, atol, 1e-4, "syntax off");
  expect_close(plain.pooled, want_pooled, c.atol("te2_text_embeds"), 1e-4, "pooled, syntax off");
  for (size_t i : {0, 2, 3, 4}) {  // no emphasis, BREAK or tags, at most 75 tokens
    const EncodedPrompts e = encode_prompt_batch(m(), {texts[i]}, {});
    ASSERT_EQ(e.hidden.dim(1), 77);
    EXPECT_EQ(max_abs_diff(e.hidden, plain.hidden.slice0(i, i + 1)), 0.0) << "prompt " << i;
    EXPECT_EQ(max_abs_diff(e.pooled, plain.pooled.slice0(i, i + 1)), 0.0) << "prompt " << i;
  }
}

// A1111 on SDXL: long prompts are chunked by both encoders, the pooled output is the first
// chunk's, emphasis changes the hidden states but not the pooled output.
TEST_F(Sdxl, PromptSyntaxChunksBothEncoders) {
  SDPAL_REQUIRE_FIXTURES();
  Case tok = load_case(kFixture, "tokenizer");
  const std::string longp = tok.params()["prompts"][8];  // > 75 tokens
  const EncodedPrompts e = encode_prompt_batch(m(), {longp}, {});
  ASSERT_EQ(e.hidden.dim(1), 154);
  EXPECT_EQ(e.hidden.dim(2), 32);
  const EncodedPrompts plain = encode_prompt_batch(m(), {longp}, {1, false});
  EXPECT_EQ(plain.hidden.dim(1), 77);
  EXPECT_FALSE(plain.warnings.empty());
  // The first chunk is cut at a comma (A1111's backtrack), so the pooled output differs from the
  // truncated prompt's; it equals the first chunk's own encoding.
  const EncodedPrompts b = encode_prompt_batch(m(), {"a cat BREAK a dog"}, {});
  const EncodedPrompts cat = encode_prompt_batch(m(), {"a cat"}, {});
  ASSERT_EQ(b.hidden.dim(1), 154);
  EXPECT_LE(max_abs_diff(b.pooled, cat.pooled), 1e-6);  // a batch of 2 chunks vs 1: GEMM order
  EXPECT_EQ(max_abs_diff(Tensor(b.hidden).reshaped({154, 32}).slice0(0, 77),
                         Tensor(cat.hidden).reshaped({77, 32})),
            0.0);
  const EncodedPrompts w = encode_prompt_batch(m(), {"a (cat:1.3)"}, {});
  EXPECT_EQ(max_abs_diff(w.pooled, cat.pooled), 0.0);
  EXPECT_GT(max_abs_diff(w.hidden, cat.hidden), 1e-3);
}

TEST_F(Sdxl, UNet) {
  SDPAL_REQUIRE_FIXTURES();
  for (const char* id : {"unet_t999", "unet_t1", "unet_t_float", "unet_t_per_sample"}) {
    Case c = load_case(kFixture, id);
    TextTimeCond added{c.in("text_embeds"), c.in("time_ids")};
    const Tensor out = m().unet->forward(c.in("sample"), timesteps_of(c),
                                         c.in("encoder_hidden_states"), nullptr, &added);
    expect_close(out, c.out("noise_pred"), c.atol("noise_pred"), 1e-4, id);
  }
  Case c = load_case(kFixture, "unet_t1");
  EXPECT_THROW(m().unet->forward(c.in("sample"), {1}, c.in("encoder_hidden_states")), Error);
  TextTimeCond bad{c.in("text_embeds").slice0(0, 1), c.in("time_ids")};
  EXPECT_THROW(m().unet->forward(c.in("sample"), {1}, c.in("encoder_hidden_states"), nullptr, &bad),
               Error);
}

TEST_F(Sdxl, Vae) {
  SDPAL_REQUIRE_FIXTURES();
  Case d = load_case(kFixture, "vae_decode");
  expect_close(decode_latents(m(), d.in("latents")), d.out("image_01"), d.atol("image_01"), 1e-4,
               "decode");
  Case e = load_case(kFixture, "vae_encode");
  const VaeEncoding enc = m().vae->encode(e.in("image"));
  expect_close(enc.mean, e.out("mean"), e.atol("mean"), 1e-4, "mean");
  expect_close(enc.logvar, e.out("logvar"), e.atol("logvar"), 1e-4, "logvar");
}

// ---- Pipeline cases ----------------------------------------------------------------------------

// Listed here so that the suite's cases exist without the fixtures (they skip then);
// AllPipelineCasesAreListed checks the list against the manifest.
const std::vector<std::string> kPipelineCases = {
    "pipeline_ddim",          "pipeline_euler",
    "pipeline_dpmpp_2m",      "pipeline_dpmpp_2m_karras",
    "pipeline_pndm",          "pipeline_euler_ancestral",
    "pipeline_euler_neg_none"};

TEST_F(Sdxl, AllPipelineCasesAreListed) {
  SDPAL_REQUIRE_FIXTURES();
  std::vector<std::string> in_manifest;
  const nlohmann::json m = manifest(kFixture);
  for (const auto& c : m["cases"])
    if (c["kind"] == "pipeline") in_manifest.push_back(c["id"]);
  EXPECT_EQ(in_manifest, kPipelineCases);
}

class SdxlPipeline : public Sdxl, public ::testing::WithParamInterface<std::string> {};

TEST_P(SdxlPipeline, MatchesDiffusers) {
  SDPAL_REQUIRE_FIXTURES();
  Case c = load_case(kFixture, GetParam());
  GenerateParams p = golden_generate_params(c);
  const Tensor time_ids = c.aux("add_time_ids");
  const std::vector<float> mine = sdxl_time_ids(p);
  ASSERT_EQ(time_ids.dim(1), 6);
  for (int64_t r = 0; r < time_ids.dim(0); ++r)
    for (int j = 0; j < 6; ++j) EXPECT_EQ(time_ids[r * 6 + j], mine[j]);
  std::vector<Tensor> per_step;
  p.on_step = [&](int, int, const Tensor& l) { per_step.push_back(l); };
  GenerateResult r = generate(m(), p);
  EXPECT_EQ(r.unet_calls, c.params()["unet_calls"].get<int>());
  const Tensor all = c.aux("latents_per_step");
  ASSERT_EQ(static_cast<int64_t>(per_step.size()), all.dim(0));
  for (size_t i = 0; i < per_step.size(); ++i) {
    Shape s = all.shape();
    s.erase(s.begin());
    expect_close(per_step[i], all.slice0(i, i + 1).reshaped(s), c.atol("aux.latents_per_step"),
                 1e-4, "step " + std::to_string(i));
    if (::testing::Test::HasFailure()) break;
  }
  expect_close(r.latents, c.out("latents"), c.atol("latents"), 1e-4, "latents");
  expect_close(r.image01, c.out("image_01"), c.atol("image_01"), 1e-4, "image_01");
}

// The same cases through `sdpal generate`, one prompt (one noise row) per run.
TEST_P(SdxlPipeline, CliMatchesDiffusers) {
  SDPAL_REQUIRE_FIXTURES();
  Case c = load_case(kFixture, GetParam());
  const GenerateParams p = golden_generate_params(c);
  const fs::path dir =
      fs::temp_directory_path() / ("sdpal-sdxl-" + std::to_string(::getpid()) + "-" + GetParam());
  fs::create_directories(dir);
  for (size_t b = 0; b < p.prompts.size(); ++b) {
    Tensor noise = c.in("noise").slice0(b, b + 1);
    write_safetensors_f32((dir / "noise.safetensors").string(), {{"noise", &noise}});
    std::vector<std::string> args = {"generate",
                                     "-q",
                                     "--model",
                                     model_dir(kFixture),
                                     "--prompt",
                                     p.prompts[b],
                                     "--width",
                                     std::to_string(p.width),
                                     "--height",
                                     std::to_string(p.height),
                                     "--steps",
                                     std::to_string(p.steps),
                                     "--cfg-scale",
                                     c.params()["guidance_scale"].dump(),
                                     "--sampler",
                                     p.sampler,
                                     "--schedule",
                                     p.karras ? "karras" : "default",
                                     "--timestep-spacing",
                                     p.timestep_spacing,
                                     "--init-noise",
                                     (dir / "noise.safetensors").string(),
                                     "--save-latents",
                                     (dir / "latents.safetensors").string(),
                                     "--output",
                                     (dir / "out.png").string()};
    if (!p.negative_prompts.empty()) {
      args.push_back("--negative-prompt");
      args.push_back(p.negative_prompts[0]);
    }
    if (p.step_noise) {
      const Tensor& sn = *p.step_noise;  // [steps, B, 4, h, w] -> [steps, 1, 4, h, w]
      const int64_t S = sn.dim(0), B = sn.dim(1), per = sn.numel() / (S * B);
      Tensor one({S, 1, sn.dim(2), sn.dim(3), sn.dim(4)});
      for (int64_t s = 0; s < S; ++s)
        std::copy_n(sn.data() + (s * B + b) * per, per, one.data() + s * per);
      write_safetensors_f32((dir / "step.safetensors").string(), {{"step_noise", &one}});
      args.push_back("--step-noise");
      args.push_back((dir / "step.safetensors").string());
    }
    const CliResult r = run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    SafetensorsFile f((dir / "latents.safetensors").string());
    expect_close(f.to_f32("latents"), c.out("latents").slice0(b, b + 1), c.atol("latents"), 1e-4,
                 "cli latents, prompt " + std::to_string(b));
    EXPECT_TRUE(fs::exists(dir / "out.png"));
  }
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(TinySdxl, SdxlPipeline, ::testing::ValuesIn(kPipelineCases));

// The size and crop conditions reach the UNet: the library fields and the CLI options.
TEST_F(Sdxl, MicroConditioning) {
  SDPAL_REQUIRE_FIXTURES();
  GenerateParams p;
  p.prompts = {"a red cube"};
  p.width = 96;
  p.height = 64;
  p.steps = 2;
  p.sampler = "euler";
  p.seed = 3;
  const Tensor base = generate(m(), p).latents;
  GenerateParams same = p;
  same.original_width = same.target_width = 96;
  same.original_height = same.target_height = 64;
  EXPECT_EQ(max_abs_diff(generate(m(), same).latents, base), 0.0);
  for (auto change : {+[](GenerateParams& q) { q.original_width = 1024; },
                      +[](GenerateParams& q) { q.crop_top = 32; },
                      +[](GenerateParams& q) { q.target_height = 512; }}) {
    GenerateParams q = p;
    change(q);
    EXPECT_GT(max_abs_diff(generate(m(), q).latents, base), 1e-4);
  }
  EXPECT_EQ(sdxl_time_ids(same), (std::vector<float>{64, 96, 0, 0, 64, 96}));
  GenerateParams q = p;
  q.original_width = 1024;
  q.original_height = 768;
  q.crop_top = 5;
  q.crop_left = 7;
  q.target_width = 640;
  q.target_height = 480;
  EXPECT_EQ(sdxl_time_ids(q), (std::vector<float>{768, 1024, 5, 7, 480, 640}));
  q.crop_left = -1;
  EXPECT_THROW(generate(m(), q), Error);

  const fs::path dir = fs::temp_directory_path() / ("sdpal-sdxl-mc-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto cli = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"generate",
                                     "-q",
                                     "--model",
                                     model_dir(kFixture),
                                     "-p",
                                     "a red cube",
                                     "-W",
                                     "96",
                                     "-H",
                                     "64",
                                     "--steps",
                                     "2",
                                     "--sampler",
                                     "euler",
                                     "--seed",
                                     "3",
                                     "--output",
                                     (dir / "o.png").string(),
                                     "--save-latents",
                                     (dir / "l.safetensors").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    const CliResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? SafetensorsFile((dir / "l.safetensors").string()).to_f32("latents")
                            : Tensor();
  };
  EXPECT_EQ(max_abs_diff(cli({}), base), 0.0);
  GenerateParams o = p;
  o.original_width = 1024;
  o.original_height = 768;
  o.crop_top = 5;
  o.crop_left = 7;
  o.target_width = 640;
  o.target_height = 480;
  EXPECT_EQ(max_abs_diff(
                cli({"--original-size", "1024x768", "--crop", "5,7", "--target-size", "640x480"}),
                generate(m(), o).latents),
            0.0);
  for (const char* bad : {"1024", "axb", "-1x5", "10x"}) {
    const CliResult r = run_cli({"generate", "-q", "--model", model_dir(kFixture), "-p", "x",
                                 "--original-size", bad, "--output", (dir / "o.png").string()});
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.err.find("--original-size"), std::string::npos) << r.err;
  }
  fs::remove_all(dir);
}

}  // namespace

// ---- LoRA on SDXL (tiny-lora's sdxl cases; kohya, kohya with SGM block names, diffusers) -------

namespace {

const char* scale_tag(float s) { return s == 1.f ? "s1" : "s0p5"; }

class SdxlLora : public Sdxl, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    SDPAL_REQUIRE_FIXTURES();
    file_ = LoraFile::load(fixtures_dir() + "/tiny-lora/lora/" + GetParam() + ".safetensors");
  }
  AdaptedModel adapt(float s, bool merge = false) const {
    return adapt_model(m(), {{file_, s, s}}, merge);
  }
  std::shared_ptr<const LoraFile> file_;
};

TEST_P(SdxlLora, TextEncoders) {
  EXPECT_EQ(file_->architecture(), "SDXL");
  const Case c = load_case("tiny-lora", "sdxl_text_encoder_lora");
  std::vector<std::string> prompts;
  for (const auto& t : c.params()["prompts"]) prompts.push_back(t);
  ASSERT_EQ(ids_of(c, "in.input_ids_2")[0], m().tokenizer_2->encode_padded(prompts[0]));
  for (float s : {1.f, 0.5f}) {
    const AdaptedModel a = adapt(s);
    ASSERT_TRUE(a.text_encoder && a.text_encoder_2);
    EXPECT_TRUE(a.warnings.empty()) << a.warnings.front();
    PromptEncodingOptions eo{1, /*syntax=*/false, &*a.text_encoder, &*a.text_encoder_2};
    const EncodedPrompts e = encode_prompt_batch(m(), prompts, eo);
    const std::string h = std::string("prompt_embeds_") + scale_tag(s);
    const std::string p = std::string("pooled_prompt_embeds_") + scale_tag(s);
    expect_close(e.hidden, c.out(h), c.atol(h), 1e-4, h);
    expect_close(e.pooled, c.out(p), c.atol(p), 1e-4, p);
  }
}

TEST_P(SdxlLora, UNet) {
  const Case c = load_case("tiny-lora", "sdxl_unet_lora");
  const TextTimeCond added{c.in("text_embeds"), c.in("time_ids")};
  for (float s : {1.f, 0.5f})
    for (bool merge : {false, true}) {
      const AdaptedModel a = adapt(s, merge);
      ASSERT_TRUE(a.unet);
      const Tensor got = a.unet->forward(c.in("sample"), timesteps_of(c),
                                         c.in("encoder_hidden_states"), nullptr, &added);
      const std::string out = std::string("noise_pred_") + scale_tag(s);
      expect_close(got, c.out(out), c.atol(out), 1e-4, out + (merge ? " merged" : " branch"));
    }
}

TEST_P(SdxlLora, MergedWeights) {
  const Case c = load_case("tiny-lora", "sdxl_lora_merge");
  for (float s : {1.f, 0.5f}) {
    AdaptedModel a = adapt(s, /*merge=*/true);
    for (const auto& L : c.params()["layers"]) {
      const std::string id = L["id"], module = L["module"], comp = L["component"];
      auto layers = comp == "unet"           ? a.unet->weight_layers()
                    : comp == "text_encoder" ? a.text_encoder->weight_layers()
                                             : a.text_encoder_2->weight_layers();
      const Linear* layer = nullptr;
      for (const WeightLayer* l : layers)
        if (l->name == module) layer = dynamic_cast<const Linear*>(l);
      ASSERT_TRUE(layer) << module;
      EXPECT_FALSE(layer->low_rank) << module << " should be merged";
      const std::string out = id + "_merged_" + scale_tag(s);
      const Tensor want = c.out(out);
      ASSERT_EQ(layer->w.numel(), want.numel());
      expect_close(Tensor::from(want.shape(), layer->w.f32().get()), want, c.atol(out), 1e-4, out);
    }
  }
}

TEST_P(SdxlLora, Pipeline) {
  for (const char* id :
       {"sdxl_pipeline_nolora", "sdxl_pipeline_lora_s1", "sdxl_pipeline_lora_s0p5"}) {
    const Case c = load_case("tiny-lora", id);
    GenerateParams p = golden_generate_params(c);
    if (c.params().contains("cross_attention_kwargs")) {
      const float s = c.params()["cross_attention_kwargs"]["scale"].get<float>();
      p.loras = {{file_, s, s}};
    }
    const GenerateResult r = generate(m(), p);
    expect_close(r.latents, c.out("latents"), c.atol("latents"), 1e-4,
                 std::string(id) + " latents");
    expect_close(r.image01, c.out("image_01"), c.atol("image_01"), 1e-4,
                 std::string(id) + " image");
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, SdxlLora,
                         ::testing::Values("sdxl_lora_kohya", "sdxl_lora_kohya_sgm",
                                           "sdxl_lora_diffusers"));

}  // namespace

// ---- Textual inversion on SDXL: clip_l vectors for text_encoder, clip_g for text_encoder_2 ------

namespace {

Tensor token_vectors(const WeightStore& ws, const ClipTokenizer& tok, const std::string& text) {
  const auto ids = tok.tokenize(text);
  const TensorView& emb = ws.get("text_model.embeddings.token_embedding.weight");
  const int64_t D = emb.shape[1];
  Tensor t({static_cast<int64_t>(ids.size()), D});
  for (size_t i = 0; i < ids.size(); ++i)
    convert_to_f32(emb.dtype, emb.data + ids[i] * D * dtype_size(emb.dtype), t.data() + i * D, D);
  return t;
}

TEST_F(Sdxl, EmbeddingWithClipLAndClipG) {
  SDPAL_REQUIRE_FIXTURES();
  const fs::path dir = fs::temp_directory_path() / ("sdpal-sdxl-ti-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const Tensor l = token_vectors(*m().te_ws, *m().tokenizer, "red cube");
  const Tensor g = token_vectors(*m().te2_ws, *m().tokenizer_2, "red cube");
  write_safetensors_f32((dir / "rdcb.safetensors").string(), {{"clip_l", &l}, {"clip_g", &g}});
  const EmbeddingLibrary lib = EmbeddingLibrary::load_dir(dir.string(), *m().tokenizer);
  PromptEncodingOptions with;
  with.embeddings = &lib;
  const EncodedPrompts got = encode_prompt_batch(m(), {"a rdcb on a table"}, with);
  const EncodedPrompts want = encode_prompt_batch(m(), {"a red cube on a table"}, {});
  EXPECT_EQ(max_abs_diff(got.hidden, want.hidden), 0.0);
  EXPECT_EQ(max_abs_diff(got.pooled, want.pooled), 0.0);
  // An SD 1/2 embedding (one tensor) has nothing for the second encoder.
  fs::remove(dir / "rdcb.safetensors");
  write_safetensors_f32((dir / "rdcb.safetensors").string(), {{"emb_params", &l}});
  const EmbeddingLibrary sd1 = EmbeddingLibrary::load_dir(dir.string(), *m().tokenizer);
  with.embeddings = &sd1;
  try {
    encode_prompt_batch(m(), {"a rdcb on a table"}, with);
    ADD_FAILURE() << "an embedding without clip_g was used on SDXL";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("clip_g"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
