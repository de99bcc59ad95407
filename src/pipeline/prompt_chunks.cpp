#include "pipeline/prompt_chunks.h"

#include <algorithm>

namespace sdpal {
namespace {

class ChunkBuilder {
 public:
  explicit ChunkBuilder(const ClipTokenizer& tok)
      : tok_(tok), length_(tok.max_length() - 2), comma_(tok.vocab_id(",</w>")) {}

  void add_run(const std::vector<int>& tokens, float weight, const ChunkingOptions& opt) {
    const int backtrack = opt.comma_padding_backtrack;
    for (size_t position = 0; position < tokens.size();) {
      const int token = tokens[position];
      if (token == comma_) {
        last_comma_ = static_cast<int>(ids_.size());
      } else if (backtrack != 0 && full() && last_comma_ != -1 &&
                 static_cast<int>(ids_.size()) - last_comma_ <= backtrack) {
        // Move the tokens after the last comma to the next chunk.
        const size_t cut = last_comma_ + 1;
        std::vector<int> ids(ids_.begin() + cut, ids_.end());
        std::vector<float> mults(mults_.begin() + cut, mults_.end());
        // Embeddings after the cut move with their tokens (A1111 leaves them behind).
        std::vector<EmbeddingPlacement> moved;
        std::erase_if(placed_, [&](const EmbeddingPlacement& e) {
          if (e.pos < static_cast<int64_t>(cut)) return false;
          moved.push_back({e.pos - static_cast<int64_t>(cut), e.embedding});
          return true;
        });
        ids_.resize(cut);
        mults_.resize(cut);
        next_chunk();
        ids_ = std::move(ids);
        mults_ = std::move(mults);
        placed_ = std::move(moved);
      }
      if (full()) next_chunk();
      const TextualInversion* emb =
          opt.embeddings ? opt.embeddings->find_at(tokens, position) : nullptr;
      if (!emb) {
        ids_.push_back(token);
        mults_.push_back(weight);
        ++position;
        continue;
      }
      const int64_t n = emb->vectors.dim(0);
      if (static_cast<int64_t>(ids_.size()) + n > length_) next_chunk();
      placed_.push_back({static_cast<int64_t>(ids_.size()), emb});
      ids_.insert(ids_.end(), n, 0);
      mults_.insert(mults_.end(), n, weight);
      position += emb->ids.size();
    }
  }

  void next_chunk() {
    PromptChunk c;
    c.ids.reserve(length_ + 2);
    c.ids.push_back(tok_.bos());
    c.ids.insert(c.ids.end(), ids_.begin(), ids_.end());
    c.ids.resize(length_ + 1, tok_.eos());
    c.ids.push_back(tok_.eos());
    if (tok_.pad() != tok_.eos()) {
      auto first_eos = std::find(c.ids.begin(), c.ids.end(), tok_.eos());
      std::fill(first_eos + 1, c.ids.end(), tok_.pad());
    }
    c.multipliers.assign(1, 1.f);
    c.multipliers.insert(c.multipliers.end(), mults_.begin(), mults_.end());
    c.multipliers.resize(length_ + 2, 1.f);
    for (const EmbeddingPlacement& e : placed_) {
      // Positions count from after BOS; a placement beyond the chunk (an embedding of more than
      // 75 vectors) is cut to what fits, as A1111 does.
      if (e.pos + 1 < length_ + 1) c.embeddings.push_back({e.pos + 1, e.embedding});
    }
    chunks_.push_back(std::move(c));
    ids_.clear();
    mults_.clear();
    placed_.clear();
    last_comma_ = -1;
  }

  std::vector<PromptChunk> finish() {
    if (!ids_.empty() || chunks_.empty()) next_chunk();
    return std::move(chunks_);
  }

 private:
  bool full() const { return static_cast<int>(ids_.size()) == length_; }

  const ClipTokenizer& tok_;
  const int length_;
  const int comma_;
  std::vector<int> ids_;
  std::vector<float> mults_;
  std::vector<EmbeddingPlacement> placed_;  // positions counted from the first token after BOS
  int last_comma_ = -1;
  std::vector<PromptChunk> chunks_;
};

}  // namespace

std::vector<PromptChunk> chunk_prompt(const ClipTokenizer& tok, const std::vector<PromptRun>& runs,
                                      const ChunkingOptions& opt) {
  ChunkBuilder b(tok);
  for (const PromptRun& r : runs) {
    if (is_chunk_break(r)) {
      b.next_chunk();
      continue;
    }
    b.add_run(tok.tokenize(r.text), static_cast<float>(r.weight), opt);
  }
  return b.finish();
}

PromptChunk empty_chunk(const ClipTokenizer& tok) { return chunk_prompt(tok, {{"", 1.0}}).front(); }

}  // namespace sdpal
