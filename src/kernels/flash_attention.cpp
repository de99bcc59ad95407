#include "kernels/flash_attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"

namespace sdpal::k {

namespace {
constexpr int64_t kRows = 6;         // query rows per micro-kernel (6 x 4 accumulators)
constexpr int64_t kQueryBlock = 72;  // multiple of kRows; Q, K, V, S, O blocks stay in L2
constexpr int64_t kKeyBlock = 64;    // 4 vectors of keys
constexpr int64_t kLanes = 16;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// exp(x) for x <= 0 (including -inf, which gives 0), about 1 ulp: x = n ln2 + r with
// |r| <= ln2/2, degree-7 Taylor polynomial for exp(r) (truncation < 1e-8 relative), scaled by
// 2^n. Results below the smallest normal float flush to 0: they are negligible next to the row
// sum, which is at least 1.
inline __m512 exp_nonpositive(__m512 x) {
  const __mmask16 normal = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.f), _CMP_GE_OQ);
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_maskz_mov_ps(normal, _mm512_scalef_ps(p, n));
}

__mmask16 lanes_below(int64_t count, int64_t first) {
  if (count <= first) return 0;
  if (count >= first + kLanes) return 0xFFFF;
  return static_cast<__mmask16>((1u << (count - first)) - 1);
}

// s[rows][kKeyBlock] = q[rows][D] (row stride ldq) . kt[D][kKeyBlock], NK vectors of keys.
template <int NK>
void scores_block(const float* q, int64_t ldq, const float* kt, int64_t D, float* s, int64_t rows) {
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    __m512 acc[kRows][NK];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NK; ++c) acc[r][c] = _mm512_setzero_ps();
    const float* qr = q + r0 * ldq;
    for (int64_t d = 0; d < D; ++d) {
      __m512 kv[NK];
#pragma GCC unroll 4
      for (int c = 0; c < NK; ++c) kv[c] = _mm512_loadu_ps(kt + d * kKeyBlock + c * kLanes);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) {
        const __m512 qb = _mm512_set1_ps(qr[r * ldq + d]);
#pragma GCC unroll 4
        for (int c = 0; c < NK; ++c) acc[r][c] = _mm512_fmadd_ps(qb, kv[c], acc[r][c]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NK; ++c)
        _mm512_storeu_ps(s + (r0 + r) * kKeyBlock + c * kLanes, acc[r][c]);
  }
}

// o[rows][col0 .. col0 + 16 NV) += p[rows][nk] . v[nk][same columns].
template <int NV>
void accumulate_pv(const float* p, const float* v, int64_t ldv, int64_t nk, float* o, int64_t ldo,
                   int64_t rows, int64_t col0) {
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    __m512 acc[kRows][NV];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NV; ++c)
        acc[r][c] = _mm512_loadu_ps(o + (r0 + r) * ldo + col0 + c * kLanes);
    for (int64_t j = 0; j < nk; ++j) {
      __m512 vv[NV];
#pragma GCC unroll 4
      for (int c = 0; c < NV; ++c) vv[c] = _mm512_loadu_ps(v + j * ldv + col0 + c * kLanes);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) {
        const __m512 pb = _mm512_set1_ps(p[(r0 + r) * kKeyBlock + j]);
#pragma GCC unroll 4
        for (int c = 0; c < NV; ++c) acc[r][c] = _mm512_fmadd_ps(pb, vv[c], acc[r][c]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NV; ++c)
        _mm512_storeu_ps(o + (r0 + r) * ldo + col0 + c * kLanes, acc[r][c]);
  }
}

// Per-thread working set of one (batch, head, query block) task.
struct FlashScratch {
  std::vector<float> q, kt, v, s, o, row_max, row_sum;
  FlashScratch(int64_t d_pad)
      : q(kQueryBlock * d_pad),
        kt(d_pad * kKeyBlock),
        v(kKeyBlock * d_pad),
        s(kQueryBlock * kKeyBlock),
        o(kQueryBlock * d_pad),
        row_max(kQueryBlock),
        row_sum(kQueryBlock) {}
};

struct FlashProblem {
  const float *q, *k, *v;
  float* out;
  int64_t Tq, Tk, C, D, d_pad;
  float scale;
  bool causal;
};

// Folds one key block's scores into the running max/sum of each row, turns s into the block's
// probabilities (unnormalised) and rescales the rows of the accumulator when their max grows.
void online_softmax(FlashScratch& w, const FlashProblem& pb, int64_t rows, int64_t q0, int64_t k0,
                    int64_t nk) {
  const int64_t nvec = round_up(nk, kLanes) / kLanes;
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < rows; ++r) {
    float* s = w.s.data() + r * kKeyBlock;
    const int64_t valid = pb.causal ? std::clamp(q0 + r + 1 - k0, int64_t(0), nk) : nk;
    if (valid == 0) {
      for (int64_t c = 0; c < nvec; ++c) _mm512_storeu_ps(s + c * kLanes, _mm512_setzero_ps());
      continue;
    }
    __m512 mx = neg_inf;
    for (int64_t c = 0; c < nvec; ++c) {
      const __m512 x = _mm512_mask_mov_ps(neg_inf, lanes_below(valid, c * kLanes),
                                          _mm512_loadu_ps(s + c * kLanes));
      _mm512_storeu_ps(s + c * kLanes, x);
      mx = _mm512_max_ps(mx, x);
    }
    const float old_max = w.row_max[r];
    const float new_max = std::max(old_max, _mm512_reduce_max_ps(mx));
    const __m512 m = _mm512_set1_ps(new_max);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t c = 0; c < nvec; ++c) {
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(s + c * kLanes), m));
      _mm512_storeu_ps(s + c * kLanes, e);
      sum = _mm512_add_ps(sum, e);
    }
    const float correction = std::exp(old_max - new_max);  // 0 on the first block (-inf)
    w.row_sum[r] = w.row_sum[r] * correction + _mm512_reduce_add_ps(sum);
    w.row_max[r] = new_max;
    if (correction != 1.f) {
      float* o = w.o.data() + r * pb.d_pad;
      const __m512 f = _mm512_set1_ps(correction);
      for (int64_t d = 0; d < pb.d_pad; d += kLanes)
        _mm512_storeu_ps(o + d, _mm512_mul_ps(f, _mm512_loadu_ps(o + d)));
    }
  }
}

