// Peak loops as Highway code, one per target, run at the active kernel level. The int8 chains use
// x86 intrinsics inside their Highway target's section (Highway 1.0.3 has no u8 x s8 pairwise
// multiply-add); VNNI needs its own attribute, since Highway's AVX3 target lacks it.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tools/bench_peak.cpp"
#include "tools/bench_peak.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/cpu.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/target_avx512.h"

#ifndef SDPAL_BENCH_PEAK_ONCE
#define SDPAL_BENCH_PEAK_ONCE
namespace sdpal {
constexpr int64_t kPeakIters = 20'000'000;
}  // namespace sdpal
#endif

HWY_BEFORE_NAMESPACE();
namespace sdpal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Independent chains to cover latency x pipes; 12 where only 16 vector registers exist.
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4
constexpr int kChains = 12;
#else
constexpr int kChains = 16;
#endif

double FmaChains() {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  V acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = hn::Set(d, 1e-3f * c);
  const V m = hn::Set(d, 0.9999999f), a = hn::Set(d, 1e-7f);
  for (int64_t i = 0; i < kPeakIters; ++i) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) acc[c] = hn::MulAdd(acc[c], m, a);
  }
  V s = acc[0];
  for (int c = 1; c < kChains; ++c) s = hn::Add(s, acc[c]);
  return hn::GetLane(hn::SumOfLanes(d, s));
}

size_t FmaLanes() { return hn::Lanes(hn::ScalableTag<float>()); }
// The target the dispatch chose. (Not from hwy::SupportedTargets(): in Highway 1.0.3 that call
// resets the chosen target to every target the CPU has, undoing SDPAL_ISA's limit.)
const char* TargetName() { return hwy::TargetName(HWY_TARGET); }
// FLOP per iteration of FmaChains: 2 per lane and chain.
double FmaFlopsPerIter() { return kChains * 2.0 * FmaLanes(); }

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4
#if HWY_TARGET == HWY_AVX3
using I8 = __m512i;
#define SDPAL_MADDUBS _mm512_maddubs_epi16
#define SDPAL_MADDWD _mm512_madd_epi16
#define SDPAL_ADD32 _mm512_add_epi32
#define SDPAL_SET8 _mm512_set1_epi8
#define SDPAL_SET16 _mm512_set1_epi16
#define SDPAL_SET32 _mm512_set1_epi32
#elif HWY_TARGET == HWY_AVX2
using I8 = __m256i;
#define SDPAL_MADDUBS _mm256_maddubs_epi16
#define SDPAL_MADDWD _mm256_madd_epi16
#define SDPAL_ADD32 _mm256_add_epi32
#define SDPAL_SET8 _mm256_set1_epi8
#define SDPAL_SET16 _mm256_set1_epi16
#define SDPAL_SET32 _mm256_set1_epi32
#else
using I8 = __m128i;
#define SDPAL_MADDUBS _mm_maddubs_epi16
#define SDPAL_MADDWD _mm_madd_epi16
#define SDPAL_ADD32 _mm_add_epi32
#define SDPAL_SET8 _mm_set1_epi8
#define SDPAL_SET16 _mm_set1_epi16
#define SDPAL_SET32 _mm_set1_epi32
#endif
constexpr int kI8Chains = kChains - 4;  // a, b, ones and products need registers too

