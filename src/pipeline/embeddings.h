// Textual-inversion embeddings as A1111 uses them: every .safetensors file of a folder is an
// embedding named by its file name (one tensor [n, D] or [D], e.g. "emb_params"; SDXL files hold
// "clip_l" and "clip_g"). Where the tokens of a name appear in a prompt, its n vectors replace
// them as token embeddings (stable-diffusion-webui's EmbeddingDatabase and EmbeddingsWithFixes);
// the longest name wins where several match.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "pipeline/tokenizer.h"

namespace sdpal {

struct TextualInversion {
  std::string name, path;
  std::vector<int> ids;  // the name's tokens
  Tensor vectors;        // [n, D]: for SD 1/2, or SDXL's clip_l
  Tensor vectors_g;      // SDXL's clip_g [n, D2], else empty
};

class EmbeddingLibrary {
 public:
  EmbeddingLibrary() = default;
  // Reads every *.safetensors file in `dir` (not recursively). Throws sdpal::Error naming a file
  // that is not an embedding (several tensors without clip_l/clip_g, or not 1-D/2-D).
  static EmbeddingLibrary load_dir(const std::string& dir, const ClipTokenizer& tok);
  // The embedding whose name's tokens start at tokens[pos] (longest first), or null.
  const TextualInversion* find_at(const std::vector<int>& tokens, size_t pos) const;
  size_t size() const { return all_.size(); }

 private:
  std::vector<TextualInversion> all_;
  std::map<int, std::vector<size_t>> by_first_;  // first token -> indices, longest name first
};

}  // namespace sdpal
