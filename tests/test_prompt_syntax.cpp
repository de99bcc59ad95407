// A1111 prompt syntax: the emphasis parser against a table of prompts with the runs A1111's
// parse_prompt_attention gives (webui 1.6+ regex), extra-network tags, 75-token chunking with
// BREAK and the comma backtrack, and the encoding of chunks on tiny-sd1.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "formats/safetensors.h"
#include "pipeline/embeddings.h"
#include "pipeline/extra_networks.h"
#include "pipeline/generate.h"
#include "pipeline/prompt_chunks.h"
#include "pipeline/prompt_encoding.h"
#include "pipeline/prompt_syntax.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"

using namespace sdpal;

namespace {

constexpr double R = 1.1, S = 1 / 1.1;  // A1111's bracket multipliers
const PromptRun kBreak{"BREAK", -1.0};

struct ParseCase {
  std::string prompt;
  std::vector<PromptRun> runs;
};

std::string show(const std::vector<PromptRun>& runs) {
  std::string s;
  for (const auto& r : runs) s += "[\"" + r.text + "\", " + std::to_string(r.weight) + "] ";
  return s;
}

const std::vector<ParseCase>& parse_cases() {
  static const std::vector<ParseCase> cases = {
      {"normal text", {{"normal text", 1}}},
      {"an (important) word", {{"an ", 1}, {"important", R}, {" word", 1}}},
      {"(unbalanced", {{"unbalanced", R}}},
      {"\\(literal\\]", {{"(literal]", 1}}},
      {"(unnecessary)(parens)", {{"unnecessaryparens", R}}},
      {"a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
       {{"a ", 1},
        {"house", 1.3 * R * R},
        {" ", R},
        {"on", 1},
        {" a ", R},
        {"hill", 0.5 * R},
        {", sun, ", R},
        {"sky", R * R * R * R},
        {".", R}}},
      {"", {{"", 1}}},
      {"((text))", {{"text", R * R}}},
      {"[text]", {{"text", S}}},
      {"[[text]]", {{"text", S * S}}},
      {"(text:1.5)", {{"text", 1.5}}},
      {"(text: 1.5 )", {{"text", 1.5}}},
      {"(text:-0.5)", {{"text", -0.5}}},
      {"(text:+2)", {{"text", 2}}},
      {"(text:.5)", {{"text", 0.5}}},
      {"(text:1.)", {{"text", 1}}},
      {"(text:0)", {{"text", 0}}},
      {"a:b", {{"a:b", 1}}},
      {"a: 1.2) b", {{"a: 1.2) b", 1}}},  // a weight with no '(' open is text
      {"text) more", {{"text) more", 1}}},
      {"text] more", {{"text] more", 1}}},
      {"[unclosed square", {{"unclosed square", S}}},
      {"(a [b) c]", {{"a ", R}, {"b", R * S}, {" c", S}}},
      {"\\\\ backslash", {{"\\ backslash", 1}}},
      {"lone \\ backslash", {{"lone  backslash", 1}}},
      {"\\n not an escape", {{"n not an escape", 1}}},
      {"a BREAK b", {{"a", 1}, kBreak, {"b", 1}}},
      {"BREAK", {{"", 1}, kBreak, {"", 1}}},
      {"aBREAKb", {{"aBREAKb", 1}}},
      {"a BREAKfast", {{"a BREAKfast", 1}}},
      {"a  BREAK  BREAK b", {{"a", 1}, kBreak, {"", 1}, kBreak, {"b", 1}}},
      {"(a BREAK b)", {{"a", R}, {"BREAK", -R}, {"b", R}}},  // weighted: plain text in A1111
      {"a\nBREAK\nb", {{"a", 1}, kBreak, {"b", 1}}},
      {"a,BREAK,b", {{"a,", 1}, kBreak, {",b", 1}}},
      {"x_BREAK", {{"x_BREAK", 1}}},
      {"\xE6\x9D\xB1\xE4\xBA\xAC"
       "BREAK",
       {{"\xE6\x9D\xB1\xE4\xBA\xAC"
         "BREAK",
         1}}},
      {"\xE6\x97\xA5 BREAK \xE6\x9D\xB1", {{"\xE6\x97\xA5", 1}, kBreak, {"\xE6\x9D\xB1", 1}}},
      {"(a:1.5)BREAK(b)", {{"a", 1.5}, {"", 1}, kBreak, {"", 1}, {"b", R}}},
      {"(masterpiece:1.2), best quality, (detailed:1.1) face",
       {{"masterpiece", 1.2}, {", best quality, ", 1}, {"detailed", 1.1}, {" face", 1}}},
      {"emoji \xF0\x9F\x98\x80 (smile:1.3)", {{"emoji \xF0\x9F\x98\x80 ", 1}, {"smile", 1.3}}},
      {"caf\xC3\xA9 (cr\xC3\xA8me:0.8)", {{"caf\xC3\xA9 ", 1}, {"cr\xC3\xA8me", 0.8}}},
      {"((((((deep))))))", {{"deep", R * R * R * R * R * R}}},
      {"(a:1.2)(b:1.2)", {{"ab", 1.2}}},
      {"[(a)]", {{"a", R * S}}},
      {"(a:1.2", {{"a:1.2", R}}},
      {"a (b:0) c", {{"a ", 1}, {"b", 0}, {" c", 1}}},
      {"(a:1e3)", {{"a:1e3", R}}},
      {"\\(not weighted:1.5\\)", {{"(not weighted:1.5)", 1}}},
      {"((a), b)", {{"a", R * R}, {", b", R}}},
      {"\xFF\xFE (x)", {{"\xFF\xFE ", 1}, {"x", R}}},  // bytes that are not UTF-8 pass through
  };
  return cases;
}

TEST(PromptSyntax, ParsesLikeA1111) {
  ASSERT_GE(parse_cases().size(), 40u);
  for (const auto& c : parse_cases()) {
    const auto got = parse_prompt_attention(c.prompt);
    ASSERT_EQ(got.size(), c.runs.size()) << "prompt: " << c.prompt << "\n got: " << show(got);
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].text, c.runs[i].text) << "prompt: " << c.prompt << " run " << i;
      EXPECT_DOUBLE_EQ(got[i].weight, c.runs[i].weight) << "prompt: " << c.prompt << " run " << i;
    }
  }
}

