#include "kernels/activation.h"

#include <cmath>

#include "core/parallel.h"
#include "core/profile.h"

namespace sdpal::k {

void silu_(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.f + std::exp(-x[i]));
}
void gelu_(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    x[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * 0.70710678118654752f));
}
void quick_gelu_(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.f + std::exp(-1.702f * x[i]));
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
    for (int64_t j = 0; j < D; ++j) {
      const float g = a[D + j];
      o[j] = a[j] * (0.5f * g * (1.f + std::erf(g * 0.70710678118654752f)));
    }
  }
  return y;
}

}  // namespace sdpal::k
