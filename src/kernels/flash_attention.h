// Fused ("flash") multi-head attention: per (batch, head, query block) the scores of one key
// block at a time are computed by register-tiled micro-kernels, folded in with an online softmax
// (running max and sum per query) and multiplied into the output accumulator, so neither a score
// matrix nor a full score row is ever stored. Blocks are kept transposed (queries along the
// vector lanes), so head dims that are not multiples of the vector width (SD's 40, 80, 160) waste
// no lanes.
//
// Two implementations of the same algorithm: a hand-written AVX-512 one
// (flash_attention_avx512.cpp, run when cpu::use_avx512()) and a portable Highway one
// (flash_attention.cpp: AVX2, SSE4, NEON, scalar; its AVX-512 build serves as a comparison).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sdpal::k {

// Same contract as attention(): q: [B, Tq, H*D], k, v: [B, Tk, H*D] (heads interleaved along
// the last dim). Returns [B, Tq, H*D]. causal: query i only sees keys j <= i. A NaN in q or k
// makes the outputs of the queries that see it NaN; a NaN in v can also reach the earlier
// queries of its causal query block (they weigh it by an exact zero).
Tensor flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                       bool causal);

// The portable kernel at the Highway target of the current level (AVX3 at the AVX-512 levels),
// even where flash_attention() would run the hand-written one: for tests and benchmarks.
Tensor flash_attention_portable(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                                bool causal);

namespace detail {
// One attention problem as both kernels see it: contiguous [B, T, heads * D] float arrays.
struct FlashProblem {
  const float *q, *k, *v;
  float* out;
  int64_t B, heads, Tq, Tk, D;
  float scale;  // 1/sqrt(D) * log2(e): scores come out in base 2
  bool causal;
};

// The hand-written AVX-512 kernel (flash_attention_avx512.cpp); only after cpu::use_avx512().
void flash_attention_avx512(const FlashProblem& pb);
}  // namespace detail

}  // namespace sdpal::k
