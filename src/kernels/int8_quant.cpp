// Quantisation for int8 compute. The activation quantisation and the range search are Highway
// kernels, dispatched at the kernel level; their results are bit-identical at every level.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/int8_quant.cpp"
#include "kernels/int8_quant.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>

#include "core/cpu.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/parallel.h"

HWY_BEFORE_NAMESPACE();
namespace sdpal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Targets whose MulAdd is a fused multiply-add (one rounding, as std::fma).
#undef SDPAL_NATIVE_FMA
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_NEON
#define SDPAL_NATIVE_FMA 1
#else
#define SDPAL_NATIVE_FMA 0
#endif

#if !SDPAL_NATIVE_FMA && HWY_TARGET != HWY_SCALAR
// fp32 fma(x, inv, zp) lane by lane, exactly, on a target without FMA: x * inv is exact in double,
// the double sum's rounding error comes from TwoSum, and rounding the sum to odd before the final
// rounding to float makes that rounding the correctly rounded one (double has 29 more bits).
template <class DF>
HWY_INLINE hn::Vec<DF> ExactFma(DF df, hn::Vec<DF> x, float inv, float zp) {
  const hn::Repartition<double, DF> dd;
  const hn::RebindToSigned<decltype(dd)> di;
  const hn::Half<DF> dh;
  const auto vinv = hn::Set(dd, inv), vzp = hn::Set(dd, zp);
  auto half = [&](hn::Vec<decltype(dd)> xd) {
    const auto p = hn::Mul(xd, vinv);
    const auto s = hn::Add(p, vzp);
    const auto bb = hn::Sub(s, p);
    const auto err = hn::Add(hn::Sub(p, hn::Sub(s, bb)), hn::Sub(vzp, bb));
    const auto si = hn::BitCast(di, s);
    const auto one = hn::Set(di, 1);
    // Inexact with an even last bit: step one ulp towards the exact value (away from zero when
    // err has s's sign); inf and NaN (err NaN) stay as they are.
    const auto inexact = hn::And(hn::Ne(err, hn::Zero(dd)), hn::Lt(hn::Abs(s), hn::Set(dd, 1e300)));
    const auto even = hn::Eq(hn::And(si, one), hn::Zero(di));
    const auto same_sign =
        hn::Eq(hn::And(hn::BitCast(di, hn::Xor(s, err)), hn::Set(di, INT64_MIN)), hn::Zero(di));
    const auto step = hn::IfThenElse(same_sign, one, hn::Neg(one));
    const auto fix = hn::And(hn::RebindMask(di, inexact), even);
    return hn::DemoteTo(dh, hn::BitCast(dd, hn::IfThenElse(fix, hn::Add(si, step), si)));
  };
  const auto lo = half(hn::PromoteTo(dd, hn::LowerHalf(dh, x)));
  const auto hi = half(hn::PromoteTo(dd, hn::UpperHalf(dh, x)));
  return hn::Combine(df, hi, lo);
}
#endif

// q[i] = clamp(round_even(fma(x[i], inv, zp)), 0, 255), NaN -> 0, for i in [0, n).
void QuantizeU8(const float* x, int64_t n, float inv, float zp, uint8_t* q) {
  int64_t i = 0;
#if HWY_TARGET != HWY_SCALAR  // Highway's scalar Round misrounds just below .5: plain C++ there
  const hn::ScalableTag<float> d;
  const hn::Rebind<uint8_t, decltype(d)> du8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const auto vinv = hn::Set(d, inv), vzp = hn::Set(d, zp), hi = hn::Set(d, 255.f);
  for (; i + N <= n; i += N) {
    const auto xv = hn::LoadU(d, x + i);
#if SDPAL_NATIVE_FMA
    auto v = hn::MulAdd(xv, vinv, vzp);
    (void)inv;
#else
    auto v = ExactFma(d, xv, inv, zp);
    (void)vinv;
#endif
#if HWY_ARCH_X86
    v = hn::Min(hn::Max(v, hn::Zero(d)), hi);  // x86's max returns its second operand for NaN
#else
    v = hn::Min(hn::IfThenElseZero(hn::Gt(v, hn::Zero(d)), v), hi);  // !(v > 0) (NaN too) -> 0
#endif
#if HWY_TARGET == HWY_AVX3
    // v is in [0, 255]: no overflow fix-up, and one saturating narrowing instead of packs and a
    // permutation.
    hn::StoreU(hn::Vec128<uint8_t>{_mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v.raw))}, du8, q + i);
#else
    hn::StoreU(hn::DemoteTo(du8, hn::NearestInt(v)), du8, q + i);
#endif
  }
