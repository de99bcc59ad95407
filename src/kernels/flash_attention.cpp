// Flash attention, portable Highway kernel (AVX2, SSE4, NEON, scalar; the AVX-512 levels run the
// hand-written flash_attention_avx512.cpp), and the entry points that choose between the two.
//
// The block is computed transposed: scores S^T[key][query] and output O^T[d][query] keep
// queries along the vector lanes, so any head dim D works without padding lanes, the softmax
// max/sum per query are plain vertical vector ops, and K and V are read in place (broadcasts
// from their rows) without packing. Block sizes follow the target's lane count.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/flash_attention.cpp"
#include "kernels/flash_attention.h"

#include <hwy/aligned_allocator.h>
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/parallel.h"

HWY_BEFORE_NAMESPACE();
namespace sdpal {
namespace HWY_NAMESPACE {
namespace {
namespace hn = hwy::HWY_NAMESPACE;
using k::detail::FlashProblem;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
using MF = hn::Mask<DF>;

// Register tiles: kTile keys (scores) or head dims (PV) times kQVec query vectors accumulate
// while kQVec query vectors and one broadcast are live.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_NEON
constexpr int kQVec = 4, kTile = 6;  // 32 registers: 24 accumulators
#elif HWY_TARGET == HWY_SCALAR
constexpr int kQVec = 4, kTile = 4;  // 16 scalar accumulators
#else
constexpr int kQVec = 2, kTile = 6;  // SSE4, AVX2: 16 registers, 12 accumulators
#endif
constexpr int64_t kLanes = static_cast<int64_t>(hn::MaxLanes(DF()));
constexpr int64_t kQueryBlock = kQVec * kLanes;
constexpr int64_t kKeyBlock = 128;  // S^T block of 128 keys x kQueryBlock stays in L1/L2

// max(lo, x) that keeps a NaN x, so that a NaN score reaches the output: x86's maxps returns its
// second operand where either is NaN, while NEON's vmaxnm and the scalar Max return the number.
HWY_INLINE VF MaxKeepNaN(VF lo, VF x) {
#if HWY_ARCH_X86 && HWY_TARGET != HWY_SCALAR
  return hn::Max(lo, x);
#else
  return hn::IfThenElse(hn::Lt(x, lo), lo, x);
#endif
}

// 2^x for x <= 0, as the AVX-512 kernel computes it (-inf clamps to a tiny positive value,
// callers mask where exact zeros matter; NaN stays NaN): r = x - floor(x) in [0, 1), degree-5
// polynomial for 2^r with p(0) = 1 exactly (relative error 9e-8, fitted on Chebyshev nodes),
// times 2^floor(x) built from its exponent bits.
HWY_INLINE VF Exp2NonPositive(VF x) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  x = MaxKeepNaN(hn::Set(d, -120.f), x);
  const VF fl = hn::Floor(x);
  const VF r = hn::Sub(x, fl);
  VF p = hn::Set(d, 0.0018671310972422361f);
  p = hn::MulAdd(p, r, hn::Set(d, 0.009017027914524078f));
  p = hn::MulAdd(p, r, hn::Set(d, 0.05579991638660431f));
  p = hn::MulAdd(p, r, hn::Set(d, 0.24016444385051727f));
  p = hn::MulAdd(p, r, hn::Set(d, 0.6931512951850891f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.f));
  // fl + 1.5 * 2^23 + 127 holds the biased exponent fl + 127 (7 .. 127) in its low mantissa
  // bits; shifting them into the exponent field gives 2^fl.
  const VF biased = hn::Add(fl, hn::Set(d, 12583039.f));
  return hn::Mul(p, hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(du, biased))));
}

// s[j][0..kQueryBlock) = k[j][0..D) . qt[0..D)[same queries] for R keys (row stride ldk), and
// folds the tile's column maxima into bmax.
template <int R>
HWY_INLINE void ScoresTile(const float* HWY_RESTRICT qt, const float* HWY_RESTRICT k, int64_t ldk,
                           int64_t D, float* HWY_RESTRICT s, VF* bmax) {
  const DF d;
  VF acc[R][kQVec];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) acc[r][c] = hn::Zero(d);
  for (int64_t e = 0; e < D; ++e) {
    VF qv[kQVec];
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) qv[c] = hn::Load(d, qt + e * kQueryBlock + c * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const VF kb = hn::Set(d, k[r * ldk + e]);
#pragma GCC unroll 4
      for (int c = 0; c < kQVec; ++c) acc[r][c] = hn::MulAdd(kb, qv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) {
      hn::Store(acc[r][c], d, s + r * kQueryBlock + c * kLanes);
      bmax[c] = hn::Max(bmax[c], acc[r][c]);
    }
}

