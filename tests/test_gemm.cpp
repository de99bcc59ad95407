// k::linear against a double-precision loop, on shapes that take the small-shape sgemm path and
// the cached oneDNN matmul path (with and without bias, repeated calls with other weights of the
// same shape, accumulation).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/gemm.h"

using namespace sdpal;

namespace {

std::vector<float> pattern(int64_t n, float f) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = std::sin(f * float(i) + 0.3f);
  return v;
}

void check_linear(int64_t M, int64_t K, int64_t N, bool bias, bool accumulate, float seed) {
  const auto x = pattern(M * K, 0.71f * seed), w = pattern(N * K, 1.37f * seed),
             b = pattern(N, 0.11f * seed), y0 = pattern(M * N, 0.05f);
  std::vector<float> y = y0;
  k::linear(x.data(), M, K, w.data(), bias ? b.data() : nullptr, N, y.data(), accumulate);
  for (int64_t i = 0; i < M; i += std::max<int64_t>(1, M / 37))
    for (int64_t j = 0; j < N; ++j) {
      double want = (bias ? b[j] : 0.0) + (accumulate ? y0[i * N + j] : 0.0), mag = 1;
      for (int64_t k = 0; k < K; ++k) {
        want += double(x[i * K + k]) * w[j * K + k];
        mag += std::abs(double(x[i * K + k]) * w[j * K + k]);
      }
      ASSERT_NEAR(y[i * N + j], want, 2e-6 * mag)
          << M << "x" << K << "x" << N << " bias " << bias << " acc " << accumulate << " at " << i
          << "," << j;
    }
}

}  // namespace

TEST(Gemm, LinearSmallAndLargeShapes) {
  for (bool bias : {false, true})
    for (bool acc : {false, true}) {
      check_linear(5, 7, 3, bias, acc, 1);        // sgemm path
      check_linear(77, 768, 320, bias, acc, 2);   // 18.9M MAC: matmul path
      check_linear(1030, 321, 67, bias, acc, 3);  // odd sizes, matmul path
      check_linear(1030, 321, 67, bias, acc, 4);  // same shape, other weights (cached primitive)
    }
}
