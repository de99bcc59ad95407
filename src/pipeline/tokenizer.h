// CLIP byte-level BPE tokenizer, matching transformers' slow CLIPTokenizer (with ftfy installed)
// as Stable Diffusion pipelines call it.
//
// Per prompt: split off literal special tokens ("<|startoftext|>", "<|endoftext|>", the pad
// token, e.g. "!" for SD 2.x), then for each remaining piece: ftfy-style repair (ftfy_fix.h),
// whitespace runs -> one space, strip, full Unicode lower-case, the CLIP pre-token regex
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// (case-insensitive), UTF-8 bytes mapped to printable symbols, and BPE with '</w>' marking the
// end of each pre-token.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace sdpal {

class ClipTokenizer {
 public:
  // Loads a diffusers `tokenizer/` folder: vocab.json and merges.txt (required),
  // tokenizer_config.json and special_tokens_map.json (special tokens, model_max_length; the
  // latter wins), added_tokens.json (optional). Throws sdpal::Error naming the file at fault.
  static ClipTokenizer load(const std::string& dir);
  // The same with the special-token files (tokenizer_config.json, special_tokens_map.json) read
  // from `config_dir` instead: SD 1.x and 2.x share CLIP's vocabulary and merges but not the
  // padding token, so a single-file checkpoint gets the shipped configs of its architecture.
  static ClipTokenizer load(const std::string& dir, const std::string& config_dir);

  ClipTokenizer(ClipTokenizer&&) noexcept;
  ClipTokenizer& operator=(ClipTokenizer&&) noexcept;
  ~ClipTokenizer();

  // Token ids of the prompt without BOS/EOS. `text` must be UTF-8 (sdpal::Error otherwise).
  std::vector<int> tokenize(const std::string& text) const;
  // BOS + ids + EOS, not truncated (long-prompt chunking starts from this).
  std::vector<int> encode(const std::string& text) const;
  // Exactly max_length() ids as the pipelines use them: BOS, at most max_length()-2 prompt
  // tokens, EOS, then pad ids. If `dropped_tokens` is given it receives how many prompt
  // tokens were cut off (0 when the prompt fits).
  std::vector<int> encode_padded(const std::string& text, int* dropped_tokens = nullptr) const;

  int bos() const { return bos_id_; }
  int eos() const { return eos_id_; }
  int pad() const { return pad_id_; }
  int unk() const { return unk_id_; }
  int max_length() const { return max_length_; }  // model_max_length, 77 for CLIP
  // Id of a vocabulary symbol or added token (e.g. ",</w>"), -1 if there is none.
  int vocab_id(const std::string& symbol) const;
  // Number of ids in vocab.json plus added tokens (largest id + 1).
  int vocab_size() const { return vocab_size_; }

 private:
  struct SpecialToken;
  struct BpeCache;
  ClipTokenizer();

  std::vector<int> encode_text_piece(const std::u32string& piece) const;
  std::vector<int> bpe_ids(const std::string& word) const;  // cached BPE of one pre-token
  std::vector<std::string> bpe_merge(std::vector<std::string> symbols) const;
  int id_of(const std::string& token) const;

  std::unordered_map<std::string, int> vocab_;        // byte-level symbol string -> id
  std::unordered_map<std::string, int> added_;        // added_tokens.json
  std::unordered_map<std::string, int> merge_ranks_;  // "left right" -> rank
  std::vector<SpecialToken> specials_;                // text that is never split
  int bos_id_ = 0, eos_id_ = 0, pad_id_ = 0, unk_id_ = 0;
  int max_length_ = 77;
  int vocab_size_ = 0;
  std::unique_ptr<BpeCache> cache_;
};

}  // namespace sdpal
