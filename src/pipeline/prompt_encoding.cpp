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

const ClipTextModel& encoder_2(const StableDiffusion& m, const PromptEncodingOptions& opt) {
  return opt.text_encoder_2 ? *opt.text_encoder_2 : *m.text_encoder_2;
}

bool is_sdxl(const StableDiffusion& m) { return m.text_encoder_2 != nullptr; }

// One prompt's encoding: hidden [1, T, D] and, for SDXL, pooled [1, P].
struct Encoded {
  Tensor hidden, pooled;
};

// Which layer and whether the final layer norm applies: SD 1/2 take the normed output of the
// layer clip_skip counts from the end; SDXL the raw output one layer further back (diffusers'
// hidden_states[-(clip_skip + 2)], its clip_skip being A1111's minus 1).
int skip_layers(const StableDiffusion& m, int clip_skip) {
  return is_sdxl(m) ? clip_skip : clip_skip - 1;
}

// Encodes chunks with one encoder: [1, 77*k, D]; pooled (if given) receives the first chunk's
// projected pooled output. second: the encoder is SDXL's text_encoder_2.
Tensor encode_chunks(const StableDiffusion& m, const ClipTextModel& te,
                     const std::vector<PromptChunk>& chunks, int clip_skip, Tensor* pooled,
                     bool second = false) {
  std::vector<std::vector<int>> ids;
  std::vector<TokenEmbeddingOverride> overrides;
  const int64_t width = te.config().hidden;
  for (size_t c = 0; c < chunks.size(); ++c) {
    ids.push_back(chunks[c].ids);
    for (const EmbeddingPlacement& e : chunks[c].embeddings) {
      // SDXL embeddings hold clip_l vectors for text_encoder and clip_g for text_encoder_2.
      const Tensor& v = second ? e.embedding->vectors_g : e.embedding->vectors;
      SDPAL_CHECK(v.ndim() == 2,
                  "embedding " + e.embedding->path +
                      " has no clip_g vectors for SDXL's second text encoder (an SD 1/2 "
                      "embedding?)");
      SDPAL_CHECK(v.dim(1) == width, "embedding " + e.embedding->path + " has vectors of width " +
                                         std::to_string(v.dim(1)) + ", this text encoder's are " +
                                         std::to_string(width) +
                                         " wide (an embedding for another architecture?)");
      const int64_t n =
          std::min<int64_t>(v.dim(0), static_cast<int64_t>(chunks[c].ids.size()) - 1 - e.pos);
      overrides.push_back({static_cast<int64_t>(c), e.pos, n, v.data()});
    }
  }
  ClipTextOutput o =
      te.forward(ids, skip_layers(m, clip_skip), overrides, /*final_norm=*/!is_sdxl(m));
  Tensor h = std::move(o.hidden);  // [k, 77, D]
  const int64_t T = h.dim(1), D = h.dim(2);
  for (size_t c = 0; c < chunks.size(); ++c)
    apply_emphasis(h.data() + c * T * D, T, D, chunks[c].multipliers);
  if (pooled) *pooled = o.text_embeds.slice0(0, 1);
  return std::move(h).reshaped({1, static_cast<int64_t>(chunks.size()) * T, D});
}

// [1, T, D1] ++ [1, T, D2] on the feature axis -> [1, T, D1 + D2].
Tensor concat_features(const Tensor& a, const Tensor& b) {
  SDPAL_CHECK(
      a.dim(0) == b.dim(0) && a.dim(1) == b.dim(1),
      "cannot join text encoder outputs " + shape_str(a.shape()) + " and " + shape_str(b.shape()));
  const int64_t rows = a.dim(0) * a.dim(1), D1 = a.dim(2), D2 = b.dim(2);
  Tensor out({a.dim(0), a.dim(1), D1 + D2});
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(a.data() + r * D1, D1, out.data() + r * (D1 + D2));
    std::copy_n(b.data() + r * D2, D2, out.data() + r * (D1 + D2) + D1);
  }
  return out;
}

