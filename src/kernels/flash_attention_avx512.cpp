// The hand-written AVX-512 flash attention: 64-query blocks (4 zmm of queries), 6 x 4 zmm
// register tiles, exp2 by vreduceps + polynomial + vscalefps, 16 x 16 in-register transposes of
// the Q and output blocks. Kept beside the portable Highway kernel because it is faster there.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/parallel.h"
#include "core/target_avx512.h"
#include "kernels/flash_attention.h"

SDPAL_AVX512_BEGIN
#include <immintrin.h>

#include "kernels/transpose16_avx512.h"

namespace sdpal::k::detail {

// The block is computed transposed: scores S^T[key][query] and output O^T[d][query] keep
// queries along the vector lanes, so any head dim D works without padding lanes (D = 40 is
// 2.5 vectors), the softmax max/sum per query are plain vertical vector ops, and K and V are
// read in place (broadcasts from their rows) without packing.
namespace {
constexpr int kQVec = 4;  // query vectors per block (64 queries)
constexpr int64_t kLanes = 16;
constexpr int64_t kQueryBlock = kQVec * kLanes;
constexpr int64_t kKeyBlock = 128;  // S^T block of 128 x 64 floats stays in L1/L2
constexpr int kTile = 6;            // keys (scores) or head dims (PV) per micro-tile

using avx512_transpose::transpose16;

// Full-mask form of max: the unmasked intrinsic passes GCC 12 an "undefined" source that
// -Wuninitialized reports. Like vmaxps, returns b where a is NaN.
inline __m512 vmax(__m512 a, __m512 b) { return _mm512_mask_max_ps(a, 0xFFFF, a, b); }

// 2^x for x <= 0 (-inf clamps to a tiny positive value, callers mask where exact zeros matter;
// NaN stays NaN, so a NaN score reaches the output): r = x - floor(x) in [0, 1) in one vreduceps,
// degree-5 polynomial for 2^r with p(0) = 1 exactly (relative error 9e-8, fitted on Chebyshev
// nodes), scaled by 2^floor(x) by vscalefps.
inline __m512 exp2_nonpositive(__m512 x) {
  x = vmax(_mm512_set1_ps(-120.f), x);  // vmaxps returns the 2nd operand, x, where x is NaN
  const __m512 r = _mm512_mask_reduce_ps(x, 0xFFFF, x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 p = _mm512_set1_ps(0.0018671310972422361f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.009017027914524078f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.05579991638660431f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.24016444385051727f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.6931512951850891f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, x);
}

// s[j][0..kQueryBlock) = k[j][0..D) . qt[0..D)[same queries] for R keys (row stride ldk), and
// folds the tile's column maxima into bmax.
template <int R>
inline void scores_tile(const float* qt, const float* k, int64_t ldk, int64_t D, float* s,
                        __m512* bmax) {
  __m512 acc[R][kQVec];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    __m512 qv[kQVec];
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) qv[c] = _mm512_loadu_ps(qt + d * kQueryBlock + c * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 kb = _mm512_set1_ps(k[r * ldk + d]);
#pragma GCC unroll 4
      for (int c = 0; c < kQVec; ++c) acc[r][c] = _mm512_fmadd_ps(kb, qv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) {
      _mm512_storeu_ps(s + r * kQueryBlock + c * kLanes, acc[r][c]);
      bmax[c] = vmax(bmax[c], acc[r][c]);
    }
}

// ot[d][queries] += sum_j v[j][d] p[j][queries] for R head dims d0.. (v row stride ldv).
template <int R>
inline void pv_tile(const float* p, const float* v, int64_t ldv, int64_t nk, float* ot) {
  __m512 acc[R][kQVec];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) acc[r][c] = _mm512_loadu_ps(ot + r * kQueryBlock + c * kLanes);
  for (int64_t j = 0; j < nk; ++j) {
    __m512 pv[kQVec];
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) pv[c] = _mm512_loadu_ps(p + j * kQueryBlock + c * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 vb = _mm512_set1_ps(v[j * ldv + r]);
#pragma GCC unroll 4
      for (int c = 0; c < kQVec; ++c) acc[r][c] = _mm512_fmadd_ps(vb, pv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) _mm512_storeu_ps(ot + r * kQueryBlock + c * kLanes, acc[r][c]);
}

static_assert(kTile == 6, "the remainder switches below handle 1 .. 5 rows");

void scores_rows(const float* qt, const float* k, int64_t ldk, int64_t D, float* s, int64_t n,
                 __m512* bmax) {
  int64_t j = 0;
  for (; j + kTile <= n; j += kTile)
    scores_tile<kTile>(qt, k + j * ldk, ldk, D, s + j * kQueryBlock, bmax);
  k += j * ldk;
  s += j * kQueryBlock;
  switch (n - j) {
    case 0:
      break;
    case 1:
      scores_tile<1>(qt, k, ldk, D, s, bmax);
      break;
    case 2:
      scores_tile<2>(qt, k, ldk, D, s, bmax);
      break;
    case 3:
      scores_tile<3>(qt, k, ldk, D, s, bmax);
      break;
    case 4:
      scores_tile<4>(qt, k, ldk, D, s, bmax);
      break;
    default:
      scores_tile<5>(qt, k, ldk, D, s, bmax);
      break;
  }
}

void pv_rows(const float* p, const float* v, int64_t ldv, int64_t nk, float* ot, int64_t D) {
  int64_t d = 0;
  for (; d + kTile <= D; d += kTile) pv_tile<kTile>(p, v + d, ldv, nk, ot + d * kQueryBlock);
  v += d;
  ot += d * kQueryBlock;
  switch (D - d) {
    case 0:
      break;
    case 1:
      pv_tile<1>(p, v, ldv, nk, ot);
      break;
    case 2:
      pv_tile<2>(p, v, ldv, nk, ot);
      break;
    case 3:
      pv_tile<3>(p, v, ldv, nk, ot);
      break;
    case 4:
      pv_tile<4>(p, v, ldv, nk, ot);
      break;
    default:
      pv_tile<5>(p, v, ldv, nk, ot);
      break;
  }
}

// Per-thread working set of one (batch, head, query block) task.
struct FlashScratch {
  std::vector<float> qt, s, ot;
  explicit FlashScratch(int64_t D)
      : qt(D * kQueryBlock), s(kKeyBlock * kQueryBlock), ot(D * kQueryBlock) {}
};

// The first min(count, 16) lanes.
__mmask16 lanes_below(int64_t count) {
  if (count <= 0) return 0;
  if (count >= kLanes) return 0xFFFF;
  return static_cast<__mmask16>((1u << count) - 1);
}

// Lanes of query vector c (queries q0 + 16c ..) that may see key kj under the causal mask.
__mmask16 causal_lanes(int64_t kj, int64_t q0, int c) {
  const int64_t first = kj - q0 - c * kLanes;  // first lane whose query index is >= kj
  if (first <= 0) return 0xFFFF;
  if (first >= kLanes) return 0;
  return static_cast<__mmask16>(0xFFFFu << first);
}

void flash_task(FlashScratch& w, const FlashProblem& pb, int64_t b, int64_t h, int64_t q0) {
  const int64_t D = pb.D, C = pb.heads * pb.D;
  const int64_t nq = std::min(kQueryBlock, pb.Tq - q0);
  // Cross attention (77 keys) does little work per query, so misses on Q and the output rows
  // matter: fetch the next block's Q rows and this block's output rows while computing.
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t next = q0 + kQueryBlock + r;
    for (int64_t d = 0; d < D + kLanes; d += kLanes) {
      const int64_t dd = std::min(d, D - 1);
      if (next < pb.Tq) __builtin_prefetch(pb.q + (b * pb.Tq + next) * C + h * D + dd, 0, 2);
      __builtin_prefetch(pb.out + (b * pb.Tq + q0 + r) * C + h * D + dd, 1, 2);
    }
  }
  // Q^T block, pre-scaled; padding queries are zero so they compute harmless finite values.
  const __m512 scale = _mm512_set1_ps(pb.scale);
  for (int c = 0; c < kQVec; ++c) {
    const int64_t rows = std::clamp<int64_t>(nq - c * kLanes, 0, kLanes);
    const float* src = pb.q + (b * pb.Tq + q0 + c * kLanes) * C + h * D;
    for (int64_t d0 = 0; d0 < D; d0 += kLanes) {
      const __mmask16 dims = lanes_below(D - d0);
      __m512 t[kLanes];
      for (int64_t r = 0; r < kLanes; ++r)
        t[r] = r < rows ? _mm512_maskz_loadu_ps(dims, src + r * C + d0) : _mm512_setzero_ps();
      transpose16(t);
      for (int64_t i = 0; i < std::min(kLanes, D - d0); ++i)
        _mm512_storeu_ps(w.qt.data() + (d0 + i) * kQueryBlock + c * kLanes,
                         _mm512_mul_ps(scale, t[i]));
    }
  }
  std::fill(w.ot.begin(), w.ot.end(), 0.f);
  __m512 row_max[kQVec], row_sum[kQVec];
  for (int c = 0; c < kQVec; ++c) {
    row_max[c] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    row_sum[c] = _mm512_setzero_ps();
  }
  const float* kbase = pb.k + b * pb.Tk * C + h * D;
  const float* vbase = pb.v + b * pb.Tk * C + h * D;
  const int64_t key_end = pb.causal ? std::min(pb.Tk, q0 + nq) : pb.Tk;
  for (int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
    const int64_t nk = std::min(kKeyBlock, key_end - k0);
    __m512 bmax[kQVec];
    for (int c = 0; c < kQVec; ++c)
      bmax[c] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    scores_rows(w.qt.data(), kbase + k0 * C, C, D, w.s.data(), nk, bmax);
    // Keys past the first query of the block can be hidden from some of its queries.
    const bool masked = pb.causal && k0 + nk - 1 > q0;
    if (masked) {
      for (int c = 0; c < kQVec; ++c) {
        bmax[c] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
        for (int64_t j = 0; j < nk; ++j)
          bmax[c] = _mm512_mask_max_ps(bmax[c], causal_lanes(k0 + j, q0, c), bmax[c],
                                       _mm512_loadu_ps(w.s.data() + j * kQueryBlock + c * kLanes));
      }
    }
    for (int c = 0; c < kQVec; ++c) {
      const __m512 m = vmax(row_max[c], bmax[c]);
      const __m512 correction = exp2_nonpositive(_mm512_sub_ps(row_max[c], m));  // ~0 at first
      row_max[c] = m;
      float* s = w.s.data() + c * kLanes;
      __m512 sum = _mm512_setzero_ps();
      if (masked) {
        for (int64_t j = 0; j < nk; ++j) {
          const __m512 e = _mm512_maskz_mov_ps(
              causal_lanes(k0 + j, q0, c),
              exp2_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(s + j * kQueryBlock), m)));
          _mm512_storeu_ps(s + j * kQueryBlock, e);
          sum = _mm512_add_ps(sum, e);
        }
      } else {
        for (int64_t j = 0; j < nk; ++j) {
          const __m512 e = exp2_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(s + j * kQueryBlock), m));
          _mm512_storeu_ps(s + j * kQueryBlock, e);
          sum = _mm512_add_ps(sum, e);
        }
      }
      row_sum[c] = _mm512_fmadd_ps(row_sum[c], correction, sum);
      if (k0 > 0) {
        float* ot = w.ot.data() + c * kLanes;
        for (int64_t d = 0; d < D; ++d)
          _mm512_storeu_ps(ot + d * kQueryBlock,
                           _mm512_mul_ps(correction, _mm512_loadu_ps(ot + d * kQueryBlock)));
      }
    }
    pv_rows(w.s.data(), vbase + k0 * C, C, nk, w.ot.data(), D);
  }
  alignas(64) float inv[kQueryBlock];
  for (int c = 0; c < kQVec; ++c)
    _mm512_store_ps(inv + c * kLanes, _mm512_div_ps(_mm512_set1_ps(1.f), row_sum[c]));
  for (int c = 0; c < kQVec; ++c) {
    const int64_t rows = std::clamp<int64_t>(nq - c * kLanes, 0, kLanes);
    float* dst = pb.out + (b * pb.Tq + q0 + c * kLanes) * C + h * D;
    const __m512 f = _mm512_loadu_ps(inv + c * kLanes);
    for (int64_t d0 = 0; d0 < D; d0 += kLanes) {
      const int64_t dims = std::min(kLanes, D - d0);
      __m512 t[kLanes];
      for (int64_t i = 0; i < kLanes; ++i)
        t[i] = i < dims ? _mm512_mul_ps(
                              f, _mm512_loadu_ps(w.ot.data() + (d0 + i) * kQueryBlock + c * kLanes))
                        : _mm512_setzero_ps();
      transpose16(t);
      for (int64_t r = 0; r < rows; ++r)
        _mm512_mask_storeu_ps(dst + r * C + d0, lanes_below(dims), t[r]);
    }
  }
}
}  // namespace

void flash_attention_avx512(const FlashProblem& pb) {
  const int64_t blocks = (pb.Tq + kQueryBlock - 1) / kQueryBlock;
  const int64_t tasks = pb.B * pb.heads * blocks;
#pragma omp parallel if (pb.B * pb.heads * pb.Tq * pb.Tk * pb.D > kParallelGrain)
  {
    FlashScratch w(pb.D);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t)
      flash_task(w, pb, t / (pb.heads * blocks), (t / blocks) % pb.heads,
                 (t % blocks) * kQueryBlock);
  }
}

}  // namespace sdpal::k::detail
SDPAL_AVX512_END