#endif
  for (; i < n; ++i) {
    const float v = std::fma(x[i], inv, zp);
    q[i] = v > 0.f ? static_cast<uint8_t>(std::min(std::nearbyint(v), 255.f)) : 0;
  }
}

// Min and max of x[0, n) with NaN ignored; (inf, -inf) when there is no number.
void MinMax(const float* x, int64_t n, float* mn, float* mx) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  const auto pinf = hn::Set(d, std::numeric_limits<float>::infinity());
  const auto ninf = hn::Neg(pinf);
  auto lo = pinf, hi = ninf;
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto v = hn::LoadU(d, x + i);
    const auto num = hn::Eq(v, v);  // Min/Max of NaN differ between targets: replace it
    lo = hn::Min(lo, hn::IfThenElse(num, v, pinf));
    hi = hn::Max(hi, hn::IfThenElse(num, v, ninf));
  }
  float l = hn::GetLane(hn::MinOfLanes(d, lo)), h = hn::GetLane(hn::MaxOfLanes(d, hi));
  for (; i < n; ++i) {
    if (x[i] < l) l = x[i];
    if (x[i] > h) h = x[i];
  }
  *mn = l;
  *mx = h;
}

}  // namespace HWY_NAMESPACE
}  // namespace sdpal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace sdpal::k {

HWY_EXPORT(QuantizeU8);
HWY_EXPORT(MinMax);

void quantize_u8(const float* x, int64_t n, const ActQuant& a, uint8_t* q) {
  const float inv = a.inv_scale(), zp = static_cast<float>(a.zero_point);
  const int64_t block = 16384;
  if (n <= kParallelGrain * 4) {
    SDPAL_DISPATCH(QuantizeU8)(x, n, inv, zp, q);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < (n + block - 1) / block; ++b) {
    const int64_t s = b * block;
    SDPAL_DISPATCH(QuantizeU8)(x + s, std::min(block, n - s), inv, zp, q + s);
  }
}

std::pair<float, float> min_max(const float* x, int64_t n) {
  float mn, mx;
  SDPAL_DISPATCH(MinMax)(x, n, &mn, &mx);
  return {mn, mx};
}

ActQuant ActQuant::from_range(float lo, float hi) {
  lo = std::min(lo, 0.f);
  hi = std::max(hi, 0.f);
  ActQuant a;
  if (!(hi - lo > 0.f) || !std::isfinite(hi - lo)) return a;  // all zero (or unusable): identity
  a.scale = (hi - lo) / 255.f;
  a.zero_point = static_cast<int32_t>(std::clamp(std::nearbyint(-lo / a.scale), 0.f, 255.f));
  return a;
}

uint8_t quantize_u8(float x, const ActQuant& a) {
  const float v = std::fma(x, a.inv_scale(), static_cast<float>(a.zero_point));
  if (!(v > 0.f)) return 0;  // also NaN
  return static_cast<uint8_t>(std::min(std::nearbyint(v), 255.f));
}

int int8_weight_max() {
#if defined(__x86_64__) || defined(_M_X64)
  return cpu::use_avx512_vnni() ? 127 : 64;
#else
  return 127;
#endif
}

Int8Weights quantize_weights_s8(const float* w, int64_t rows, int64_t cols) {
  return quantize_weights_s8(w, rows, cols, int8_weight_max());
}

Int8Weights quantize_weights_s8(const float* w, int64_t rows, int64_t cols, int qmax) {
  SDPAL_CHECK(qmax >= 1 && qmax <= 127, "int8 weights: qmax must be from 1 to 127");
  const float qm = static_cast<float>(qmax);
  Int8Weights r;
  r.rows = rows;
  r.cols = cols;
  r.q.resize(rows * cols);
  r.scale.resize(rows);
#pragma omp parallel for if (rows * cols > kParallelGrain)
  for (int64_t o = 0; o < rows; ++o) {
    const float* row = w + o * cols;
    float amax = 0.f;
    for (int64_t i = 0; i < cols; ++i) amax = std::max(amax, std::fabs(row[i]));
    const float scale = amax > 0.f ? amax / qm : 1.f;
    const float inv = 1.f / scale;
    int8_t* qr = r.q.data() + o * cols;
    for (int64_t i = 0; i < cols; ++i)
      qr[i] = static_cast<int8_t>(std::clamp(std::nearbyint(row[i] * inv), -qm, qm));
    r.scale[o] = scale;
  }
  return r;
}

uint8_t* u8_scratch(size_t n) {
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<uint8_t, Free> buf;
  thread_local size_t cap = 0;
  if (n > cap) {
    cap = (n + 63) / 64 * 64;
    buf.reset(static_cast<uint8_t*>(std::aligned_alloc(64, cap)));
  }
  return buf.get();
}

}  // namespace sdpal::k
#endif  // HWY_ONCE
