// The CLIP tokenizer (pipeline/tokenizer.h, with ftfy_fix.h) on prompt bytes in any encoding: the
// raw bytes (UTF-8 or not: invalid UTF-8 must be refused with sdpal::Error) and the same bytes
// read as Latin-1 (always valid UTF-8 once converted). Invariants: ids within the vocabulary;
// encode() is BOS + tokenize() + EOS; encode_padded() has exactly max_length() ids, BOS first,
// EOS after the kept tokens, pad after it, and reports the dropped count; results repeat exactly
// (the BPE cache must not change them).
#include "fuzz/fuzz_support.h"
#include "pipeline/sd_model.h"
#include "pipeline/tokenizer.h"

using namespace sdpal;

namespace {

const ClipTokenizer& tokenizer() {
  static const ClipTokenizer tok = ClipTokenizer::load(default_model_path() + "/tokenizer");
  return tok;
}

std::string latin1_to_utf8(std::string_view s) {
  std::string r;
  for (unsigned char c : s) {
    if (c < 0x80) {
      r.push_back(static_cast<char>(c));
    } else {
      r.push_back(static_cast<char>(0xC0 | (c >> 6)));
      r.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return r;
}

void check(const ClipTokenizer& tok, const std::string& text) {
  const std::vector<int> ids = tok.tokenize(text);
  for (int id : ids)
    FUZZ_CHECK(id >= 0 && id < tok.vocab_size(), "id " + std::to_string(id) + " out of range");
  FUZZ_CHECK(ids.size() <= 4 * text.size() + 4, "more tokens than the text can hold");
  FUZZ_CHECK(tok.tokenize(text) == ids, "tokenizing twice gives different ids");
  const std::vector<int> enc = tok.encode(text);
  FUZZ_CHECK(enc.size() == ids.size() + 2 && enc.front() == tok.bos() && enc.back() == tok.eos() &&
                 std::equal(ids.begin(), ids.end(), enc.begin() + 1),
             "encode() is not BOS + tokenize() + EOS");
  int dropped = -1;
  const std::vector<int> pad = tok.encode_padded(text, &dropped);
  const size_t max = static_cast<size_t>(tok.max_length());
  FUZZ_CHECK(pad.size() == max, "encode_padded() length " + std::to_string(pad.size()));
  const size_t kept = std::min(ids.size(), max - 2);
  FUZZ_CHECK(dropped == static_cast<int>(ids.size() - kept), "wrong dropped count");
  FUZZ_CHECK(pad[0] == tok.bos() && pad[kept + 1] == tok.eos(), "BOS/EOS misplaced");
  FUZZ_CHECK(std::equal(ids.begin(), ids.begin() + kept, pad.begin() + 1), "kept tokens differ");
  for (size_t i = kept + 2; i < max; ++i) FUZZ_CHECK(pad[i] == tok.pad(), "padding is not pad");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string raw(fuzz::as_text(data, size));
  FUZZ_EXPECT_ERRORS(check(tokenizer(), raw));
  check(tokenizer(), latin1_to_utf8(raw));  // valid UTF-8: must be accepted
  return 0;
}
