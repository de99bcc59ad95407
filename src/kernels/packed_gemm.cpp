// Blocked GEMM in the GotoBLAS/BLIS scheme: the weight (B = W^T) is packed one K-block x N-block
// at a time into NR-wide panels, shared by all threads; each thread packs its MC x KC block of
// activations into MR-wide panels and runs an MR x NR register-blocked micro-kernel over them.
// Packing is where the weight's storage is read, so a compressed weight is expanded straight
// into the panels (an NR x KC piece at a time, through a small per-thread buffer).
#include "kernels/packed_gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <optional>

#include "core/dtype.h"
#include "core/error.h"
#include "core/profile.h"

namespace sdpal::k {

namespace {

std::atomic<bool> g_fused{true};

// Blocking, tuned on Zen 5 against oneDNN's sgemm on SD 1.5 shapes. With 14 FMAs per loaded
// weight vector the micro-kernel runs from L2 as well as from L1, so the K-block is long: few
// passes over the output (each pass reads and writes all of it), which is what limits wide layers.
constexpr int kMR = 14;               // micro-tile rows (activations): 28 accumulators
constexpr int kAS = 16;               // floats per k in a packed activation panel (64 bytes)
constexpr int kNR = 32;               // micro-tile columns (output channels): two zmm
constexpr int64_t kKC = 768;          // K-block of a GEMM (a 96 KB weight panel)
constexpr int64_t kMC = 8 * kMR;      // activation block rows (MC x KC, 384 KB, stays in L2)
constexpr int64_t kNCMax = 32 * kNR;  // weight block columns (KC x NC, 3 MB at most, in L3)

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A 64-byte aligned buffer that grows on demand and is kept (per thread) across calls, so the
// packing buffers are not page-faulted in on every GEMM.
class Buffer {
 public:
  float* get(int64_t n) {
    if (n > n_) {
      const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
      float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) fail("packed GEMM: out of memory for a " + std::to_string(bytes) + "-byte buffer");
      p_.reset(p);
      n_ = n;
    }
    return p_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> p_;
  int64_t n_ = 0;
};

thread_local Buffer tls_a, tls_b, tls_rows;

// Full-mask forms of the shuffles: the unmasked intrinsics pass GCC 12 an "undefined" source that
// -Wuninitialized reports; with every lane selected the instruction is the same.
inline __m512 unpacklo(__m512 a, __m512 b) { return _mm512_mask_unpacklo_ps(a, 0xFFFF, a, b); }
inline __m512 unpackhi(__m512 a, __m512 b) { return _mm512_mask_unpackhi_ps(a, 0xFFFF, a, b); }
template <int Imm>
inline __m512 shuffle(__m512 a, __m512 b) {
  return _mm512_mask_shuffle_ps(a, 0xFFFF, a, b, Imm);
}
template <int Imm>
inline __m512 shuffle128(__m512 a, __m512 b) {
  return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, b, Imm);
}

// In-register transpose: on entry r[i] is row i of a 16x16 tile, on exit r[j] is its column j.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = unpacklo(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = unpackhi(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + c], 128-bit lane L: column 4L + c of rows 4g..4g+3.
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = shuffle<0x44>(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = shuffle<0xEE>(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = shuffle<0x44>(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = shuffle<0xEE>(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v = shuffle128<0x88>(u[c], u[4 + c]);
    const __m512 w = shuffle128<0xDD>(u[c], u[4 + c]);
    const __m512 v2 = shuffle128<0x88>(u[8 + c], u[12 + c]);
    const __m512 w2 = shuffle128<0xDD>(u[8 + c], u[12 + c]);
    r[c] = shuffle128<0x88>(v, v2);
    r[8 + c] = shuffle128<0xDD>(v, v2);
    r[4 + c] = shuffle128<0x88>(w, w2);
    r[12 + c] = shuffle128<0xDD>(w, w2);
  }
}

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// dst[dest(j) * kAS + i] = rows[i][j] for i < kMR, j < len; a null row reads as zeros (lanes
// kMR..kAS-1 are padding: whole aligned stores here, one cache line per k in the micro-kernel).
template <class Dest>
void pack_a_rows(const float* const rows[kMR], int64_t len, Dest dest, float* dst) {
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

// panel[dest(j) * kNR + r] = rows[r * ld + j] for r < nvalid, 0 for nvalid <= r < kNR; j < len.
template <class Dest>
void pack_b_panel(const float* rows, int64_t ld, int nvalid, int64_t len, Dest dest, float* panel) {
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

// Per-thread state of the weight packing: a buffer for NR row pieces and, for compressed weights,
// an expander that keeps the current palette group's LUT in fp32.
struct WeightReader {
  const WeightSource& w;
  float* buf;
  std::optional<SpanExpander> expand;

  WeightReader(const WeightSource& src, int64_t max_len) : w(src) {
    buf = w.kind == WeightSource::Kind::F32 ? nullptr : tls_rows.get(kNR * max_len);
    if (w.kind == WeightSource::Kind::Compressed) expand.emplace(*w.view);
  }
  // Elements [e0, e0 + len) of rows [n0, n0 + nrows) as fp32, row r at result + r * ld.
  const float* rows(int64_t n0, int nrows, int64_t e0, int64_t len, int64_t& ld) {
    if (w.kind == WeightSource::Kind::F32) {
      ld = w.row_len;
      return static_cast<const float*>(w.data) + n0 * w.row_len + e0;
    }
    ld = len;
    for (int r = 0; r < nrows; ++r) {
      const int64_t at = (n0 + r) * w.row_len + e0;
      if (w.kind == WeightSource::Kind::F16)
        convert_to_f32(DType::F16, static_cast<const uint16_t*>(w.data) + at, buf + r * len, len);
      else
        (*expand)(at, at + len, buf + r * len);
    }
    return buf;
  }
};

// The activation side of one micro-tile: k-step (o, t), o < outer, t < inner, in that order,
// holds one value per tile row (kMR consecutive floats) at a + o * stride + off[t].
struct ATile {
  const float* a;
  int64_t outer, stride;
  int inner;
  const int64_t* off;
};

// For each tile row i with c[i] non-null and j < ncols:
//   c[i][j] = (add_c ? c[i][j] : 0) + (bias ? bias[j] : 0) + sum_k A[k, i] * b[k, j]
// over the weight panel b (kc x kNR, kc = outer * inner). The partial sums of earlier K-blocks in
// c are added after the k loop, with their lines prefetched before it: loading them first would
// stall every call on the memory latency of the output.
void micro_kernel(const ATile& at, const float* __restrict b, float* const c[kMR], int ncols,
                  const float* bias, bool add_c) {
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

// The blocked driver. K is taken in nkb blocks; kc_of(p) is block p's packed length (<= kc_max),
// pack_a(p, i0, mc, dst) packs rows [i0, i0 + mc) of block p into ceil(mc / kMR) panels of
// kc x kAS, pack_b(p, n0, nvalid, dst, reader) packs one kc x kNR weight panel, and
// prefetch_a(p, i0, mc, part, parts) fetches part `part` of `parts` of what pack_a(p, i0, mc)
// will read into L2: spread over the micro-kernel calls of the block before, so the activation
// rows, read once per block from memory, do not stall the packing.
template <class KcOf, class PackA, class PrefetchA, class PackB>
void run_blocked(int64_t M, int64_t N, int64_t nkb, int64_t kc_max, int64_t src_len_max, KcOf kc_of,
                 PackA pack_a, PrefetchA prefetch_a, PackB pack_b, const WeightSource& w,
                 const float* bias, float* y, bool parallel) {
  const int64_t n_blocks = ceil_div(N, kNCMax);
  const int64_t nc = ceil_div(ceil_div(N, n_blocks), kNR) * kNR;
  float* bbuf = tls_b.get(nc * kc_max);
  const int64_t tiles = ceil_div(M, kMR);
#pragma omp parallel num_threads(parallel ? omp_get_max_threads() : 1)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    float* abuf = tls_a.get(ceil_div(kMC, kMR) * kAS * kc_max);
    WeightReader reader(w, src_len_max);
    for (int64_t jc = 0; jc < N; jc += nc) {
      const int64_t ncur = std::min(nc, N - jc), panels = ceil_div(ncur, kNR);
      for (int64_t p = 0; p < nkb; ++p) {
        const int64_t kc = kc_of(p);
#pragma omp for schedule(dynamic, 1)
        for (int64_t jp = 0; jp < panels; ++jp) {
          const int nvalid = static_cast<int>(std::min<int64_t>(kNR, ncur - jp * kNR));
          pack_b(p, jc + jp * kNR, nvalid, bbuf + jp * kNR * kc, reader);
        }
        // Rows [i0, i0 + mc) times panels [jp0, jp1) of this weight block, prefetching the
        // rows [ni0, ni0 + nmc) of K-block np that this thread packs next (nmc 0: none).
        auto compute = [&](int64_t i0, int64_t mc, int64_t jp0, int64_t jp1, int64_t np,
                           int64_t ni0, int64_t nmc) {
          pack_a(p, i0, mc, abuf);
          const int64_t calls = (jp1 - jp0) * ceil_div(mc, kMR);
          int64_t call = 0;
          for (int64_t jp = jp0; jp < jp1; ++jp) {
            const int64_t j0 = jc + jp * kNR;
            const int ncols = static_cast<int>(std::min<int64_t>(kNR, N - j0));
            for (int64_t ip = 0; ip * kMR < mc; ++ip) {
              if (nmc > 0) prefetch_a(np, ni0, nmc, call++, calls);
              float* rows[kMR];
              for (int i = 0; i < kMR; ++i)
                rows[i] = ip * kMR + i < mc ? y + (i0 + ip * kMR + i) * N + j0 : nullptr;
              const int64_t zero = 0;
              const ATile at{abuf + ip * kAS * kc, kc, kAS, 1, &zero};
              micro_kernel(at, bbuf + jp * kNR * kc, rows, ncols,
                           p == 0 && bias ? bias + j0 : nullptr, p > 0);
            }
          }
        };
        if (tiles >= 4 * nt) {
          // Enough rows: each thread takes an equal share of row tiles, in blocks of kMC rows.
          const int64_t ia = tiles * t / nt * kMR, i1 = std::min(M, tiles * (t + 1) / nt * kMR);
          for (int64_t i0 = ia; i0 < i1; i0 += kMC) {
            const int64_t next = i0 + kMC;
            if (next < i1)
              compute(i0, std::min(kMC, i1 - i0), 0, panels, p, next, std::min(kMC, i1 - next));
            else
              compute(i0, std::min(kMC, i1 - i0), 0, panels, p + 1, ia,
                      p + 1 < nkb ? std::min(kMC, i1 - ia) : 0);
          }
#pragma omp barrier
        } else {
          // Few rows: split the weight panels too, so that every thread has work.
          const int64_t m_blocks = ceil_div(M, kMC);
          const int64_t parts = std::clamp<int64_t>(ceil_div(2 * nt, m_blocks), 1, panels);
#pragma omp for schedule(dynamic, 1)
          for (int64_t task = 0; task < m_blocks * parts; ++task) {
            const int64_t mb = task / parts, part = task % parts;
            compute(mb * kMC, std::min(kMC, M - mb * kMC), panels * part / parts,
                    panels * (part + 1) / parts, 0, 0, 0);
          }
        }
      }
    }
  }
}

// Input channels per K-block of a convolution: blocks of all taps about kKC long, a multiple of 16
// channels (whole transposes; byte-aligned packed indices).
int64_t conv_channel_block(int64_t cin, int64_t taps) {
  const int64_t blocks = ceil_div(cin * taps, kKC);
  return std::min(cin, ceil_div(ceil_div(cin, blocks), 16) * 16);
}

// Geometry of a stride-1 convolution on the zero-padded input grid.
struct PlaneGeometry {
  int64_t B, H, W, cin, Ho, Wo;
  int64_t Hp, Wp;  // padded input
  int64_t plane;   // floats per channel plane (padded grid, slack for the last tile, aligned)
  int64_t grid;    // grid pixels per image: Ho rows of Wp (Wp - Wo of them are dropped)
  int64_t tiles;   // micro-tiles per image
};

// Stride-1 convolutions without im2col: each K-block's input channels are laid out as zero-padded
// planes [b][ci][iy * Wp + ix], once per block and shared by all threads. On the padded grid,
// output (oy, ox) at tap (ky, kx) reads plane index (oy + ky) * Wp + ox + kx, so kMR consecutive
// grid pixels read kMR consecutive floats, which the micro-kernel broadcasts straight from the
// planes. K runs channel-major as in the OIHW weight (k = ci * taps + tap), so the taps of one
// channel read the same few lines. The Wp - Wo extra grid columns per row are computed and
// dropped. pack_b(q, ...) packs K-block q = channels [q * cb, q * cb + cc) in that order.
template <class PackB>
void run_planes(const float* x, const PlaneGeometry& g, const Conv2dParams& p, int64_t cb,
                PackB pack_b, const WeightSource& w, const float* bias, float* y, bool parallel) {
  const int64_t N = p.cout, taps = p.kh * p.kw, nkb = ceil_div(g.cin, cb);
  int64_t off[64];  // per tap: offset of its input on the grid
  SDPAL_CHECK(taps <= 64, "packed conv2d: kernels over 64 taps are not supported");
  for (int64_t t = 0; t < taps; ++t) off[t] = t / p.kw * g.Wp + t % p.kw;
  const int64_t nc = ceil_div(ceil_div(N, ceil_div(N, kNCMax)), kNR) * kNR;
  float* bbuf = tls_b.get(nc * cb * taps);
  float* planes = tls_a.get(g.B * cb * g.plane);
  const int64_t tiles = g.B * g.tiles;
#pragma omp parallel num_threads(parallel ? omp_get_max_threads() : 1)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    WeightReader reader(w, cb * taps);
    // The slack after each plane is never written below: zero it once.
#pragma omp for
    for (int64_t pl = 0; pl < g.B * cb; ++pl)
      std::fill(planes + pl * g.plane + g.Hp * g.Wp, planes + (pl + 1) * g.plane, 0.f);
    for (int64_t jc = 0; jc < N; jc += nc) {
      const int64_t ncur = std::min(nc, N - jc), panels = ceil_div(ncur, kNR);
      for (int64_t q = 0; q < nkb; ++q) {
        const int64_t c0 = q * cb, cc = std::min(cb, g.cin - c0);
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t jp = 0; jp < panels; ++jp) {
          const int nvalid = static_cast<int>(std::min<int64_t>(kNR, ncur - jp * kNR));
          pack_b(q, jc + jp * kNR, nvalid, bbuf + jp * kNR * cc * taps, reader);
        }
        // Planes, one padded input row at a time: 16 pixels x 16 channels per transpose.
#pragma omp for schedule(dynamic, 4)
        for (int64_t r = 0; r < g.B * g.Hp; ++r) {
          const int64_t b = r / g.Hp, iyp = r % g.Hp, iy = iyp - p.pad_t;
          for (int64_t ix0 = 0; ix0 < g.Wp; ix0 += 16)
            for (int64_t ci0 = 0; ci0 < cc; ci0 += 16) {
              const __mmask16 m = lanes(cc - ci0);
              __m512 v[16];
              for (int i = 0; i < 16; ++i) {
                const int64_t ix = ix0 + i - p.pad_l;
                v[i] = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W && ix0 + i < g.Wp
                           ? _mm512_maskz_loadu_ps(
                                 m, x + ((b * g.H + iy) * g.W + ix) * g.cin + c0 + ci0)
                           : _mm512_setzero_ps();
              }
              transpose16(v);
              const __mmask16 px = lanes(g.Wp - ix0);
              for (int64_t j = 0; j < std::min<int64_t>(16, cc - ci0); ++j)
                _mm512_mask_storeu_ps(planes + (b * cb + ci0 + j) * g.plane + iyp * g.Wp + ix0, px,
                                      v[j]);
            }
        }
        // Tiles [t0, t1) times panels [jp0, jp1).
        auto compute = [&](int64_t t0, int64_t t1, int64_t jp0, int64_t jp1) {
          for (int64_t jp = jp0; jp < jp1; ++jp) {
            const int64_t j0 = jc + jp * kNR;
            const int ncols = static_cast<int>(std::min<int64_t>(kNR, N - j0));
            for (int64_t tile = t0; tile < t1; ++tile) {
              const int64_t b = tile / g.tiles, gp0 = tile % g.tiles * kMR;
              float* rows[kMR];
              for (int i = 0; i < kMR; ++i) {
                const int64_t gp = gp0 + i, oy = gp / g.Wp, ox = gp % g.Wp;
                rows[i] =
                    gp < g.grid && ox < g.Wo ? y + ((b * g.Ho + oy) * g.Wo + ox) * N + j0 : nullptr;
              }
              const ATile at{planes + b * cb * g.plane + gp0, cc, g.plane, static_cast<int>(taps),
                             off};
              micro_kernel(at, bbuf + jp * kNR * cc * taps, rows, ncols,
                           q == 0 && bias ? bias + j0 : nullptr, q > 0);
            }
          }
        };
        if (tiles >= 4 * nt) {
          // Each thread takes an equal share of the tiles, 8 at a time over all panels (their
          // plane lines stay in L2 while the panels stream by).
          const int64_t t1 = tiles * (t + 1) / nt;
          for (int64_t t0 = tiles * t / nt; t0 < t1; t0 += 8)
            compute(t0, std::min(t1, t0 + 8), 0, panels);
#pragma omp barrier
        } else {
          const int64_t parts = std::clamp<int64_t>(ceil_div(2 * nt, tiles), 1, panels);
#pragma omp for schedule(dynamic, 1)
          for (int64_t task = 0; task < tiles * parts; ++task) {
            const int64_t tile = task / parts, part = task % parts;
            compute(tile, tile + 1, panels * part / parts, panels * (part + 1) / parts);
          }
        }
      }
    }
  }
}

// The padded grid computes Wp - Wo extra columns per output row: worth it (over packing every
// tap's pixels, im2col-style) when they are few.
bool use_planes(int64_t Wo, const Conv2dParams& p) { return (p.kw - 1) * 8 <= Wo + p.kw - 1; }

bool worth_threads(int64_t M, int64_t N, int64_t K) { return double(M) * N * K > 1e6; }

void check_source(const WeightSource& w, int64_t rows, int64_t row_len, const char* what) {
  SDPAL_CHECK(w.rows == rows && w.row_len == row_len,
              std::string(what) + ": the weight is " + std::to_string(w.rows) + " x " +
                  std::to_string(w.row_len) + " but the input needs " + std::to_string(rows) +
                  " x " + std::to_string(row_len));
  SDPAL_CHECK(w.kind == WeightSource::Kind::Compressed ? w.view != nullptr : w.data != nullptr,
              std::string(what) + ": weight source without data");
}

}  // namespace

void set_fused_lut(bool on) { g_fused = on; }
bool fused_lut_enabled() { return g_fused.load(std::memory_order_relaxed); }

WeightSource WeightSource::f32(const float* w, int64_t rows, int64_t row_len) {
  WeightSource s;
  s.kind = Kind::F32;
  s.data = w;
  s.rows = rows;
  s.row_len = row_len;
  return s;
}

WeightSource WeightSource::f16(const uint16_t* w, int64_t rows, int64_t row_len) {
  WeightSource s = f32(nullptr, rows, row_len);
  s.kind = Kind::F16;
  s.data = w;
  return s;
}

WeightSource WeightSource::compressed(const CompressedView& v) {
  WeightSource s;
  s.kind = Kind::Compressed;
  s.view = &v;
  s.rows = v.rows();
  s.row_len = v.rows() ? v.numel() / v.rows() : 0;
  return s;
}

int64_t packed_buffer_bytes(int64_t N, int64_t K, WeightSource::Kind kind, int threads,
                            int64_t taps) {
  const int64_t kc = taps > 1   ? conv_channel_block(K / taps, taps) * taps
                     : K <= kKC ? K
                                : ceil_div(K, ceil_div(K, kKC)) + 16;
  const int64_t nc = ceil_div(ceil_div(N, ceil_div(N, kNCMax)), kNR) * kNR;
  const int64_t per_thread =
      ceil_div(kMC, kMR) * kAS * kc + (kind == WeightSource::Kind::F32 ? 0 : kNR * kc);
  return static_cast<int64_t>(sizeof(float)) * (nc * kc + threads * per_thread);
}

void packed_gemm(const float* x, int64_t M, int64_t K, const WeightSource& w, const float* bias,
                 float* y) {
  const int64_t N = w.rows;
  check_source(w, N, K, "packed GEMM");
  if (M == 0 || N == 0) return;
  prof::OpScope scope(prof::Op::gemm, 2.0 * M * N * K);
  // Balanced K-blocks of at most about kKC, starting at multiples of 16 (whole transposes, and
  // byte-aligned packed indices when K is a multiple of 8).
  const int64_t nkb = std::max<int64_t>(1, ceil_div(K, kKC));
  auto k0_of = [&](int64_t p) { return p == nkb ? K : K * p / nkb / 16 * 16; };
  auto kc_of = [&](int64_t p) { return k0_of(p + 1) - k0_of(p); };
  int64_t kc_max = 0;
  for (int64_t p = 0; p < nkb; ++p) kc_max = std::max(kc_max, kc_of(p));
  auto ident = [](int64_t j) { return j; };
  auto pack_a = [&](int64_t p, int64_t i0, int64_t mc, float* dst) {
    const int64_t k0 = k0_of(p), kc = kc_of(p);
    for (int64_t ip = 0; ip * kMR < mc; ++ip) {
      const float* rows[kMR];
      for (int i = 0; i < kMR; ++i) {
        const int64_t m = ip * kMR + i;
        rows[i] = m < mc ? x + (i0 + m) * K + k0 : nullptr;
      }
      pack_a_rows(rows, kc, ident, dst + ip * kAS * kc);
    }
  };
  auto prefetch_a = [&](int64_t p, int64_t i0, int64_t mc, int64_t part, int64_t parts) {
    const int64_t k0 = k0_of(p), per_row = kc_of(p) / 16 + 2;  // 64-byte lines, unaligned
    const int64_t total = mc * per_row;
    for (int64_t l = total * part / parts; l < total * (part + 1) / parts; ++l)
      _mm_prefetch(
          reinterpret_cast<const char*>(x + (i0 + l / per_row) * K + k0 + l % per_row * 16),
          _MM_HINT_T1);
  };
  auto pack_b = [&](int64_t p, int64_t n0, int nvalid, float* dst, WeightReader& rd) {
    const int64_t k0 = k0_of(p), kc = kc_of(p);
    int64_t ld = 0;
    const float* rows = rd.rows(n0, nvalid, k0, kc, ld);
    pack_b_panel(rows, ld, nvalid, kc, ident, dst);
  };
  if (K == 0) {  // no products: y = bias
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) y[i * N + j] = bias ? bias[j] : 0.f;
    return;
  }
  run_blocked(M, N, nkb, kc_max, kc_max, kc_of, pack_a, prefetch_a, pack_b, w, bias, y,
              worth_threads(M, N, K));
}

Tensor packed_linear(const Tensor& x, const WeightSource& w, const float* bias) {
  const int64_t K = x.dim(-1);
  const int64_t M = x.numel() / std::max<int64_t>(K, 1);
  Shape s = x.shape();
  s.back() = w.rows;
  Tensor y(s);
  packed_gemm(x.data(), M, K, w, bias, y.data());
  return y;
}

Tensor packed_conv2d(const Tensor& x, const WeightSource& w, const float* bias,
                     const Conv2dParams& p) {
  SDPAL_CHECK(x.ndim() == 4, "conv2d: input must be NHWC 4-D, got " + shape_str(x.shape()));
  const int64_t B = x.dim(0), H = x.dim(1), W = x.dim(2), cin = x.dim(3);
  const int64_t Ho = (H + p.pad_t + p.pad_b - p.kh) / p.stride + 1;
  const int64_t Wo = (W + p.pad_l + p.pad_r - p.kw) / p.stride + 1;
  SDPAL_CHECK(Ho > 0 && Wo > 0, "conv2d: output would be empty for input " + shape_str(x.shape()));
  const int64_t taps = p.kh * p.kw;
  check_source(w, p.cout, cin * taps, "packed conv2d");
  Tensor y({B, Ho, Wo, p.cout});
  prof::OpScope scope(prof::Op::conv, conv2d_flops(x.shape(), p));
  if (taps == 1 && p.stride == 1 && !p.pad_t && !p.pad_l && !p.pad_b && !p.pad_r) {
    packed_gemm(x.data(), B * H * W, cin, w, bias, y.data());
    return y;
  }
  const int64_t M = B * Ho * Wo, N = p.cout;
  const int64_t cb = conv_channel_block(cin, taps), nkb = ceil_div(cin, cb);
  auto cc_of = [&](int64_t q) { return std::min(cb, cin - q * cb); };
  auto kc_of = [&](int64_t q) { return cc_of(q) * taps; };
  const float* xd = x.data();
  // K-block q holds channels [c0, c0 + cc) at every tap, packed tap-major: k = tap * cc + ci.
  auto pack_a = [&](int64_t q, int64_t i0, int64_t mc, float* dst) {
    const int64_t c0 = q * cb, cc = cc_of(q), kc = cc * taps;
    for (int64_t ip = 0; ip * kMR < mc; ++ip) {
      int64_t iy0[kMR], ix0[kMR], base[kMR];  // per output pixel: top-left input position
      for (int i = 0; i < kMR; ++i) {
        const int64_t m = i0 + ip * kMR + i;
        base[i] = -1;
        if (ip * kMR + i >= mc) continue;
        const int64_t b = m / (Ho * Wo), oy = m / Wo % Ho, ox = m % Wo;
        iy0[i] = oy * p.stride - p.pad_t;
        ix0[i] = ox * p.stride - p.pad_l;
        base[i] = b * H;
      }
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t ky = t / p.kw, kx = t % p.kw;
        const float* rows[kMR];
        for (int i = 0; i < kMR; ++i) {
          rows[i] = nullptr;
          if (base[i] < 0) continue;
          const int64_t iy = iy0[i] + ky, ix = ix0[i] + kx;
          if (iy >= 0 && iy < H && ix >= 0 && ix < W)
            rows[i] = xd + ((base[i] + iy) * W + ix) * cin + c0;
        }
        pack_a_rows(
            rows, cc, [&](int64_t j) { return t * cc + j; }, dst + ip * kAS * kc);
      }
    }
  };
  // The input rows of the taps' centre column (the other columns are neighbouring pixels of the
  // same rows, mostly the same lines).
  auto prefetch_a = [&](int64_t q, int64_t i0, int64_t mc, int64_t part, int64_t parts) {
    const int64_t c0 = q * cb, per_row = cc_of(q) / 16 + 1, per_pixel = p.kh * per_row;
    const int64_t total = mc * per_pixel;
    for (int64_t l = total * part / parts; l < total * (part + 1) / parts; ++l) {
      const int64_t m = i0 + l / per_pixel, ky = l % per_pixel / per_row;
      const int64_t b = m / (Ho * Wo), oy = m / Wo % Ho, ox = m % Wo;
      const int64_t iy = oy * p.stride - p.pad_t + ky, ix = ox * p.stride - p.pad_l + p.kw / 2;
      if (iy >= 0 && iy < H && ix >= 0 && ix < W)
        _mm_prefetch(reinterpret_cast<const char*>(xd + ((b * H + iy) * W + ix) * cin + c0 +
                                                   l % per_row * 16),
                     _MM_HINT_T1);
    }
  };
  // The weight row holds (ci, tap) pairs ci-major: element j of the span is ci = j / taps,
  // tap = j % taps, which goes to packed row tap * cc + ci.
  auto pack_b = [&](int64_t q, int64_t n0, int nvalid, float* dst, WeightReader& rd) {
    const int64_t c0 = q * cb, cc = cc_of(q), kc = cc * taps;
    int64_t ld = 0;
    const float* rows = rd.rows(n0, nvalid, c0 * taps, kc, ld);
    pack_b_panel(
        rows, ld, nvalid, kc, [&](int64_t j) { return j % taps * cc + j / taps; }, dst);
  };
  if (p.stride == 1 && use_planes(Wo, p)) {
    PlaneGeometry g{B, H, W, cin, Ho, Wo, H + p.pad_t + p.pad_b, W + p.pad_l + p.pad_r, 0, 0, 0};
    g.plane = ceil_div(g.Hp * g.Wp + kMR + p.kw, 16) * 16;
    g.grid = Ho * g.Wp;
    g.tiles = ceil_div(g.grid, kMR);
    auto pack_b_oihw = [&](int64_t q, int64_t n0, int nvalid, float* dst, WeightReader& rd) {
      const int64_t kc = cc_of(q) * taps;
      int64_t ld = 0;
      const float* rows = rd.rows(n0, nvalid, q * cb * taps, kc, ld);
      pack_b_panel(
          rows, ld, nvalid, kc, [](int64_t j) { return j; }, dst);
    };
    run_planes(xd, g, p, cb, pack_b_oihw, w, bias, y.data(), worth_threads(M, N, cin * taps));
    return y;
  }
  const int64_t kc_max = cb * taps;
  run_blocked(M, N, nkb, kc_max, kc_max, kc_of, pack_a, prefetch_a, pack_b, w, bias, y.data(),
              worth_threads(M, N, cin * taps));
  return y;
}

}  // namespace sdpal::k
