#include "pipeline/prompt_encoding.h"

#include <algorithm>
#include <map>

#include "core/error.h"
#include "pipeline/prompt_chunks.h"
#include "pipeline/prompt_syntax.h"

namespace sdpal {
namespace {

double mean_of(const float* z, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += z[i];
  return s / static_cast<double>(n);
}

const ClipTextModel& encoder(const StableDiffusion& m, const PromptEncodingOptions& opt) {
  return opt.text_encoder ? *opt.text_encoder : *m.text_encoder;
}

Tensor encode_chunks(const ClipTextModel& te, const std::vector<PromptChunk>& chunks,
                     int clip_skip) {
  std::vector<std::vector<int>> ids;
  std::vector<TokenEmbeddingOverride> overrides;
  const int64_t width = te.config().hidden;
  for (size_t c = 0; c < chunks.size(); ++c) {
    ids.push_back(chunks[c].ids);
    for (const EmbeddingPlacement& e : chunks[c].embeddings) {
      const Tensor& v = e.embedding->vectors;
      SDPAL_CHECK(v.dim(1) == width, "embedding " + e.embedding->path + " has vectors of width " +
                                         std::to_string(v.dim(1)) + ", this text encoder's are " +
                                         std::to_string(width) +
                                         " wide (an embedding for another architecture?)");
      const int64_t n =
          std::min<int64_t>(v.dim(0), static_cast<int64_t>(chunks[c].ids.size()) - 1 - e.pos);
      overrides.push_back({static_cast<int64_t>(c), e.pos, n, v.data()});
    }
  }
  Tensor h = te.forward(ids, clip_skip - 1, overrides).hidden;  // [k, 77, D]
  const int64_t T = h.dim(1), D = h.dim(2);
  for (size_t c = 0; c < chunks.size(); ++c)
    apply_emphasis(h.data() + c * T * D, T, D, chunks[c].multipliers);
  return std::move(h).reshaped({1, static_cast<int64_t>(chunks.size()) * T, D});
}

// One prompt with A1111 semantics: [1, 77*k, D].
Tensor encode_with_syntax(const StableDiffusion& m, const std::string& text,
                          const PromptEncodingOptions& opt, std::vector<ExtraNetworkTag>* tags) {
  const std::string plain = strip_extra_networks(text, tags);
  ChunkingOptions co;
  co.embeddings = opt.embeddings;
  return encode_chunks(encoder(m, opt),
                       chunk_prompt(*m.tokenizer, parse_prompt_attention(plain), co),
                       opt.clip_skip);
}

// One prompt as diffusers encodes it: [1, 77, D].
Tensor encode_plain(const StableDiffusion& m, const std::string& text,
                    const PromptEncodingOptions& opt, std::vector<std::string>* warnings) {
  int dropped = 0;
  std::vector<std::vector<int>> ids{m.tokenizer->encode_padded(text, &dropped)};
  if (dropped > 0)
    warnings->push_back("prompt truncated: " + std::to_string(dropped) +
                        " token(s) beyond the text encoder's 77-token limit were dropped "
                        "(prompt syntax is off; with it on, long prompts are chunked)");
  return encoder(m, opt).forward(ids, opt.clip_skip - 1).hidden;
}

}  // namespace

void apply_emphasis(float* z, int64_t T, int64_t D, const std::vector<float>& weights) {
  SDPAL_CHECK(static_cast<int64_t>(weights.size()) == T,
              "emphasis: " + std::to_string(weights.size()) + " weights for " + std::to_string(T) +
                  " tokens");
  if (std::all_of(weights.begin(), weights.end(), [](float w) { return w == 1.f; })) return;
  const float before = static_cast<float>(mean_of(z, T * D));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t d = 0; d < D; ++d) z[t * D + d] *= weights[t];
  const float after = static_cast<float>(mean_of(z, T * D));
  const float ratio = before / after;
  for (int64_t i = 0; i < T * D; ++i) z[i] *= ratio;
}

EncodedPrompts encode_prompt_batch(const StableDiffusion& m, const std::vector<std::string>& texts,
                                   const PromptEncodingOptions& opt) {
  SDPAL_CHECK(!texts.empty(), "no prompt to encode");
  EncodedPrompts out;
  std::map<std::string, Tensor> cache;
  std::vector<const Tensor*> rows;
  for (const auto& t : texts) {
    auto it = cache.find(t);
    if (it == cache.end()) {
      Tensor h = opt.syntax ? encode_with_syntax(m, t, opt, &out.tags)
                            : encode_plain(m, t, opt, &out.warnings);
      it = cache.emplace(t, std::move(h)).first;
    }
    rows.push_back(&it->second);
  }
  int64_t T = 0;
  for (const Tensor* r : rows) T = std::max(T, r->dim(1));
  const int64_t D = rows.front()->dim(2);
  out.hidden = Tensor({static_cast<int64_t>(rows.size()), T, D});
  for (size_t b = 0; b < rows.size(); ++b) {
    const int64_t t = rows[b]->dim(1);
    float* dst = out.hidden.data() + b * T * D;
    std::copy_n(rows[b]->data(), t * D, dst);
    for (int64_t k = t; k < T; ++k) std::copy_n(rows[b]->data() + (t - 1) * D, D, dst + k * D);
  }
  return out;
}

Tensor pad_with_empty_chunks(const StableDiffusion& m, const Tensor& hidden, int64_t tokens,
                             const PromptEncodingOptions& opt) {
  const int64_t N = hidden.dim(0), T = hidden.dim(1), D = hidden.dim(2);
  if (tokens == T) return hidden;
  const PromptChunk empty = empty_chunk(*m.tokenizer);
  const int64_t C = static_cast<int64_t>(empty.ids.size());
  SDPAL_CHECK(tokens > T && (tokens - T) % C == 0,
              "cannot pad " + std::to_string(T) + " context tokens to " + std::to_string(tokens));
  const Tensor e = encoder(m, opt).forward({empty.ids}, opt.clip_skip - 1).hidden;  // [1, C, D]
  Tensor out({N, tokens, D});
  for (int64_t b = 0; b < N; ++b) {
    float* dst = out.data() + b * tokens * D;
    std::copy_n(hidden.data() + b * T * D, T * D, dst);
    for (int64_t k = T; k < tokens; k += C) std::copy_n(e.data(), C * D, dst + k * D);
  }
  return out;
}

}  // namespace sdpal
