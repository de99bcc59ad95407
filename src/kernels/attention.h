// Multi-head scaled-dot-product attention. attention() runs the fused flash-style kernel
// (kernels/flash_attention.h: online softmax over key blocks), so no score matrix larger than one
// query block x one key block is ever materialised.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sdpal::k {

// q: [B, Tq, H*D], k, v: [B, Tk, H*D] (heads interleaved along the last dim, as produced by
// Linear layers). Returns [B, Tq, H*D]. causal: query i only sees keys j <= i.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads, bool causal);

// Reference implementation (full score matrix) for tests.
Tensor attention_naive(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                       bool causal);

}  // namespace sdpal::k