// Pads chunk lists to the same length with the tokenizer's empty chunk.
void pad_chunks(std::vector<PromptChunk>& chunks, size_t n, const ClipTokenizer& tok) {
  while (chunks.size() < n) chunks.push_back(empty_chunk(tok));
}

// One prompt with A1111 semantics: [1, 77*k, D].
Encoded encode_with_syntax(const StableDiffusion& m, const std::string& text,
                           const PromptEncodingOptions& opt, std::vector<ExtraNetworkTag>* tags) {
  const std::string plain = strip_extra_networks(text, tags);
  const std::vector<PromptRun> runs = parse_prompt_attention(plain);
  ChunkingOptions co;
  co.embeddings = opt.embeddings;
  std::vector<PromptChunk> chunks = chunk_prompt(*m.tokenizer, runs, co);
  Encoded e;
  if (!is_sdxl(m)) {
    e.hidden = encode_chunks(m, encoder(m, opt), chunks, opt.clip_skip, nullptr);
    return e;
  }
  std::vector<PromptChunk> chunks_2 = chunk_prompt(*m.tokenizer_2, runs, co);
  const size_t k = std::max(chunks.size(), chunks_2.size());
  pad_chunks(chunks, k, *m.tokenizer);
  pad_chunks(chunks_2, k, *m.tokenizer_2);
  const Tensor h1 = encode_chunks(m, encoder(m, opt), chunks, opt.clip_skip, nullptr);
  const Tensor h2 =
      encode_chunks(m, encoder_2(m, opt), chunks_2, opt.clip_skip, &e.pooled, /*second=*/true);
  e.hidden = concat_features(h1, h2);
  return e;
}

// One prompt as diffusers encodes it: [1, 77, D].
Encoded encode_plain(const StableDiffusion& m, const std::string& text,
                     const PromptEncodingOptions& opt, std::vector<std::string>* warnings) {
  int dropped = 0;
  std::vector<std::vector<int>> ids{m.tokenizer->encode_padded(text, &dropped)};
  if (dropped > 0)
    warnings->push_back("prompt truncated: " + std::to_string(dropped) +
                        " token(s) beyond the text encoder's 77-token limit were dropped "
                        "(prompt syntax is off; with it on, long prompts are chunked)");
  const int skip = skip_layers(m, opt.clip_skip);
  Encoded e;
  e.hidden = encoder(m, opt).forward(ids, skip, {}, /*final_norm=*/!is_sdxl(m)).hidden;
  if (!is_sdxl(m)) return e;
  const std::vector<std::vector<int>> ids_2{m.tokenizer_2->encode_padded(text)};
  ClipTextOutput o = encoder_2(m, opt).forward(ids_2, skip, {}, /*final_norm=*/false);
  e.hidden = concat_features(e.hidden, o.hidden);
  e.pooled = std::move(o.text_embeds);
  return e;
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
  std::map<std::string, Encoded> cache;
  std::vector<const Tensor*> rows;
  std::vector<const Tensor*> pooled;
  for (const auto& t : texts) {
    auto it = cache.find(t);
    if (it == cache.end()) {
      Encoded e = opt.syntax ? encode_with_syntax(m, t, opt, &out.tags)
                             : encode_plain(m, t, opt, &out.warnings);
      it = cache.emplace(t, std::move(e)).first;
    }
    rows.push_back(&it->second.hidden);
    pooled.push_back(&it->second.pooled);
  }
  if (is_sdxl(m)) out.pooled = concat0(pooled);
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
  Tensor e = encode_chunks(m, encoder(m, opt), {empty}, opt.clip_skip, nullptr);  // [1, C, D]
  if (is_sdxl(m))
    e = concat_features(e, encode_chunks(m, encoder_2(m, opt), {empty_chunk(*m.tokenizer_2)},
                                         opt.clip_skip, nullptr, /*second=*/true));
  Tensor out({N, tokens, D});
  for (int64_t b = 0; b < N; ++b) {
    float* dst = out.data() + b * tokens * D;
    std::copy_n(hidden.data() + b * T * D, T * D, dst);
    for (int64_t k = T; k < tokens; k += C) std::copy_n(e.data(), C * D, dst + k * D);
  }
  return out;
}

}  // namespace sdpal
