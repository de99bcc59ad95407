#include "kernels/gemm.h"

#include <oneapi/dnnl/dnnl.h>

#include "core/error.h"
#include "core/profile.h"

namespace sdpal::k {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  prof::OpScope scope(prof::Op::gemm, 2.0 * M * N * K);
  dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B,
                                ldb, beta, C, ldc);
  SDPAL_CHECK(st == dnnl_success, "oneDNN sgemm failed (status " + std::to_string(st) + ")");
}

void linear(const float* x, int64_t M, int64_t K, const float* W, const float* b, int64_t N,
            float* y, bool accumulate) {
  prof::OpScope scope(prof::Op::gemm, 2.0 * M * N * K);
  float beta = accumulate ? 1.f : 0.f;
  if (b && !accumulate) {
    // Seed y with the bias so the GEMM adds onto it (beta = 1).
#pragma omp parallel for if (M * N > 65536)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) y[i * N + j] = b[j];
    beta = 1.f;
  }
  sgemm(false, true, M, N, K, 1.f, x, K, W, K, beta, y, N);
  if (b && accumulate) {
#pragma omp parallel for if (M * N > 65536)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) y[i * N + j] += b[j];
  }
}

Tensor linear(const Tensor& x, const float* W, const float* b, int64_t N) {
  const int64_t K = x.dim(-1);
  const int64_t M = x.numel() / K;
  Shape s = x.shape();
  s.back() = N;
  Tensor y(s);
  linear(x.data(), M, K, W, b, N, y.data());
  return y;
}

}  // namespace sdpal::k