TEST(PromptSyntax, BreakMarkerOnlyWhenUnweighted) {
  const auto runs = parse_prompt_attention("a BREAK (b BREAK c)");
  int breaks = 0;
  for (const auto& r : runs) breaks += is_chunk_break(r);
  EXPECT_EQ(breaks, 1);
}

TEST(PromptSyntax, WeightThatIsNotANumberIsAnError) {
  for (const char* p : {"(a:1.2.3)", "(a:.)", "(a:+.)", "(a:..)"}) {
    try {
      parse_prompt_attention(p);
      ADD_FAILURE() << "no error for " << p;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not a number"), std::string::npos) << e.what();
    }
  }
}

TEST(PromptSyntax, LongAndNestedPromptsParse) {
  std::string deep(256, '(');
  deep += "x";
  const auto runs = parse_prompt_attention(deep);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_GT(runs[0].weight, 1e10);
  // Deeper nesting is refused (the parser's work grows with it), closed brackets are not.
  EXPECT_THROW(parse_prompt_attention(std::string(257, '(') + "x"), Error);
  EXPECT_THROW(parse_prompt_attention(std::string(200, '(') + std::string(57, '[')), Error);
  std::string closed;
  for (int i = 0; i < 5000; ++i) closed += "(a)";
  EXPECT_EQ(parse_prompt_attention(closed).size(), 1u);
  std::string wide;
  for (int i = 0; i < 2000; ++i) wide += "(w" + std::to_string(i) + ":1.1) ";
  EXPECT_EQ(parse_prompt_attention(wide).size(), 4000u);
}

TEST(ExtraNetworks, StripsTagsLikeA1111) {
  std::vector<ExtraNetworkTag> tags;
  EXPECT_EQ(strip_extra_networks("a cat <lora:pixel_art:0.8>, <lora:x:1:0.5> (dog)", &tags),
            "a cat ,  (dog)");
  ASSERT_EQ(tags.size(), 2u);
  EXPECT_EQ(tags[0], (ExtraNetworkTag{"lora", {"pixel_art", "0.8"}}));
  EXPECT_EQ(tags[1], (ExtraNetworkTag{"lora", {"x", "1", "0.5"}}));
  tags.clear();
  // Not tags: no type, no ':', nothing after ':', no '>', a non-word character in the type.
  for (const char* p : {"<:a>", "<lora>", "<lora:>", "<lora:a", "<lo-ra:a>", "a < b > c"}) {
    EXPECT_EQ(strip_extra_networks(p, &tags), p);
    EXPECT_TRUE(tags.empty()) << p;
  }
  EXPECT_EQ(strip_extra_networks("<hypernet:h:1><lora:l:0.5>x", &tags), "x");
  EXPECT_EQ(tags.size(), 2u);
  EXPECT_EQ(strip_extra_networks("<<lora:a:1>>", nullptr), "<>");
}