void flash_task(FlashScratch& w, const FlashProblem& pb, int64_t b, int64_t h, int64_t q0) {
  const int64_t D = pb.D, dp = pb.d_pad, C = pb.C;
  const int64_t nq = std::min(kQueryBlock, pb.Tq - q0), rows = round_up(nq, kRows);
  // Q block, pre-scaled; padding rows are zero so they compute harmless finite values.
  std::fill(w.q.begin(), w.q.end(), 0.f);
  for (int64_t r = 0; r < nq; ++r) {
    const float* src = pb.q + (b * pb.Tq + q0 + r) * C + h * D;
    for (int64_t d = 0; d < D; ++d) w.q[r * dp + d] = src[d] * pb.scale;
  }
  std::fill(w.o.begin(), w.o.end(), 0.f);
  std::fill(w.row_max.begin(), w.row_max.end(), -std::numeric_limits<float>::infinity());
  std::fill(w.row_sum.begin(), w.row_sum.end(), 0.f);
  std::fill(w.v.begin(), w.v.end(), 0.f);  // columns D..d_pad stay zero
  const int64_t key_end = pb.causal ? std::min(pb.Tk, q0 + nq) : pb.Tk;
  for (int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
    const int64_t nk = std::min(kKeyBlock, key_end - k0), nvec = round_up(nk, kLanes) / kLanes;
    for (int64_t j = 0; j < kKeyBlock; ++j) {
      if (j < nk) {
        const float* ks = pb.k + (b * pb.Tk + k0 + j) * C + h * D;
        const float* vs = pb.v + (b * pb.Tk + k0 + j) * C + h * D;
        for (int64_t d = 0; d < D; ++d) w.kt[d * kKeyBlock + j] = ks[d];
        std::copy(vs, vs + D, w.v.data() + j * dp);
      } else {
        for (int64_t d = 0; d < D; ++d) w.kt[d * kKeyBlock + j] = 0.f;
      }
    }
    switch (nvec) {
      case 1:
        scores_block<1>(w.q.data(), dp, w.kt.data(), D, w.s.data(), rows);
        break;
      case 2:
        scores_block<2>(w.q.data(), dp, w.kt.data(), D, w.s.data(), rows);
        break;
      case 3:
        scores_block<3>(w.q.data(), dp, w.kt.data(), D, w.s.data(), rows);
        break;
      default:
        scores_block<4>(w.q.data(), dp, w.kt.data(), D, w.s.data(), rows);
        break;
    }
    online_softmax(w, pb, rows, q0, k0, nk);
    for (int64_t col0 = 0; col0 < dp; col0 += 4 * kLanes) {
      const float *p = w.s.data(), *v = w.v.data();
      float* o = w.o.data();
      switch (std::min<int64_t>(4, (dp - col0) / kLanes)) {
        case 1:
          accumulate_pv<1>(p, v, dp, nk, o, dp, rows, col0);
          break;
        case 2:
          accumulate_pv<2>(p, v, dp, nk, o, dp, rows, col0);
          break;
        case 3:
          accumulate_pv<3>(p, v, dp, nk, o, dp, rows, col0);
          break;
        default:
          accumulate_pv<4>(p, v, dp, nk, o, dp, rows, col0);
          break;
      }
    }
  }
  for (int64_t r = 0; r < nq; ++r) {
    const float inv = 1.f / w.row_sum[r];
    float* dst = pb.out + (b * pb.Tq + q0 + r) * C + h * D;
    for (int64_t d = 0; d < D; ++d) dst[d] = w.o[r * dp + d] * inv;
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
  FlashProblem pb{
      q.data(), k.data(), v.data(), out.data(),          Tq,
      Tk,       C,        D,        round_up(D, kLanes), 1.f / std::sqrt(static_cast<float>(D)),
      causal};
  const int64_t blocks = (Tq + kQueryBlock - 1) / kQueryBlock;
  const int64_t tasks = B * heads * blocks;
#pragma omp parallel if (B * heads * Tq * Tk * D > kParallelGrain)
  {
    FlashScratch w(pb.d_pad);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t)
      flash_task(w, pb, t / (heads * blocks), (t / blocks) % heads, (t % blocks) * kQueryBlock);
  }
  return out;
}

}  // namespace sdpal::k
