// A1111's long-prompt chunking (stable-diffusion-webui sd_hijack_clip.tokenize_line): the
// weighted runs of a parsed prompt are tokenized and packed into chunks of 75 tokens, each
// encoded separately as BOS + 75 ids + EOS (EOS-padded, and for tokenizers with another pad id,
// such as SD 2.x's '!', everything after the first EOS becomes that pad id). A chunk that fills
// up within 20 tokens of a comma is cut after the comma and the rest moves to the next chunk
// (comma_padding_backtrack); BREAK starts a new chunk. Multipliers carry each token's weight.
#pragma once
#include <vector>

#include "pipeline/embeddings.h"
#include "pipeline/prompt_syntax.h"
#include "pipeline/tokenizer.h"

namespace sdpal {

// A textual-inversion embedding placed in a chunk: its vectors replace the token embeddings at
// ids [pos, pos + vectors) (those ids are 0, as in A1111).
struct EmbeddingPlacement {
  int64_t pos = 0;
  const TextualInversion* embedding = nullptr;
};

struct PromptChunk {
  std::vector<int> ids;            // tokenizer.max_length() ids (77)
  std::vector<float> multipliers;  // one per id; 1 for BOS, EOS and padding
  std::vector<EmbeddingPlacement> embeddings;
};

struct ChunkingOptions {
  int comma_padding_backtrack = 20;  // A1111's default; 0 disables it
  // Embedding names to look for in the tokens (null: none). An embedding never straddles two
  // chunks: one that does not fit starts the next.
  const EmbeddingLibrary* embeddings = nullptr;
};

// Never empty: an empty prompt gives one chunk (BOS, EOS, padding).
std::vector<PromptChunk> chunk_prompt(const ClipTokenizer& tok, const std::vector<PromptRun>& runs,
                                      const ChunkingOptions& opt = {});

// The chunk of an empty prompt, which pads a shorter prompt's chunk list in a batch.
PromptChunk empty_chunk(const ClipTokenizer& tok);

}  // namespace sdpal