// ---- chunking, with tiny-sd1's CLIP tokenizer -------------------------------------------------

class PromptChunks : public ::testing::Test {
 protected:
  void SetUp() override {
    SDPAL_REQUIRE_FIXTURES();
    tok_ = std::make_unique<ClipTokenizer>(
        ClipTokenizer::load(test::model_dir("tiny-sd1") + "/tokenizer"));
  }
  std::vector<PromptChunk> chunks(const std::string& p, int backtrack = 20) {
    return chunk_prompt(*tok_, parse_prompt_attention(p), {backtrack});
  }
  // The prompt tokens of a chunk (between BOS and the first EOS).
  std::vector<int> body(const PromptChunk& c) {
    auto end = std::find(c.ids.begin() + 1, c.ids.end(), tok_->eos());
    return {c.ids.begin() + 1, end};
  }
  static std::string repeat(const std::string& w, int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += w + " ";
    return s;
  }
  std::unique_ptr<ClipTokenizer> tok_;
};

TEST_F(PromptChunks, ShortPromptIsTheDiffusersEncoding) {
  for (const char* p : {"a photograph of an astronaut riding a horse", "", "A Cat, on a MAT!!!"}) {
    const auto c = chunks(p);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].ids, tok_->encode_padded(p)) << p;
    EXPECT_EQ(c[0].multipliers, std::vector<float>(77, 1.f));
  }
  EXPECT_EQ(empty_chunk(*tok_).ids, tok_->encode_padded(""));
}

TEST_F(PromptChunks, WeightsFollowTheirTokens) {
  const auto c = chunks("a (red cube:1.5) [on] it");
  ASSERT_EQ(c.size(), 1u);
  const auto a = tok_->tokenize("a"), rc = tok_->tokenize("red cube"), on = tok_->tokenize("on");
  size_t pos = 1;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(c[0].multipliers[pos++], 1.f);
  for (size_t i = 0; i < rc.size(); ++i) EXPECT_EQ(c[0].multipliers[pos++], 1.5f);
  for (size_t i = 0; i < on.size(); ++i) EXPECT_FLOAT_EQ(c[0].multipliers[pos++], float(1 / 1.1));
  EXPECT_EQ(c[0].multipliers[0], 1.f);
  EXPECT_EQ(c[0].multipliers[76], 1.f);
}

TEST_F(PromptChunks, LongPromptsSplitEvery75Tokens) {
  ASSERT_EQ(tok_->tokenize("cat").size(), 1u);
  const auto c = chunks(repeat("cat", 300));  // 300 tokens, no comma: 4 full chunks
  ASSERT_EQ(c.size(), 4u);
  for (const auto& k : c) {
    EXPECT_EQ(k.ids.size(), 77u);
    EXPECT_EQ(body(k).size(), 75u);
    EXPECT_EQ(k.ids.front(), tok_->bos());
    EXPECT_EQ(k.ids.back(), tok_->eos());
  }
  EXPECT_EQ(chunks(repeat("cat", 75)).size(), 1u);
  EXPECT_EQ(chunks(repeat("cat", 76)).size(), 2u);
  EXPECT_EQ(body(chunks(repeat("cat", 76))[1]).size(), 1u);
}

TEST_F(PromptChunks, CommaWithinTwentyTokensMovesTheRestToTheNextChunk) {
  // 70 tokens, a comma (the 71st), then 10 more: the chunk fills at 75 with the comma 4 back.
  const auto c = chunks(repeat("cat", 70) + ", " + repeat("dog", 10));
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(body(c[0]).size(), 71u);
  EXPECT_EQ(body(c[0]).back(), tok_->vocab_id(",</w>"));
  EXPECT_EQ(body(c[1]).size(), 10u);
  // Backtrack off: a plain cut at 75.
  const auto d = chunks(repeat("cat", 70) + ", " + repeat("dog", 10), 0);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(body(d[0]).size(), 75u);
  EXPECT_EQ(body(d[1]).size(), 6u);
  // A comma too far back (more than 20 tokens) does not move anything.
  const auto e = chunks(repeat("cat", 10) + ", " + repeat("dog", 80));
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(body(e[0]).size(), 75u);
}

