// Vector exp, erf, GELU and x*sigmoid for the activations and norms, as Highway code for every
// target: accurate to a few ulp (exp) and 1.5e-7 absolute (erf's formula; with fp32 rounding,
// which cancels near 0, up to 5e-7), below the fp32 rounding of the activations they feed. Include
// after <hwy/highway.h> in a file compiled per target (HWY_TARGET_INCLUDE); the guard below lets
// each target's pass include it once.
#if defined(SDPAL_KERNELS_SIMD_MATH_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SDPAL_KERNELS_SIMD_MATH_INL_H_
#undef SDPAL_KERNELS_SIMD_MATH_INL_H_
#else
#define SDPAL_KERNELS_SIMD_MATH_INL_H_
#endif

#include <hwy/highway.h>

#include <cstddef>
#include <cstring>

HWY_BEFORE_NAMESPACE();
namespace sdpal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// p * 2^n for integral n in [-126, 128] and p in [0.7, 1.5], rounded once.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V ScaleByPow2(D d, V p, V n) {
#if HWY_TARGET == HWY_AVX3
  (void)d;
  return V{_mm512_scalef_ps(p.raw, n.raw)};  // one instruction instead of six
#else
  // Two normal powers of two (2^128 alone is not a float): the first product is exact, the
  // second rounds once, as AVX-512's scalef does.
  const hn::RebindToSigned<D> di;
  const auto ni = hn::ConvertTo(di, n);
  const auto n1 = hn::ShiftRight<1>(ni);
  const auto n2 = hn::Sub(ni, n1);
  const auto bias = hn::Set(di, 127);
  const V s1 = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(n1, bias)));
  const V s2 = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(n2, bias)));
  return hn::Mul(hn::Mul(p, s1), s2);
#endif
}

// e^x for any x: clamped to [-87.3, 89] (below: the smallest normal float's neighbourhood;
// above: +inf, so x / (1 + e^-x) goes to -0 for very negative x), x = n ln2 + r with
// |r| <= ln2/2 (Cody-Waite split), degree-7 Taylor polynomial for e^r, scaled by 2^n.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V Exp(D d, V x) {
  x = hn::Min(hn::Max(x, hn::Set(d, -87.3f)), hn::Set(d, 89.f));
  const V n = hn::Round(hn::Mul(x, hn::Set(d, 1.44269504088896341f)));
  V r = hn::NegMulAdd(n, hn::Set(d, 0.693359375f), x);
  r = hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), r);
  V p = hn::Set(d, 1.f / 5040.f);
  p = hn::MulAdd(p, r, hn::Set(d, 1.f / 720.f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.f / 120.f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.f / 24.f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.f / 6.f));
  p = hn::MulAdd(p, r, hn::Set(d, 0.5f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.f));
  return ScaleByPow2(d, p, n);
}

// erf(x) by Abramowitz & Stegun 7.1.26: 1 - t (a1 + t (a2 + ...)) e^{-x^2}, t = 1 / (1 + p|x|),
// sign restored; max absolute error 1.5e-7.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V Erf(D d, V x) {
  const V sign = hn::And(x, hn::SignBit(d));
  const V ax = hn::Abs(x);
  const V t = hn::Div(hn::Set(d, 1.f), hn::MulAdd(ax, hn::Set(d, 0.3275911f), hn::Set(d, 1.f)));
  V p = hn::Set(d, 1.061405429f);
  p = hn::MulAdd(p, t, hn::Set(d, -1.453152027f));
  p = hn::MulAdd(p, t, hn::Set(d, 1.421413741f));
  p = hn::MulAdd(p, t, hn::Set(d, -0.284496736f));
  p = hn::MulAdd(p, t, hn::Set(d, 0.254829592f));
  p = hn::Mul(p, t);
  const V e = Exp(d, hn::Mul(hn::Neg(ax), ax));
  const V y = hn::NegMulAdd(p, e, hn::Set(d, 1.f));
  return hn::Or(y, sign);
}

// 0.5 x (1 + erf(x / sqrt 2)): PyTorch's exact ("none") GELU.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V Gelu(D d, V x) {
  const V e = Erf(d, hn::Mul(x, hn::Set(d, 0.70710678118654752f)));
  return hn::Mul(hn::Mul(hn::Set(d, 0.5f), x), hn::Add(hn::Set(d, 1.f), e));
}

// x * sigmoid(a x) = x / (1 + e^{-a x}).
template <class D, class V = hn::Vec<D>>
HWY_INLINE V XSigmoid(D d, V x, float a) {
  const V e = Exp(d, hn::Mul(x, hn::Set(d, -a)));
  return hn::Div(x, hn::Add(hn::Set(d, 1.f), e));
}

// x[i] = f(x[i]) for n floats; the tail goes through a zero-padded vector on the stack (a masked
// store would be emulated as a whole-vector read-modify-write on some targets, racing with the
// thread that owns the next elements).
template <class D, class F>
HWY_INLINE void TransformInPlace(D d, float* HWY_RESTRICT x, size_t n, F f) {
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(f(hn::LoadU(d, x + i)), d, x + i);
  if (i < n) {
    HWY_ALIGN float buf[hn::MaxLanes(d)] = {};
    std::memcpy(buf, x + i, (n - i) * sizeof(float));
    hn::Store(f(hn::Load(d, buf)), d, buf);
    std::memcpy(x + i, buf, (n - i) * sizeof(float));
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace sdpal
HWY_AFTER_NAMESPACE();

#endif  // SDPAL_KERNELS_SIMD_MATH_INL_H_
