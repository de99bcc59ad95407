#include "tools/bench_peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>

#include "core/error.h"

namespace sdpal {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kChains = 16;  // enough independent chains to cover latency x pipes
constexpr int64_t kIters = 20'000'000;

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
    best = std::max(best, threads * ops_per_iter_per_thread * double(kIters) / secs / 1e9);
  }
  return best;
}

__attribute__((target("avx512f"))) double fma_chains() {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(1e-3f * c);
  const __m512 m = _mm512_set1_ps(0.9999999f), a = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < kIters; ++i) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], m, a);
  }
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  double sum = 0;
  for (float v : lanes) sum += v;
  return sum;
}

__attribute__((target("avx512f,avx512vnni"))) double vnni_chains() {
  __m512i acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_epi32(c);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < kIters; ++i) {
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

}  // namespace

double measure_fma_peak(int threads) { return best_rate(threads, kChains * 16.0 * 2, fma_chains); }

double measure_vnni_peak(int threads) {
  return best_rate(threads, kChains * 64.0 * 2, vnni_chains);
}

}  // namespace sdpal