TEST_F(PromptChunks, BreakStartsANewChunk) {
  auto c = chunks("a cat BREAK a dog");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(body(c[0]), tok_->tokenize("a cat"));
  EXPECT_EQ(body(c[1]), tok_->tokenize("a dog"));
  c = chunks("BREAK a dog");  // a leading BREAK leaves an empty first chunk, as in A1111
  ASSERT_EQ(c.size(), 2u);
  EXPECT_TRUE(body(c[0]).empty());
  c = chunks("a BREAK BREAK b");
  ASSERT_EQ(c.size(), 3u);
  EXPECT_TRUE(body(c[1]).empty());
  // At a chunk edge: 75 tokens then BREAK closes that chunk and adds no empty one.
  EXPECT_EQ(chunks(repeat("cat", 75) + "BREAK").size(), 1u);
  EXPECT_EQ(chunks(repeat("cat", 75) + "BREAK dog").size(), 2u);
  EXPECT_EQ(chunks(repeat("cat", 74) + "BREAK dog").size(), 2u);
}

TEST_F(PromptChunks, PadTokenAfterTheFirstEosForSd2) {
  const auto sd2 = ClipTokenizer::load(test::model_dir("tiny-sd2") + "/tokenizer");
  ASSERT_NE(sd2.pad(), sd2.eos());
  const auto c = chunk_prompt(sd2, parse_prompt_attention("a (cat:1.2)"));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].ids, sd2.encode_padded("a cat"));
}

TEST_F(PromptChunks, TextThatIsNotUtf8IsAClearError) {
  EXPECT_THROW(chunks("\xFF\xFE (x)"), Error);
}

TEST(Emphasis, ScalesTokensAndRestoresTheMean) {
  const int64_t T = 4, D = 3;
  std::vector<float> z = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const std::vector<float> orig = z;
  apply_emphasis(z.data(), T, D, {1.f, 2.f, 1.f, 0.5f});
  double m0 = 0, m1 = 0;
  for (int i = 0; i < 12; ++i) m0 += orig[i], m1 += z[i];
  EXPECT_NEAR(m1 / 12, m0 / 12, 1e-5);
  const float ratio = z[0] / orig[0];
  EXPECT_NEAR(z[3] / orig[3], 2 * ratio, 1e-6);
  EXPECT_NEAR(z[9] / orig[9], 0.5 * ratio, 1e-6);
  std::vector<float> same = orig;
  apply_emphasis(same.data(), T, D, std::vector<float>(4, 1.f));
  EXPECT_EQ(same, orig);
}

// ---- encoding on tiny-sd1 ---------------------------------------------------------------------

class PromptEncoding : public ::testing::Test {
 protected:
  void SetUp() override {
    SDPAL_REQUIRE_FIXTURES();
    m_ = StableDiffusion::load(test::model_dir("tiny-sd1"));
  }
  std::unique_ptr<StableDiffusion> m_;
};

TEST_F(PromptEncoding, PlainShortPromptEqualsDiffusers) {
  const std::string p = "a red cube on top of a blue sphere";
  const auto e = encode_prompt_batch(*m_, {p}, {});
  const Tensor ref = encode_prompts(*m_, {p}, 1, nullptr);
  ASSERT_EQ(e.hidden.shape(), ref.shape());
  for (int64_t i = 0; i < ref.numel(); ++i) ASSERT_EQ(e.hidden[i], ref[i]) << i;
  // Weight 1 written out, and extra-network tags, change nothing.
  const auto w = encode_prompt_batch(*m_, {"(a red cube:1) on top of a blue sphere<lora:x:1>"}, {});
  ASSERT_EQ(w.tags.size(), 1u);
  for (int64_t i = 0; i < ref.numel(); ++i) ASSERT_EQ(w.hidden[i], ref[i]) << i;
}

