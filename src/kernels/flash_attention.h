// Fused ("flash") multi-head attention: per (batch, head, query block) the scores of one key
// block at a time are computed with AVX-512 micro-kernels, folded in with an online softmax
// (running max and sum per query) and multiplied into the output accumulator, so neither a score
// matrix nor a full score row is ever stored. Blocks are kept transposed (queries along the
// vector lanes), so head dims that are not multiples of 16 (SD's 40, 80, 160) waste no lanes.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sdpal::k {

// Same contract as attention(): q: [B, Tq, H*D], k, v: [B, Tk, H*D] (heads interleaved along
// the last dim). Returns [B, Tq, H*D]. causal: query i only sees keys j <= i.
Tensor flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                       bool causal);

}  // namespace sdpal::k
