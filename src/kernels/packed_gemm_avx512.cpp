// The AVX-512 level of the packed GEMM: a 14 x 32 micro-kernel (28 zmm accumulators) and packing
// by 16 x 16 in-register transposes, run by the shared driver (packed_gemm-inl.h).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>

#include "core/error.h"
#include "core/target_avx512.h"
#include "kernels/packed_gemm_common.h"

SDPAL_AVX512_BEGIN
#include "kernels/transpose16_avx512.h"

namespace sdpal::k::packed::avx512 {

namespace {

using avx512_transpose::transpose16;

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// The traits of packed_gemm-inl.h. Blocking tuned on Zen 5 against oneDNN's sgemm on SD 1.5
// shapes: with 14 FMAs per loaded weight vector the micro-kernel runs from L2 as well as from L1,
// so the K-block is long: few passes over the output (each reads and writes all of it), which is
// what limits wide layers.
struct Kernel {
  static constexpr int kMR = 14;               // micro-tile rows (activations): 28 accumulators
  static constexpr int kAS = 16;               // floats per k in a packed activation panel (64 B)
  static constexpr int kNR = 32;               // micro-tile columns (output channels): two zmm
  static constexpr int64_t kKC = 768;          // K-block of a GEMM (a 96 KB weight panel)
  static constexpr int64_t kMC = 8 * kMR;      // activation block rows (MC x KC, 384 KB, in L2)
  static constexpr int64_t kNCMax = 32 * kNR;  // weight block columns (KC x NC, 3 MB, in L3)

  // Lanes kMR..kAS-1 of a packed k-step are padding: whole aligned stores here, one cache line
  // per k in the micro-kernel.
  template <class Dest>
  static void pack_a_rows(const float* const rows[kMR], int64_t len, Dest dest, float* dst) {
    for (int64_t j0 = 0; j0 < len; j0 += 16) {
      const __mmask16 m = lanes(len - j0);
      __m512 v[16];
      for (int i = 0; i < 16; ++i) {
        // The rows are strided streams: fetch a few lines ahead, the hardware prefetcher alone
        // leaves these loads waiting on memory.
        if (i < kMR && rows[i])
          _mm_prefetch(reinterpret_cast<const char*>(rows[i] + j0 + 128), _MM_HINT_T0);
        v[i] = i < kMR && rows[i] ? _mm512_maskz_loadu_ps(m, rows[i] + j0) : _mm512_setzero_ps();
      }
      transpose16(v);
      const int w = static_cast<int>(std::min<int64_t>(16, len - j0));
      for (int j = 0; j < w; ++j) _mm512_store_ps(dst + dest(j0 + j) * kAS, v[j]);
    }
  }

  template <class Dest>
  static void pack_b_panel(const float* rows, int64_t ld, int nvalid, int64_t len, Dest dest,
                           float* panel) {
    for (int g = 0; g < kNR / 16; ++g) {
      for (int64_t j0 = 0; j0 < len; j0 += 16) {
        const __mmask16 m = lanes(len - j0);
        __m512 v[16];
        for (int i = 0; i < 16; ++i) {
          const int r = g * 16 + i;
          v[i] = r < nvalid ? _mm512_maskz_loadu_ps(m, rows + r * ld + j0) : _mm512_setzero_ps();
        }
        transpose16(v);
        const int w = static_cast<int>(std::min<int64_t>(16, len - j0));
        for (int j = 0; j < w; ++j) _mm512_store_ps(panel + dest(j0 + j) * kNR + g * 16, v[j]);
      }
    }
  }

  static void pack_plane_block(const float* const px[16], int nch, int npx, float* dst,
                               int64_t plane) {
    const __mmask16 m = lanes(nch);
    __m512 v[16];
    for (int i = 0; i < 16; ++i)
      v[i] = px[i] ? _mm512_maskz_loadu_ps(m, px[i]) : _mm512_setzero_ps();
    transpose16(v);
    const __mmask16 pm = lanes(npx);
    for (int j = 0; j < nch; ++j) _mm512_mask_storeu_ps(dst + j * plane, pm, v[j]);
  }

  // The partial sums of earlier K-blocks in c are added after the k loop, with their lines
  // prefetched before it: loading them first would stall every call on the memory latency of the
  // output.
  static void micro_kernel(const ATile& at, const float* __restrict b, float* const c[kMR],
                           int ncols, const float* bias, bool add_c) {
    const __mmask16 m0 = lanes(ncols), m1 = lanes(std::max(0, ncols - 16));
    if (add_c)
      for (int i = 0; i < kMR; ++i)
        if (c[i]) {
          _mm_prefetch(reinterpret_cast<const char*>(c[i]), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(c[i] + 16), _MM_HINT_T0);
        }
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    __m512 c0[kMR], c1[kMR];
#pragma GCC unroll 14
    for (int i = 0; i < kMR; ++i) {
      c0[i] = b0;
      c1[i] = b1;
    }
    auto step = [&](const float* __restrict a) {
      const __m512 v0 = _mm512_load_ps(b), v1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
      for (int i = 0; i < kMR; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i]);
        c0[i] = _mm512_fmadd_ps(ai, v0, c0[i]);
        c1[i] = _mm512_fmadd_ps(ai, v1, c1[i]);
      }
      b += kNR;
    };
    if (at.inner == 1) {  // a plain k loop (GEMM, im2col-packed convolution)
      const float* a = at.a + at.off[0];
      for (int64_t o = 0; o < at.outer; ++o, a += at.stride) step(a);
    } else {
      const float* base = at.a;
      for (int64_t o = 0; o < at.outer; ++o, base += at.stride)
        for (int t = 0; t < at.inner; ++t) step(base + at.off[t]);
    }
#pragma GCC unroll 14
    for (int i = 0; i < kMR; ++i) {
      if (float* ci = c[i]) {
        if (add_c) {
          c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, ci));
          c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, ci + 16));
        }
        _mm512_mask_storeu_ps(ci, m0, c0[i]);
        _mm512_mask_storeu_ps(ci + 16, m1, c1[i]);
      }
    }
  }
};

#include "kernels/packed_gemm-inl.h"

}  // namespace

void gemm(const float* x, int64_t M, int64_t K, const WeightSource& w, const float* bias,
          float* y) {
  gemm_level<Kernel>(x, M, K, w, bias, y);
}

void conv(const float* x, const ConvShape& s, const WeightSource& w, const float* bias,
          const Conv2dParams& p, float* y) {
  conv_level<Kernel>(x, s, w, bias, p, y);
}

int64_t buffer_bytes(int64_t N, int64_t K, WeightSource::Kind kind, int threads, int64_t taps) {
  return buffer_bytes_level<Kernel>(N, K, kind, threads, taps);
}

}  // namespace sdpal::k::packed::avx512
SDPAL_AVX512_END