TEST_F(PromptEncoding, LongPromptConcatenatesChunks) {
  std::string p;
  for (int i = 0; i < 100; ++i) p += "cat ";
  const auto e = encode_prompt_batch(*m_, {p}, {});
  const int64_t D = e.hidden.dim(2);
  ASSERT_EQ(e.hidden.shape(), (Shape{1, 154, D}));
  std::string first;
  for (int i = 0; i < 75; ++i) first += "cat ";
  const Tensor c0 = encode_prompts(*m_, {first}, 1, nullptr);
  for (int64_t i = 0; i < 77 * D; ++i) ASSERT_EQ(e.hidden[i], c0[i]) << i;
  // Without syntax: diffusers' truncation, with a warning.
  const auto plain = encode_prompt_batch(*m_, {p}, {1, false});
  EXPECT_EQ(plain.hidden.dim(1), 77);
  ASSERT_EQ(plain.warnings.size(), 1u);
  // A batch with a shorter prompt repeats its last vector (A1111's stack_conds).
  const auto b = encode_prompt_batch(*m_, {p, "a dog"}, {});
  ASSERT_EQ(b.hidden.shape(), (Shape{2, 154, D}));
  const float* row = b.hidden.data() + 154 * D;
  for (int64_t t = 77; t < 154; ++t)
    for (int64_t d = 0; d < D; ++d) ASSERT_EQ(row[t * D + d], row[76 * D + d]);
}

TEST_F(PromptEncoding, EmphasisChangesOnlyTheWeightedPrompt) {
  const auto a = encode_prompt_batch(*m_, {"a red cube"}, {});
  const auto b = encode_prompt_batch(*m_, {"a (red:1.4) cube"}, {});
  double diff = 0;
  for (int64_t i = 0; i < a.hidden.numel(); ++i) {
    ASSERT_TRUE(std::isfinite(b.hidden[i]));
    diff = std::max(diff, double(std::abs(a.hidden[i] - b.hidden[i])));
  }
  EXPECT_GT(diff, 1e-3);
}

TEST_F(PromptEncoding, NegativePromptPaddedWithEmptyChunks) {
  std::string p;
  for (int i = 0; i < 100; ++i) p += "cat ";
  const auto cond = encode_prompt_batch(*m_, {p}, {});
  const auto unc = encode_prompt_batch(*m_, {"blurry"}, {});
  const Tensor padded = pad_with_empty_chunks(*m_, unc.hidden, cond.hidden.dim(1), {});
  const Tensor empty = encode_prompts(*m_, {""}, 1, nullptr);
  const int64_t D = padded.dim(2);
  ASSERT_EQ(padded.dim(1), 154);
  for (int64_t i = 0; i < 77 * D; ++i) ASSERT_EQ(padded[i], unc.hidden[i]);
  for (int64_t i = 0; i < 77 * D; ++i) ASSERT_EQ(padded[77 * D + i], empty[i]);
  EXPECT_THROW(pad_with_empty_chunks(*m_, unc.hidden, 100, {}), Error);
}

TEST_F(PromptEncoding, GenerateWithALongPromptAndGuidance) {
  GenerateParams g;
  std::string p;
  for (int i = 0; i < 90; ++i) p += "(cat:1.1), ";
  g.prompts = {p};
  g.negative_prompts = {"blurry"};
  g.width = g.height = 64;
  g.steps = 2;
  g.seed = 1;
  const auto r = generate(*m_, g);
  for (int64_t i = 0; i < r.image01.numel(); ++i) ASSERT_TRUE(std::isfinite(r.image01[i]));
  g.prompt_syntax = false;
  const auto plain = generate(*m_, g);
  EXPECT_FALSE(plain.warnings.empty());
  double diff = 0;
  for (int64_t i = 0; i < r.latents.numel(); ++i)
    diff = std::max(diff, double(std::abs(r.latents[i] - plain.latents[i])));
  EXPECT_GT(diff, 0.0);
}

