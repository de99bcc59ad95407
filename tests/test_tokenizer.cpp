// CLIP tokenizer against the fixtures' `tokenizer` cases (transformers' slow CLIPTokenizer with
// ftfy), plus behaviour checks that compare the tokenizer with itself (no hard-coded ids).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/unicode_text.h"
#include "pipeline/ftfy_fix.h"
#include "pipeline/tokenizer.h"
#include "support/fixtures.h"

using namespace sdpal;
namespace fs = std::filesystem;

namespace {

std::string tokenizer_dir(const std::string& fixture) {
  return test::model_dir(fixture) + "/tokenizer";
}

// Rows of an int64 [N, L] tensor, read from the raw I64 view.
std::vector<std::vector<int64_t>> int64_rows(const SafetensorsFile& file, const std::string& name) {
  const TensorView& v = file.get(name);
  EXPECT_EQ(v.dtype, DType::I64);
  EXPECT_EQ(v.shape.size(), 2u);
  const int64_t rows = v.shape[0], cols = v.shape[1];
  std::vector<std::vector<int64_t>> out(rows, std::vector<int64_t>(cols));
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out[r].data(), v.data + r * cols * sizeof(int64_t), cols * sizeof(int64_t));
  return out;
}

std::vector<int64_t> widen(const std::vector<int>& ids) { return {ids.begin(), ids.end()}; }

// A scratch folder that is removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("sdpal_tok_" + std::to_string(::getpid()) + "_" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
  }
};

void expect_error_naming(const std::string& dir, const std::string& file) {
  try {
    ClipTokenizer::load(dir);
    ADD_FAILURE() << "loading " << dir << " should fail because of " << file;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
  }
}

