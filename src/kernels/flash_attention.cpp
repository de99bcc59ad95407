#include "kernels/flash_attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"

namespace sdpal::k {

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

// Full-mask form of max: the unmasked intrinsic passes GCC 12 an "undefined" source that
// -Wuninitialized reports. Like vmaxps, returns b where a is NaN.
inline __m512 vmax(__m512 a, __m512 b) { return _mm512_mask_max_ps(a, 0xFFFF, a, b); }

// 2^x for x <= 0 (NaN and -inf clamp to a tiny positive value; callers mask where exact zeros
// matter): x = n + r with |r| <= 1/2, degree-6 polynomial for 2^r (about 2 ulp), scaled by 2^n.
inline __m512 exp2_nonpositive(__m512 x) {
  x = vmax(x, _mm512_set1_ps(-120.f));  // NaN -> -120 (maxps returns the 2nd operand)
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.535336188319500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.339887440266574e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.618437357674640e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.550332471162809e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.402264791363012e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(6.931472028550421e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
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

struct FlashProblem {
  const float *q, *k, *v;
  float* out;
  int64_t Tq, Tk, C, D;
  float scale;  // 1/sqrt(D) * log2(e): scores come out in base 2
  bool causal;
};

// Lanes of query vector c (queries q0 + 16c ..) that may see key kj under the causal mask.
__mmask16 causal_lanes(int64_t kj, int64_t q0, int c) {
  const int64_t first = kj - q0 - c * kLanes;  // first lane whose query index is >= kj
  if (first <= 0) return 0xFFFF;
  if (first >= kLanes) return 0;
  return static_cast<__mmask16>(0xFFFFu << first);
}

void flash_task(FlashScratch& w, const FlashProblem& pb, int64_t b, int64_t h, int64_t q0) {
  const int64_t D = pb.D, C = pb.C;
  const int64_t nq = std::min(kQueryBlock, pb.Tq - q0);
  // Q^T block, pre-scaled; padding queries are zero so they compute harmless finite values.
  std::fill(w.qt.begin(), w.qt.end(), 0.f);
  for (int64_t r = 0; r < nq; ++r) {
    const float* src = pb.q + (b * pb.Tq + q0 + r) * C + h * D;
    for (int64_t d = 0; d < D; ++d) w.qt[d * kQueryBlock + r] = src[d] * pb.scale;
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
  for (int64_t r = 0; r < nq; ++r) {
    float* dst = pb.out + (b * pb.Tq + q0 + r) * C + h * D;
    for (int64_t d = 0; d < D; ++d) dst[d] = w.ot[d * kQueryBlock + r] * inv[r];
  }
}
}  // namespace

Tensor flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                       bool causal) {
  SDPAL_CHECK(heads > 0 && q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3 &&
                  q.dim(0) == k.dim(0) && k.shape() == v.shape() && q.dim(2) == k.dim(2) &&
                  q.dim(2) % heads == 0 && k.dim(1) > 0,
              "flash_attention: incompatible shapes q " + shape_str(q.shape()) + " k " +
                  shape_str(k.shape()) + " v " + shape_str(v.shape()));
  const int64_t B = q.dim(0), Tq = q.dim(1), Tk = k.dim(1), C = q.dim(2), D = C / heads;
  Tensor out({B, Tq, C});
  const float scale = 1.44269504088896341f / std::sqrt(static_cast<float>(D));
  const FlashProblem pb{q.data(), k.data(), v.data(), out.data(), Tq, Tk, C, D, scale, causal};
  const int64_t blocks = (Tq + kQueryBlock - 1) / kQueryBlock;
  const int64_t tasks = B * heads * blocks;
#pragma omp parallel if (B * heads * Tq * Tk * D > kParallelGrain)
  {
    FlashScratch w(D);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t)
      flash_task(w, pb, t / (heads * blocks), (t / blocks) % heads, (t % blocks) * kQueryBlock);
  }
  return out;
}

}  // namespace sdpal::k