// ot[d][queries] += sum_j v[j][d] p[j][queries] for R head dims d0.. (v row stride ldv).
template <int R>
HWY_INLINE void PvTile(const float* HWY_RESTRICT p, const float* HWY_RESTRICT v, int64_t ldv,
                       int64_t nk, float* HWY_RESTRICT ot) {
  const DF d;
  VF acc[R][kQVec];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) acc[r][c] = hn::Load(d, ot + r * kQueryBlock + c * kLanes);
  for (int64_t j = 0; j < nk; ++j) {
    VF pv[kQVec];
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) pv[c] = hn::Load(d, p + j * kQueryBlock + c * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const VF vb = hn::Set(d, v[j * ldv + r]);
#pragma GCC unroll 4
      for (int c = 0; c < kQVec; ++c) acc[r][c] = hn::MulAdd(vb, pv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < kQVec; ++c) hn::Store(acc[r][c], d, ot + r * kQueryBlock + c * kLanes);
}

// The last n < kTile keys / head dims: the tile of exactly n rows.
template <int R>
HWY_INLINE void ScoresRest(int64_t n, const float* qt, const float* k, int64_t ldk, int64_t D,
                           float* s, VF* bmax) {
  if constexpr (R > 0) {
    if (n == R) return ScoresTile<R>(qt, k, ldk, D, s, bmax);
    ScoresRest<R - 1>(n, qt, k, ldk, D, s, bmax);
  }
}

template <int R>
HWY_INLINE void PvRest(int64_t n, const float* p, const float* v, int64_t ldv, int64_t nk,
                       float* ot) {
  if constexpr (R > 0) {
    if (n == R) return PvTile<R>(p, v, ldv, nk, ot);
    PvRest<R - 1>(n, p, v, ldv, nk, ot);
  }
}

void ScoresRows(const float* qt, const float* k, int64_t ldk, int64_t D, float* s, int64_t n,
                VF* bmax) {
  int64_t j = 0;
  for (; j + kTile <= n; j += kTile)
    ScoresTile<kTile>(qt, k + j * ldk, ldk, D, s + j * kQueryBlock, bmax);
  ScoresRest<kTile - 1>(n - j, qt, k + j * ldk, ldk, D, s + j * kQueryBlock, bmax);
}

void PvRows(const float* p, const float* v, int64_t ldv, int64_t nk, float* ot, int64_t D) {
  int64_t d = 0;
  for (; d + kTile <= D; d += kTile) PvTile<kTile>(p, v + d, ldv, nk, ot + d * kQueryBlock);
  PvRest<kTile - 1>(D - d, p, v + d, ldv, nk, ot + d * kQueryBlock);
}