class TokenizerFixture : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(TokenizerFixture, MatchesGoldenIds) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string fixture = GetParam();
  const test::Case c = test::load_case(fixture, "tokenizer");
  const ClipTokenizer tok = ClipTokenizer::load(tokenizer_dir(fixture));
  const auto& params = c.params();
  const auto& prompts = params["prompts"];
  const auto& untruncated = params["untruncated_ids_tokenizer"];
  const auto golden = int64_rows(*c.file, "out.input_ids");

  ASSERT_EQ(prompts.size(), golden.size());
  ASSERT_EQ(untruncated.size(), golden.size());
  EXPECT_EQ(tok.pad(), params["pad_token_id_tokenizer"].get<int>());
  EXPECT_EQ(tok.max_length(), static_cast<int>(golden[0].size()));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string prompt = prompts[i].get<std::string>();
    SCOPED_TRACE(fixture + " prompt " + std::to_string(i) + ": " + prompt);
    const auto want_full = untruncated[i].get<std::vector<int64_t>>();
    EXPECT_EQ(widen(tok.encode(prompt)), want_full);

    int dropped = -1;
    EXPECT_EQ(widen(tok.encode_padded(prompt, &dropped)), golden[i]);
    const int64_t overflow = static_cast<int64_t>(want_full.size()) - tok.max_length();
    EXPECT_EQ(dropped, std::max<int64_t>(overflow, 0));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerFixture,
                         ::testing::Values("tiny-sd1", "tiny-sd2", "demo-fashion"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(ClipTokenizer, ReportsTruncation) {
  SDPAL_REQUIRE_FIXTURES();
  const ClipTokenizer tok = ClipTokenizer::load(tokenizer_dir("tiny-sd1"));
  const int word = tok.tokenize("cat").at(0);
  const int room = tok.max_length() - 2;

  std::string prompt;
  for (int i = 0; i < room + 25; ++i) prompt += "cat ";
  int dropped = -1;
  std::vector<int> ids = tok.encode_padded(prompt, &dropped);
  EXPECT_EQ(dropped, 25);
  ASSERT_EQ(static_cast<int>(ids.size()), tok.max_length());
  EXPECT_EQ(ids.front(), tok.bos());
  EXPECT_EQ(ids.back(), tok.eos());
  for (int i = 1; i <= room; ++i) EXPECT_EQ(ids[i], word);
  EXPECT_EQ(static_cast<int>(tok.encode(prompt).size()), room + 25 + 2);

  // Exactly full: nothing dropped, no padding.
  prompt.clear();
  for (int i = 0; i < room; ++i) prompt += "cat ";
  ids = tok.encode_padded(prompt, &dropped);
  EXPECT_EQ(dropped, 0);
  EXPECT_EQ(ids.back(), tok.eos());
  EXPECT_EQ(ids[room], word);
}

TEST(ClipTokenizer, PadsWithConfiguredPadToken) {
  SDPAL_REQUIRE_FIXTURES();
  const ClipTokenizer sd1 = ClipTokenizer::load(tokenizer_dir("tiny-sd1"));
  const ClipTokenizer sd2 = ClipTokenizer::load(tokenizer_dir("tiny-sd2"));
  EXPECT_EQ(sd1.pad(), sd1.eos());
  EXPECT_NE(sd2.pad(), sd2.eos());
  int dropped = -1;
  const std::vector<int> ids = sd2.encode_padded("a cat", &dropped);
  EXPECT_EQ(dropped, 0);
  EXPECT_EQ(ids[3], sd2.eos());
  for (size_t i = 4; i < ids.size(); ++i) EXPECT_EQ(ids[i], sd2.pad());
  // SD 2.x's pad token "!" is matched literally before BPE; SD 1.x merges "!!!" instead.
  EXPECT_EQ(sd2.tokenize("!!!"), std::vector<int>(3, sd2.pad()));
  EXPECT_EQ(sd1.tokenize("!!!").size(), 1u);
}

TEST(ClipTokenizer, TextCleanupLikeFtfy) {
  SDPAL_REQUIRE_FIXTURES();
  const ClipTokenizer tok = ClipTokenizer::load(tokenizer_dir("tiny-sd1"));
  auto same = [&](const std::string& a, const std::string& b) {
    EXPECT_EQ(tok.encode(a), tok.encode(b)) << "'" << a << "' vs '" << b << "'";
  };
  same("it\u2019s a \u201Cdog\u201D", "it's a \"dog\"");  // curly quotes
  same("\uFB01ne \uFB02owers", "fine flowers");           // Latin ligatures
  same("\uFF2C\uFF2F\uFF35\uFF24\u3000\uFF4E\uFF4F\uFF49\uFF53\uFF45", "loud noise");  // widths
  same("cafe\u0301", "caf\u00E9");                                                     // NFC
  same("\u00C9COLE \u0130STANBUL \u039F\u0394\u039F\u03A3",
       "\u00E9cole i\u0307stanbul \u03BF\u03B4\u03BF\u03C2");
  same("a&amp;b &lt;3 &eacute;t&eacute; &#233;&#x41;", "a&b <3 \u00E9t\u00E9 \u00E9a");
  same("&amp;lt;3", "<3");                  // repeated until stable
  same("x\x1b[31mred\x1b[0m\x01", "xred");  // terminal escapes, controls
  same("tab\tnew\r\nline\u2028  end ", "tab new line end");
  same("a <|ENDOFTEXT|> b", "a <|endoftext|> b");  // matched by the pre-tokenizer
  // A line with a literal '<' keeps its entities (ftfy's "auto" HTML mode).
  EXPECT_NE(tok.encode("&lt;b&gt; <"), tok.encode("<b> <"));
  // Unknown or unterminated references stay as written.
  EXPECT_NE(tok.encode("&notanentity;"), tok.encode("notanentity"));
}

TEST(ClipTokenizer, SpecialTokensInText) {
  SDPAL_REQUIRE_FIXTURES();
  const ClipTokenizer tok = ClipTokenizer::load(tokenizer_dir("tiny-sd1"));
  const std::vector<int> ids = tok.tokenize("<|startoftext|>x<|endoftext|>");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], tok.bos());
  EXPECT_EQ(ids[2], tok.eos());
  EXPECT_TRUE(tok.tokenize("").empty());
  EXPECT_TRUE(tok.tokenize(" \t\n ").empty());
  EXPECT_EQ(tok.encode(""), (std::vector<int>{tok.bos(), tok.eos()}));
}

