// Matrix products on top of oneDNN's JIT sgemm (row-major).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sdpal::k {

// C[M,N] = alpha * A[M,K] * op(B) + beta * C, row-major with leading dimensions.
// op(B) = B[K,N] if !trans_b, else B[N,K]^T.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// PyTorch Linear: y[M,N] = x[M,K] * W[N,K]^T + b (b may be null). If accumulate, y += ...
void linear(const float* x, int64_t M, int64_t K, const float* W, const float* b, int64_t N,
            float* y, bool accumulate = false);
// Linear over the last dim of x ([..., K] -> [..., N]).
Tensor linear(const Tensor& x, const float* W, const float* b, int64_t N);

}  // namespace sdpal::k