// dst[j * ldd + i] = f * src[i * lds + j] for i < rows, j < cols: 4 x 4 blocks transposed in
// 128-bit registers (every SIMD target has them), the edges one element at a time.
void TransposeScaled(const float* HWY_RESTRICT src, int64_t lds, int64_t rows, int64_t cols,
                     float f, float* HWY_RESTRICT dst, int64_t ldd) {
  int64_t i = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::Full128<float> d4;
  const auto vf = hn::Set(d4, f);
  for (; i + 4 <= rows; i += 4) {
    const float* s = src + i * lds;
    int64_t j = 0;
    for (; j + 4 <= cols; j += 4) {
      const auto r0 = hn::LoadU(d4, s + j), r1 = hn::LoadU(d4, s + lds + j);
      const auto r2 = hn::LoadU(d4, s + 2 * lds + j), r3 = hn::LoadU(d4, s + 3 * lds + j);
      const auto t0 = hn::InterleaveLower(d4, r0, r1), t1 = hn::InterleaveUpper(d4, r0, r1);
      const auto t2 = hn::InterleaveLower(d4, r2, r3), t3 = hn::InterleaveUpper(d4, r2, r3);
      float* o = dst + j * ldd + i;
      hn::StoreU(hn::Mul(vf, hn::ConcatLowerLower(d4, t2, t0)), d4, o);
      hn::StoreU(hn::Mul(vf, hn::ConcatUpperUpper(d4, t2, t0)), d4, o + ldd);
      hn::StoreU(hn::Mul(vf, hn::ConcatLowerLower(d4, t3, t1)), d4, o + 2 * ldd);
      hn::StoreU(hn::Mul(vf, hn::ConcatUpperUpper(d4, t3, t1)), d4, o + 3 * ldd);
    }
    for (; j < cols; ++j)
      for (int64_t r = 0; r < 4; ++r) dst[j * ldd + i + r] = f * s[r * lds + j];
  }
#endif
  for (; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[j * ldd + i] = f * src[i * lds + j];
}

// Lanes of query vector c (queries q0 + c * kLanes ..) that may see key kj under the causal mask.
HWY_INLINE MF CausalLanes(int64_t kj, int64_t q0, int c) {
  const int64_t first = kj - q0 - c * kLanes;  // first lane whose query index is >= kj
  return hn::Not(hn::FirstN(DF(), static_cast<size_t>(std::clamp<int64_t>(first, 0, kLanes))));
}

// Per-thread working set of one (batch, head, query block) task, vector-aligned.
struct Scratch {
  hwy::AlignedFreeUniquePtr<float[]> qt, s, ot;
  explicit Scratch(int64_t D)
      : qt(hwy::AllocateAligned<float>(D * kQueryBlock)),
        s(hwy::AllocateAligned<float>(kKeyBlock * kQueryBlock)),
        ot(hwy::AllocateAligned<float>(D * kQueryBlock)) {}
};

void FlashTask(Scratch& w, const FlashProblem& pb, int64_t b, int64_t h, int64_t q0) {
  const DF d;
  const int64_t D = pb.D, C = pb.heads * pb.D;
  const int64_t nq = std::min(kQueryBlock, pb.Tq - q0);
  float* HWY_RESTRICT qt = w.qt.get();
  float* HWY_RESTRICT s = w.s.get();
  float* HWY_RESTRICT ot = w.ot.get();
  // Cross attention (77 keys) does little work per query, so misses on Q and the output rows
  // matter: fetch the next block's Q rows and this block's output rows while computing.
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t next = q0 + kQueryBlock + r;
    for (int64_t e = 0; e < D + 16; e += 16) {
      const int64_t ee = std::min(e, D - 1);
      if (next < pb.Tq) __builtin_prefetch(pb.q + (b * pb.Tq + next) * C + h * D + ee, 0, 2);
      __builtin_prefetch(pb.out + (b * pb.Tq + q0 + r) * C + h * D + ee, 1, 2);
    }
  }
  // Q^T block, pre-scaled; padding queries are zero so they compute harmless finite values.
  if (nq < kQueryBlock) std::fill(qt, qt + D * kQueryBlock, 0.f);
  TransposeScaled(pb.q + (b * pb.Tq + q0) * C + h * D, C, nq, D, pb.scale, qt, kQueryBlock);
  std::fill(ot, ot + D * kQueryBlock, 0.f);
  VF row_max[kQVec], row_sum[kQVec];
  for (int c = 0; c < kQVec; ++c) {
    row_max[c] = hn::Set(d, -std::numeric_limits<float>::infinity());
    row_sum[c] = hn::Zero(d);
  }
  const float* kbase = pb.k + b * pb.Tk * C + h * D;
  const float* vbase = pb.v + b * pb.Tk * C + h * D;
  const int64_t key_end = pb.causal ? std::min(pb.Tk, q0 + nq) : pb.Tk;
  for (int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
    const int64_t nk = std::min(kKeyBlock, key_end - k0);
    VF bmax[kQVec];
    for (int c = 0; c < kQVec; ++c) bmax[c] = hn::Set(d, -std::numeric_limits<float>::infinity());
    ScoresRows(qt, kbase + k0 * C, C, D, s, nk, bmax);
    // Keys past the first query of the block can be hidden from some of its queries.
    const bool masked = pb.causal && k0 + nk - 1 > q0;
    if (masked) {
      for (int c = 0; c < kQVec; ++c) {
        bmax[c] = hn::Set(d, -std::numeric_limits<float>::infinity());
        for (int64_t j = 0; j < nk; ++j)
          bmax[c] = hn::IfThenElse(CausalLanes(k0 + j, q0, c),
                                   hn::Max(bmax[c], hn::Load(d, s + j * kQueryBlock + c * kLanes)),
                                   bmax[c]);
      }
    }
    for (int c = 0; c < kQVec; ++c) {
      const VF m = hn::Max(row_max[c], bmax[c]);
      const VF correction = Exp2NonPositive(hn::Sub(row_max[c], m));  // ~0 at first
      row_max[c] = m;
      float* sc = s + c * kLanes;
      VF sum = hn::Zero(d);
      if (masked) {
        for (int64_t j = 0; j < nk; ++j) {
          const VF e =
              hn::IfThenElseZero(CausalLanes(k0 + j, q0, c),
                                 Exp2NonPositive(hn::Sub(hn::Load(d, sc + j * kQueryBlock), m)));
          hn::Store(e, d, sc + j * kQueryBlock);
          sum = hn::Add(sum, e);
        }
      } else {
        for (int64_t j = 0; j < nk; ++j) {
          const VF e = Exp2NonPositive(hn::Sub(hn::Load(d, sc + j * kQueryBlock), m));
          hn::Store(e, d, sc + j * kQueryBlock);
          sum = hn::Add(sum, e);
        }
      }
      row_sum[c] = hn::MulAdd(row_sum[c], correction, sum);
      if (k0 > 0) {
        float* o = ot + c * kLanes;
        for (int64_t e = 0; e < D; ++e)
          hn::Store(hn::Mul(correction, hn::Load(d, o + e * kQueryBlock)), d, o + e * kQueryBlock);
      }
    }
    PvRows(s, vbase + k0 * C, C, nk, ot, D);
  }
  for (int c = 0; c < kQVec; ++c) {
    const VF inv = hn::Div(hn::Set(d, 1.f), row_sum[c]);
    float* o = ot + c * kLanes;
    for (int64_t e = 0; e < D; ++e)
      hn::Store(hn::Mul(inv, hn::Load(d, o + e * kQueryBlock)), d, o + e * kQueryBlock);
  }
  TransposeScaled(ot, kQueryBlock, D, nq, 1.f, pb.out + (b * pb.Tq + q0) * C + h * D, C);
}
}  // namespace