TEST(ClipTokenizer, RejectsInvalidUtf8) {
  SDPAL_REQUIRE_FIXTURES();
  const ClipTokenizer tok = ClipTokenizer::load(tokenizer_dir("tiny-sd1"));
  EXPECT_THROW(tok.tokenize("bad \xC3("), Error);
  EXPECT_THROW(tok.tokenize("\xED\xA0\x80"), Error);  // encoded surrogate
}

// Load time is a benchmark matter, not a test's; here: the whole vocabulary and the merges.
TEST(ClipTokenizer, LoadsTheWholeVocabulary) {
  SDPAL_REQUIRE_FIXTURES();
  const ClipTokenizer tok = ClipTokenizer::load(tokenizer_dir("tiny-sd1"));
  EXPECT_EQ(tok.vocab_size(), 49408);
  // CLIP's ids for these words (single BPE tokens) and a word that needs merges.
  EXPECT_EQ(tok.tokenize("a photo of a cat"), (std::vector<int>{320, 1125, 539, 320, 2368}));
  EXPECT_EQ(tok.tokenize("photograph").size(), 1u);
}

TEST(ClipTokenizer, MissingOrMalformedFilesAreNamed) {
  TempDir dir;
  expect_error_naming(dir.path.string(), "vocab.json");

  dir.write("vocab.json", "{not json");
  expect_error_naming(dir.path.string(), "vocab.json");

  dir.write("vocab.json", R"({"a": 0, "b": "one"})");
  expect_error_naming(dir.path.string(), "vocab.json");

  dir.write("vocab.json",
            R"({"a": 0, "b": 1, "a</w>": 2, "<|startoftext|>": 3, "<|endoftext|>": 4})");
  expect_error_naming(dir.path.string(), "merges.txt");  // missing

  dir.write("merges.txt", "");
  expect_error_naming(dir.path.string(), "merges.txt");  // empty

  dir.write("merges.txt", "#version: 0.2\na b c\n");
  expect_error_naming(dir.path.string(), "merges.txt");  // not a pair

  dir.write("merges.txt", "#version: 0.2\nb a</w>\n");
  dir.write("tokenizer_config.json", R"({"model_max_length": 77, "pad_token": "<pad>"})");
  expect_error_naming(dir.path.string(), "<pad>");  // pad token without an id

  dir.write("tokenizer_config.json", R"({"model_max_length": 77})");
  const ClipTokenizer tok = ClipTokenizer::load(dir.path.string());
  EXPECT_EQ(tok.bos(), 3);
  EXPECT_EQ(tok.eos(), 4);
  EXPECT_EQ(tok.pad(), 4);
  EXPECT_EQ(tok.max_length(), 77);
  EXPECT_EQ(tok.tokenize("a"), std::vector<int>{2});
  // Symbols missing from the vocab ("ba</w>" after the merge, "b</w>") map to unk = <|endoftext|>.
  EXPECT_EQ(tok.tokenize("ba"), std::vector<int>{4});
  EXPECT_EQ(tok.tokenize("ab"), (std::vector<int>{0, 4}));
}

TEST(FtfyFix, HtmlReferences) {
  auto fix = [](const std::u32string& s) { return unescape_html_like_ftfy(s); };
  EXPECT_EQ(fix(U"&amp; &AMP; &EACUTE; &SZLIG; &nTILDE;"), U"& & \u00C9 SS &nTILDE;");
  EXPECT_EQ(fix(U"&#65;&#x42;&#X43;&#59;&#128;&#0;&#1;&#xD800;&#99999999999999;"),
            U"ABC&#59;\u20AC\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(fix(U"&#65x; &abcdefghijklmnopqrstuvwxyz; &;"),
            U"&#65x; &abcdefghijklmnopqrstuvwxyz; &;");
}

TEST(FtfyFix, StopsUnescapingAfterALineWithLessThan) {
  EXPECT_EQ(fix_text_like_ftfy(U"&amp;\n<&amp;\n&amp;"), U"&\n<&amp;\n&amp;");
  EXPECT_EQ(fix_text_like_ftfy(U"\u0085x\u0092"), U"\u2026x'");  // C1 controls as Windows-1252
}
