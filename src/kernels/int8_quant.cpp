#include "kernels/int8_quant.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>

#include "core/cpu.h"
#include "core/error.h"
#include "core/parallel.h"

namespace sdpal::k {

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

void quantize_u8(const float* x, int64_t n, const ActQuant& a, uint8_t* q) {
  const __m512 inv = _mm512_set1_ps(a.inv_scale());
  const __m512 zp = _mm512_set1_ps(static_cast<float>(a.zero_point));
  const __m512 lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(255.f);
  const int64_t blocks = n / 16;
#pragma omp parallel for if (n > kParallelGrain * 4)
  for (int64_t b = 0; b < blocks; ++b) {
    // fma, clamp (max_ps returns its second operand for NaN: 0) and round-to-nearest-even
    // conversion, as the scalar definition.
    const __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(x + b * 16), inv, zp);
    const __m512i i = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, lo), hi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * 16), _mm512_cvtusepi32_epi8(i));
  }
  for (int64_t i = blocks * 16; i < n; ++i) q[i] = quantize_u8(x[i], a);
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