void FlashAttention(const FlashProblem& pb) {
  const int64_t blocks = (pb.Tq + kQueryBlock - 1) / kQueryBlock;
  const int64_t tasks = pb.B * pb.heads * blocks;
#pragma omp parallel if (pb.B * pb.heads * pb.Tq * pb.Tk * pb.D > kParallelGrain)
  {
    Scratch w(pb.D);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t)
      FlashTask(w, pb, t / (pb.heads * blocks), (t / blocks) % pb.heads,
                (t % blocks) * kQueryBlock);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace sdpal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace sdpal {
HWY_EXPORT(FlashAttention);

namespace k {
namespace {
Tensor run(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads, bool causal,
           bool hand_written) {
  SDPAL_CHECK(heads > 0 && q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3 &&
                  q.dim(0) == k.dim(0) && k.shape() == v.shape() && q.dim(2) == k.dim(2) &&
                  q.dim(2) % heads == 0 && k.dim(1) > 0,
              "flash_attention: incompatible shapes q " + shape_str(q.shape()) + " k " +
                  shape_str(k.shape()) + " v " + shape_str(v.shape()));
  const int64_t B = q.dim(0), Tq = q.dim(1), Tk = k.dim(1), D = q.dim(2) / heads;
  Tensor out({B, Tq, q.dim(2)});
  const float scale = 1.44269504088896341f / std::sqrt(static_cast<float>(D));
  const detail::FlashProblem pb{q.data(), k.data(), v.data(), out.data(), B,     heads,
                                Tq,       Tk,       D,        scale,      causal};
#if HWY_ARCH_X86_64
  if (hand_written && cpu::use_avx512()) {
    detail::flash_attention_avx512(pb);
    return out;
  }
#else
  (void)hand_written;
#endif
  SDPAL_DISPATCH(FlashAttention)(pb);
  return out;
}
}  // namespace

Tensor flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                       bool causal) {
  return run(q, k, v, heads, causal, /*hand_written=*/true);
}

Tensor flash_attention_portable(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                                bool causal) {
  return run(q, k, v, heads, causal, /*hand_written=*/false);
}

}  // namespace k
}  // namespace sdpal
#endif  // HWY_ONCE