// acc += madd(maddubs(a, b), 1): u8 x s8 pairs to s16, pairs of those to s32, accumulated.
double Int8Chains() {
  I8 acc[kI8Chains];
  for (int c = 0; c < kI8Chains; ++c) acc[c] = SDPAL_SET32(c);
  I8 a = SDPAL_SET8(3), b = SDPAL_SET8(-2);
  const I8 ones = SDPAL_SET16(1);
  for (int64_t i = 0; i < kPeakIters; ++i) {
    // The operands are opaque to the compiler, so that it cannot hoist the products.
    asm volatile("" : "+x"(a), "+x"(b));
#pragma GCC unroll 16
    for (int c = 0; c < kI8Chains; ++c)
      acc[c] = SDPAL_ADD32(acc[c], SDPAL_MADDWD(SDPAL_MADDUBS(a, b), ones));
  }
  I8 s = acc[0];
  for (int c = 1; c < kI8Chains; ++c) s = SDPAL_ADD32(s, acc[c]);
  alignas(64) int32_t lanes[sizeof(I8) / 4];
  std::memcpy(lanes, &s, sizeof s);
  double sum = 0;
  for (int32_t v : lanes) sum += v;
  return sum;
}
// Ops per iteration: 2 per u8 x s8 product.
double Int8OpsPerIter() { return kI8Chains * 2.0 * sizeof(I8); }
#undef SDPAL_MADDUBS
#undef SDPAL_MADDWD
#undef SDPAL_ADD32
#undef SDPAL_SET8
#undef SDPAL_SET16
#undef SDPAL_SET32
#else
double Int8Chains() { return 0; }
double Int8OpsPerIter() { return 0; }  // no int8 peak loop for this target
#endif

#if HWY_TARGET == HWY_AVX3
// acc += dpbusd(a, b): 64 u8 x s8 products per instruction. Called only at avx512vnni.
SDPAL_AVX512VNNI_ATTR double VnniChains() {
  __m512i acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_epi32(c);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < kPeakIters; ++i) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
  }
  __m512i s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_epi32(s, acc[c]);
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, s);
  double sum = 0;
  for (int32_t v : lanes) sum += v;
  return sum;
}
double VnniOpsPerIter() { return kChains * 64.0 * 2; }
#else
double VnniChains() { return 0; }
double VnniOpsPerIter() { return 0; }
#endif

}  // namespace HWY_NAMESPACE
}  // namespace sdpal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace sdpal {

HWY_EXPORT(FmaChains);
HWY_EXPORT(FmaLanes);
HWY_EXPORT(TargetName);
HWY_EXPORT(FmaFlopsPerIter);
HWY_EXPORT(Int8Chains);
HWY_EXPORT(Int8OpsPerIter);
HWY_EXPORT(VnniChains);
HWY_EXPORT(VnniOpsPerIter);

namespace {

using Clock = std::chrono::steady_clock;

template <class Body>
double best_rate(int threads, double ops_per_iter_per_thread, Body body) {
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    double sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += body();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!std::isfinite(sink)) fail("bench: peak loop produced a non-finite value");
    best = std::max(best, threads * ops_per_iter_per_thread * double(kPeakIters) / secs / 1e9);
  }
  return best;
}

bool use_vnni() { return cpu::use_avx512_vnni(); }

}  // namespace

double measure_fma_peak(int threads) {
  return best_rate(threads, SDPAL_DISPATCH(FmaFlopsPerIter)(),
                   [] { return SDPAL_DISPATCH(FmaChains)(); });
}

std::string fma_peak_name() {
  const std::string t = SDPAL_DISPATCH(TargetName)();
  const bool fused = t != "SSE4" && t != "SCALAR" && t != "EMU128";
  const size_t lanes = SDPAL_DISPATCH(FmaLanes)();
  return std::string(fused ? "fp32 FMA, " : "fp32 mul+add, ") + t + " (" + std::to_string(lanes) +
         (lanes == 1 ? " lane)" : " lanes)");
}

double measure_int8_peak(int threads) {
  if (use_vnni())
    return best_rate(threads, SDPAL_DISPATCH(VnniOpsPerIter)(),
                     [] { return SDPAL_DISPATCH(VnniChains)(); });
  const double ops = SDPAL_DISPATCH(Int8OpsPerIter)();
  if (ops == 0) return 0;
  return best_rate(threads, ops, [] { return SDPAL_DISPATCH(Int8Chains)(); });
}

std::string int8_peak_name() {
  if (use_vnni()) return "int8 VNNI vpdpbusd (zmm)";
  const std::string t = SDPAL_DISPATCH(TargetName)();
  if (t == "AVX3") return "int8 vpmaddubsw+vpmaddwd (zmm)";
  if (t == "AVX2") return "int8 vpmaddubsw+vpmaddwd (ymm)";
  if (t == "SSE4") return "int8 pmaddubsw+pmaddwd (xmm)";
  return "n/a";
}

}  // namespace sdpal
#endif  // HWY_ONCE
