#include "kernels/activation.h"

#include <immintrin.h>

#include <cmath>

#include "core/parallel.h"
#include "core/profile.h"
#include "kernels/simd_math.h"

namespace sdpal::k {

namespace {
// Applies a vector function over n floats, the tail with a masked load/store.
template <class F>
inline void map_ps(float* x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, f(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}
}  // namespace

void silu_(float* x, int64_t n) {
  map_ps(x, n, [](__m512 v) { return simd::x_sigmoid_ps(v, 1.f); });
}
void gelu_(float* x, int64_t n) { map_ps(x, n, simd::gelu_ps); }
void quick_gelu_(float* x, int64_t n) {
  map_ps(x, n, [](__m512 v) { return simd::x_sigmoid_ps(v, 1.702f); });
}
void relu_(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.f ? x[i] : 0.f;
}

namespace {
template <void (*F)(float*, int64_t)>
void apply_parallel(Tensor& t) {
  prof::OpScope scope(prof::Op::elementwise);
  const int64_t n = t.numel(), block = 16384;
#pragma omp parallel for schedule(static) if (n > block)
  for (int64_t b = 0; b < (n + block - 1) / block; ++b) {
    const int64_t s = b * block;
    F(t.data() + s, std::min(block, n - s));
  }
}
}  // namespace

void silu_(Tensor& x) { apply_parallel<silu_>(x); }
void gelu_(Tensor& x) { apply_parallel<gelu_>(x); }
void quick_gelu_(Tensor& x) { apply_parallel<quick_gelu_>(x); }
void relu_(Tensor& x) { apply_parallel<relu_>(x); }

Tensor geglu(const Tensor& h) {
  prof::OpScope scope(prof::Op::elementwise);
  const int64_t D2 = h.dim(-1), D = D2 / 2, M = h.numel() / D2;
  Shape s = h.shape();
  s.back() = D;
  Tensor y(s);
#pragma omp parallel for schedule(static) if (M * D2 > kParallelGrain)
  for (int64_t m = 0; m < M; ++m) {
    const float* a = h.data() + m * D2;
    float* o = y.data() + m * D;
    int64_t j = 0;
    for (; j + 16 <= D; j += 16)
      _mm512_storeu_ps(
          o + j, _mm512_mul_ps(_mm512_loadu_ps(a + j), simd::gelu_ps(_mm512_loadu_ps(a + D + j))));
    if (j < D) {
      const __mmask16 k = static_cast<__mmask16>((1u << (D - j)) - 1);
      _mm512_mask_storeu_ps(o + j, k,
                            _mm512_mul_ps(_mm512_maskz_loadu_ps(k, a + j),
                                          simd::gelu_ps(_mm512_maskz_loadu_ps(k, a + D + j))));
    }
  }
  return y;
}

}  // namespace sdpal::k
