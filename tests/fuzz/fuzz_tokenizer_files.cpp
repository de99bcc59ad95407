// The CLIP tokenizer's file loaders (ClipTokenizer::load): vocab.json, merges.txt,
// special_tokens_map.json and added_tokens.json, all from one input split at lines "%%%%":
//   <vocab.json>\n%%%%\n<merges.txt>\n%%%%\n<special_tokens_map.json>\n%%%%\n<added_tokens.json>
// (missing parts: the optional files are absent). Invariants of a loaded tokenizer: special ids
// and every id it produces for a few prompts lie within vocab_size(), and max_length() is at
// least 2 (room for BOS and EOS).
#include "fuzz/fuzz_support.h"
#include "pipeline/tokenizer.h"

using namespace sdpal;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::ScratchDir& dir = fuzz::scratch();
  dir.clear();
  auto [vocab, rest] = fuzz::split_at(fuzz::as_text(data, size), "\n%%%%\n");
  auto [merges, rest2] = fuzz::split_at(rest, "\n%%%%\n");
  auto [special, added] = fuzz::split_at(rest2, "\n%%%%\n");
  dir.write("tok/vocab.json", vocab);
  dir.write("tok/merges.txt", merges);
  if (!special.empty()) dir.write("tok/special_tokens_map.json", special);
  if (!added.empty()) dir.write("tok/added_tokens.json", added);
  FUZZ_EXPECT_ERRORS({
    const ClipTokenizer tok = ClipTokenizer::load((dir.path() / "tok").string());
    const int n = tok.vocab_size();
    FUZZ_CHECK(n > 0, "empty vocabulary accepted");
    for (int id : {tok.bos(), tok.eos(), tok.pad(), tok.unk()})
      FUZZ_CHECK(id >= 0 && id < n, "special id " + std::to_string(id) + " outside the vocabulary");
    FUZZ_CHECK(tok.max_length() >= 2, "max_length " + std::to_string(tok.max_length()));
    for (const char* prompt : {"a photo of a cat", "lowest  ", "<|startoftext|>x!<|endoftext|>",
                               "ünïcödé ＡＢ ﬁ &amp; 123"}) {
      const std::vector<int> ids = tok.encode_padded(prompt);
      FUZZ_CHECK(ids.size() == static_cast<size_t>(tok.max_length()), "padded length");
      for (int id : ids)
        FUZZ_CHECK(id >= 0 && id < n, "id " + std::to_string(id) + " outside the vocabulary");
    }
  });
  return 0;
}
