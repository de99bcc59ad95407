// Activations as Highway kernels (kernels/simd_math-inl.h), dispatched at the kernel level.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/activation.cpp"
#include "kernels/activation.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>

#include "core/dispatch.h"
#include "core/parallel.h"
#include "core/profile.h"
#include "kernels/simd_math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace sdpal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void SiluInPlace(float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  TransformInPlace(d, x, static_cast<size_t>(n), [d](auto v) { return XSigmoid(d, v, 1.f); });
}

void QuickGeluInPlace(float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  TransformInPlace(d, x, static_cast<size_t>(n), [d](auto v) { return XSigmoid(d, v, 1.702f); });
}

void GeluInPlace(float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  TransformInPlace(d, x, static_cast<size_t>(n), [d](auto v) { return Gelu(d, v); });
}

void ReluInPlace(float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  // x > 0 ? x : 0, so NaN becomes 0 as in the scalar definition.
  TransformInPlace(d, x, static_cast<size_t>(n),
                   [d](auto v) { return hn::IfThenElseZero(hn::Gt(v, hn::Zero(d)), v); });
}

void ExpInPlace(float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  TransformInPlace(d, x, static_cast<size_t>(n), [d](auto v) { return Exp(d, v); });
}

void ErfInPlace(float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  TransformInPlace(d, x, static_cast<size_t>(n), [d](auto v) { return Erf(d, v); });
}

// o[j] = a[j] * gelu(g[j]) for rows [m0, m1) of h = [a | g], each half D wide.
void GegluRows(const float* h, float* y, int64_t m0, int64_t m1, int64_t D) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t m = m0; m < m1; ++m) {
    const float* a = h + m * 2 * D;
    float* o = y + m * D;
    int64_t j = 0;
    for (; j + N <= D; j += N)
      hn::StoreU(hn::Mul(hn::LoadU(d, a + j), Gelu(d, hn::LoadU(d, a + D + j))), d, o + j);
    if (j < D) {
      HWY_ALIGN float va[hn::MaxLanes(d)] = {}, vg[hn::MaxLanes(d)] = {};
      const size_t bytes = static_cast<size_t>(D - j) * sizeof(float);
      std::memcpy(va, a + j, bytes);
      std::memcpy(vg, a + D + j, bytes);
      hn::Store(hn::Mul(hn::Load(d, va), Gelu(d, hn::Load(d, vg))), d, va);
      std::memcpy(o + j, va, bytes);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace sdpal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace sdpal::k {

HWY_EXPORT(SiluInPlace);
HWY_EXPORT(QuickGeluInPlace);
HWY_EXPORT(GeluInPlace);
HWY_EXPORT(ReluInPlace);
HWY_EXPORT(ExpInPlace);
HWY_EXPORT(ErfInPlace);
HWY_EXPORT(GegluRows);

void silu_(float* x, int64_t n) { SDPAL_DISPATCH(SiluInPlace)(x, n); }
void gelu_(float* x, int64_t n) { SDPAL_DISPATCH(GeluInPlace)(x, n); }
void quick_gelu_(float* x, int64_t n) { SDPAL_DISPATCH(QuickGeluInPlace)(x, n); }
void relu_(float* x, int64_t n) { SDPAL_DISPATCH(ReluInPlace)(x, n); }
void exp_(float* x, int64_t n) { SDPAL_DISPATCH(ExpInPlace)(x, n); }
void erf_(float* x, int64_t n) { SDPAL_DISPATCH(ErfInPlace)(x, n); }

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
  // Rows in blocks of about 16k outputs, so that one dispatch serves many short rows.
  const int64_t rows = std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1));
#pragma omp parallel for schedule(static) if (M * D2 > kParallelGrain)
  for (int64_t m0 = 0; m0 < M; m0 += rows)
    SDPAL_DISPATCH(GegluRows)(h.data(), y.data(), m0, std::min(M, m0 + rows), D);
  return y;
}

}  // namespace sdpal::k
#endif  // HWY_ONCE
