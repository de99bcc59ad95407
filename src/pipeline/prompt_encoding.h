// Text conditioning of a batch of prompts with A1111's prompt semantics: extra-network tags
// removed (extra_networks.h), emphasis parsed (prompt_syntax.h), long prompts chunked
// (prompt_chunks.h), each chunk encoded separately, its hidden states scaled by the token weights
// with the mean restored (A1111's default "Original" emphasis), and the chunks concatenated along
// the token axis: a prompt of k chunks gives 77*k context tokens.
// With syntax off it is diffusers' plain encoding: one 77-token row, longer prompts truncated.
//
// SDXL (two text encoders), as diffusers' StableDiffusionXLPipeline.encode_prompt and A1111's SDXL
// conditioner do it: each encoder gets the same prompt through its own tokenizer (its own chunks
// of the same parsed prompt), the hidden states of the layer before the last (clip skip 1; no
// final layer norm) are concatenated on the feature axis per chunk, emphasis is applied to each
// encoder's hidden states on its own, and the pooled embedding is text_encoder_2's projected
// pooled output of the prompt's first chunk. Should the two tokenizers cut a prompt into a
// different number of chunks (tokenizer_2 splits off its pad text '!'), the shorter side is
// padded with its empty-prompt chunk.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "pipeline/embeddings.h"
#include "pipeline/extra_networks.h"
#include "pipeline/sd_model.h"

namespace sdpal {

struct PromptEncodingOptions {
  int clip_skip = 1;   // A1111 convention: 1 = last layer, 2 = penultimate
  bool syntax = true;  // false: diffusers' encoding (no emphasis, truncation at 77 tokens)
  // The text encoders to run (e.g. copies with LoRA branches); null: the model's own.
  const ClipTextModel* text_encoder = nullptr;
  const ClipTextModel* text_encoder_2 = nullptr;  // SDXL
  // Textual-inversion embeddings found by name in the prompts (syntax on only; null: none).
  const EmbeddingLibrary* embeddings = nullptr;
};

struct EncodedPrompts {
  Tensor hidden;                      // [N, 77*k, D], k = the largest chunk count in the batch
  Tensor pooled;                      // SDXL: [N, projection_dim]; empty for SD 1/2
  std::vector<ExtraNetworkTag> tags;  // extra-network tags found in the texts, in order
  std::vector<std::string> warnings;  // e.g. truncation with syntax off
};

// Shorter prompts in the batch are padded by repeating their last hidden vector (A1111's
// stack_conds); identical texts are encoded once.
EncodedPrompts encode_prompt_batch(const StableDiffusion& m, const std::vector<std::string>& texts,
                                   const PromptEncodingOptions& opt);

// [N, T, D] -> [N, tokens, D] by appending the empty prompt's chunk encoding (A1111's padding of
// the negative prompt to the prompt's chunk count, and vice versa). tokens - T must be a multiple
// of the chunk size.
Tensor pad_with_empty_chunks(const StableDiffusion& m, const Tensor& hidden, int64_t tokens,
                             const PromptEncodingOptions& opt);

// A1111's "Original" emphasis on one chunk's hidden states z [T, D]: z *= weight per token, then
// z *= mean(z before) / mean(z after). A no-op when every weight is 1.
void apply_emphasis(float* z, int64_t T, int64_t D, const std::vector<float>& weights);

}  // namespace sdpal