// Textual inversion: an embedding whose vectors are the token embeddings of "red cube" makes
// "a rdcb on a table" encode exactly as "a red cube on a table".
class TextualInversionTest : public test::TempDirTest {
 protected:
  void SetUp() override {
    test::TempDirTest::SetUp();
    SDPAL_REQUIRE_FIXTURES();
    m_ = StableDiffusion::load(test::model_dir("tiny-sd1"));
  }
  Tensor token_vectors(const std::string& text) {
    const auto ids = m_->tokenizer->tokenize(text);
    const TensorView& emb = m_->te_ws->get("text_model.embeddings.token_embedding.weight");
    const int64_t D = emb.shape[1];
    Tensor t({static_cast<int64_t>(ids.size()), D});
    for (size_t i = 0; i < ids.size(); ++i)
      convert_to_f32(emb.dtype, emb.data + ids[i] * D * dtype_size(emb.dtype), t.data() + i * D, D);
    return t;
  }
  void write(const std::string& name, const Tensor& t) {
    write_safetensors_f32(path(name + ".safetensors"), {{"emb_params", &t}});
  }
  std::unique_ptr<StableDiffusion> m_;
};

TEST_F(TextualInversionTest, EmbeddingEqualsTheTokensItWasMadeOf) {
  write("rdcb", token_vectors("red cube"));
  write("rdcb2", token_vectors("blue sphere on grass"));  // a longer name sharing a prefix
  const EmbeddingLibrary lib = EmbeddingLibrary::load_dir(path(""), *m_->tokenizer);
  ASSERT_EQ(lib.size(), 2u);
  PromptEncodingOptions with;
  with.embeddings = &lib;
  const auto got = encode_prompt_batch(*m_, {"a rdcb on a table"}, with);
  const auto want = encode_prompt_batch(*m_, {"a red cube on a table"}, {});
  ASSERT_EQ(got.hidden.shape(), want.hidden.shape());
  for (int64_t i = 0; i < want.hidden.numel(); ++i) ASSERT_EQ(got.hidden[i], want.hidden[i]) << i;
  // The longer name wins where both match; weights apply to its vectors.
  const auto longer = encode_prompt_batch(*m_, {"(rdcb2:1.2) at dusk"}, with);
  const auto spelled = encode_prompt_batch(*m_, {"(blue sphere on grass:1.2) at dusk"}, {});
  for (int64_t i = 0; i < spelled.hidden.numel(); ++i)
    ASSERT_NEAR(longer.hidden[i], spelled.hidden[i], 1e-6) << i;
  // Without the library the name is ordinary text.
  const auto plain = encode_prompt_batch(*m_, {"a rdcb on a table"}, {});
  double diff = 0;
  for (int64_t i = 0; i < want.hidden.numel(); ++i)
    diff = std::max(diff, double(std::abs(plain.hidden[i] - want.hidden[i])));
  EXPECT_GT(diff, 1e-4);
}

TEST_F(TextualInversionTest, EmbeddingThatDoesNotFitStartsTheNextChunk) {
  write("rdcb", token_vectors("red cube"));
  const EmbeddingLibrary lib = EmbeddingLibrary::load_dir(path(""), *m_->tokenizer);
  std::string p;
  for (int i = 0; i < 74; ++i) p += "cat ";
  ChunkingOptions co;
  co.embeddings = &lib;
  const auto chunks = chunk_prompt(*m_->tokenizer, parse_prompt_attention(p + "rdcb"), co);
  ASSERT_EQ(chunks.size(), 2u);
  ASSERT_EQ(chunks[1].embeddings.size(), 1u);
  EXPECT_EQ(chunks[1].embeddings[0].pos, 1);
  EXPECT_TRUE(chunks[0].embeddings.empty());
}

TEST_F(TextualInversionTest, BadEmbeddingsGiveClearErrors) {
  const Tensor wide = Tensor::full({2, 48}, 0.1f);
  write("wide", wide);
  const EmbeddingLibrary lib = EmbeddingLibrary::load_dir(path(""), *m_->tokenizer);
  PromptEncodingOptions with;
  with.embeddings = &lib;
  try {
    encode_prompt_batch(*m_, {"a wide shot"}, with);
    ADD_FAILURE() << "a 48-wide embedding was used in a 32-wide encoder";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("width 48"), std::string::npos) << e.what();
  }
  const Tensor a = Tensor::full({2, 32}, 0.1f), b = Tensor::full({2, 32}, 0.2f);
  write_safetensors_f32(path("two.safetensors"), {{"a", &a}, {"b", &b}});
  EXPECT_THROW(EmbeddingLibrary::load_dir(path(""), *m_->tokenizer), Error);
  EXPECT_THROW(EmbeddingLibrary::load_dir(path("nothere"), *m_->tokenizer), Error);
}

}  // namespace
