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

// c[i, j] (i < mr, j < ncols) = (add_c ? c : 0) + (bias or 0) + sum_k a[k, i] * b[k, j] over
// the packed panels a (kc x kAS) and b (kc x kNR). The partial sums of earlier K-blocks in c are
// added after the k loop, with their lines prefetched before it: loading them first would stall
// every call on the memory latency of the output.
void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                  int64_t ldc, int mr, int ncols, const float* bias, bool add_c) {
  const __mmask16 m0 = lanes(ncols), m1 = lanes(std::max(0, ncols - 16));
  if (add_c)
    for (int i = 0; i < mr; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
    }
  const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
  __m512 c0[kMR], c1[kMR];
#pragma GCC unroll 14
  for (int i = 0; i < kMR; ++i) {
    c0[i] = b0;
    c1[i] = b1;
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 v0 = _mm512_load_ps(b), v1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
    for (int i = 0; i < kMR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      c0[i] = _mm512_fmadd_ps(ai, v0, c0[i]);
      c1[i] = _mm512_fmadd_ps(ai, v1, c1[i]);
    }
    a += kAS;
    b += kNR;
  }
#pragma GCC unroll 14
  for (int i = 0; i < kMR; ++i) {
    if (i < mr) {
      float* ci = c + i * ldc;
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
              const int mr = static_cast<int>(std::min<int64_t>(kMR, mc - ip * kMR));
              if (nmc > 0) prefetch_a(np, ni0, nmc, call++, calls);
              micro_kernel(kc, abuf + ip * kAS * kc, bbuf + jp * kNR * kc,
                           y + (i0 + ip * kMR) * N + j0, N, mr, ncols,
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
  const int64_t kc_max = cb * taps;
  run_blocked(M, N, nkb, kc_max, kc_max, kc_of, pack_a, prefetch_a, pack_b, w, bias, y.data(),
              worth_threads(M, N, cin * taps));
  return y;
}

}  // namespace sdpal::k
