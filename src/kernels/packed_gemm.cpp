// The packed GEMM's portable levels and its public entry points. The blocked driver is
// packed_gemm-inl.h, shared with the hand-written AVX-512 level (packed_gemm_avx512.cpp); here it
// runs Highway micro-kernels of kMR rows x kVecs vectors (AVX2 and SSE4: 6 x 2, 12 of the 16
// vector registers as accumulators; NEON: 8 x 2 of 32), with scalar packing loops: packing is
// about 1/N of the work, the micro-kernel is what counts.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/packed_gemm.cpp"
#include "kernels/packed_gemm.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "core/cpu.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/profile.h"
#include "kernels/packed_gemm_common.h"

HWY_BEFORE_NAMESPACE();
namespace sdpal::k::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Tile per target, in vectors of kLanes floats.
#undef SDPAL_PG_ROWS
#undef SDPAL_PG_VECS
#if HWY_TARGET == HWY_NEON
#define SDPAL_PG_ROWS 8
#define SDPAL_PG_VECS 2
#elif HWY_TARGET == HWY_SCALAR
#define SDPAL_PG_ROWS 4
#define SDPAL_PG_VECS 4
#elif HWY_TARGET == HWY_AVX3
// Never dispatched to (the AVX-512 level runs the hand-written kernel); kept compilable.
#define SDPAL_PG_ROWS 14
#define SDPAL_PG_VECS 2
#else  // AVX2, SSE4, EMU128
#define SDPAL_PG_ROWS 6
#define SDPAL_PG_VECS 2
#endif

// The traits of packed_gemm-inl.h for this Highway target.
struct Kernel {
  static constexpr int kLanes = HWY_LANES(float);
  static constexpr int kVecs = SDPAL_PG_VECS;
  static constexpr int kMR = SDPAL_PG_ROWS;
  static constexpr int kNR = kVecs * kLanes;
  static constexpr int kAS = kMR;  // packed k-steps are contiguous
  static constexpr int64_t kKC = 768;
  static constexpr int64_t kMC = 16 * kMR;
  static constexpr int64_t kNCMax = 1024;

  template <class Dest>
  static void pack_a_rows(const float* const rows[kMR], int64_t len, Dest dest, float* dst) {
    for (int i = 0; i < kMR; ++i) {
      const float* r = rows[i];
      if (r)
        for (int64_t j = 0; j < len; ++j) dst[dest(j) * kAS + i] = r[j];
      else
        for (int64_t j = 0; j < len; ++j) dst[dest(j) * kAS + i] = 0.f;
    }
  }

  template <class Dest>
  static void pack_b_panel(const float* rows, int64_t ld, int nvalid, int64_t len, Dest dest,
                           float* panel) {
    for (int r = 0; r < kNR; ++r) {
      if (r < nvalid) {
        const float* src = rows + r * ld;
        for (int64_t j = 0; j < len; ++j) panel[dest(j) * kNR + r] = src[j];
      } else {
        for (int64_t j = 0; j < len; ++j) panel[dest(j) * kNR + r] = 0.f;
      }
    }
  }

  static void pack_plane_block(const float* const px[16], int nch, int npx, float* dst,
                               int64_t plane) {
    for (int i = 0; i < npx; ++i)
      for (int j = 0; j < nch; ++j) dst[j * plane + i] = px[i] ? px[i][j] : 0.f;
  }

  // As the AVX-512 kernel: earlier K-blocks' partial sums are added after the k loop (their
  // lines prefetched before it). A partial tile (ncols < kNR) goes through a stack row, so no
  // access leaves the output row and the arithmetic is the same as for a whole tile.
  static void micro_kernel(const packed::ATile& at, const float* HWY_RESTRICT b,
                           float* const c[kMR], int ncols, const float* bias, bool add_c) {
    const hn::ScalableTag<float> d;
    using V = hn::Vec<decltype(d)>;
    if (add_c)
      for (int i = 0; i < kMR; ++i)
        if (c[i])
          for (int l = 0; l < kNR; l += 16) __builtin_prefetch(c[i] + l, 1, 3);
    alignas(64) float bpad[kNR];
    if (bias && ncols < kNR) {
      for (int j = 0; j < kNR; ++j) bpad[j] = j < ncols ? bias[j] : 0.f;
      bias = bpad;
    }
    V acc[kMR][kVecs];
#pragma GCC unroll 4
    for (int v = 0; v < kVecs; ++v) {
      const V bv = bias ? hn::LoadU(d, bias + v * kLanes) : hn::Zero(d);
#pragma GCC unroll 16
      for (int i = 0; i < kMR; ++i) acc[i][v] = bv;
    }
    auto step = [&](const float* HWY_RESTRICT a) {
      V bv[kVecs];
#pragma GCC unroll 4
      for (int v = 0; v < kVecs; ++v) bv[v] = hn::Load(d, b + v * kLanes);
#pragma GCC unroll 16
      for (int i = 0; i < kMR; ++i) {
        const V ai = hn::Set(d, a[i]);
#pragma GCC unroll 4
        for (int v = 0; v < kVecs; ++v) acc[i][v] = hn::MulAdd(ai, bv[v], acc[i][v]);
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
#pragma GCC unroll 16
    for (int i = 0; i < kMR; ++i) {
      float* ci = c[i];
      if (!ci) continue;
      if (ncols == kNR) {
#pragma GCC unroll 4
        for (int v = 0; v < kVecs; ++v) {
          V r = acc[i][v];
          if (add_c) r = hn::Add(r, hn::LoadU(d, ci + v * kLanes));
          hn::StoreU(r, d, ci + v * kLanes);
        }
      } else {
        alignas(64) float row[kNR];
        for (int j = 0; j < kNR; ++j) row[j] = add_c && j < ncols ? ci[j] : 0.f;
        for (int v = 0; v < kVecs; ++v) {
          V r = acc[i][v];
          if (add_c) r = hn::Add(r, hn::Load(d, row + v * kLanes));
          hn::Store(r, d, row + v * kLanes);
        }
        for (int j = 0; j < ncols; ++j) ci[j] = row[j];
      }
    }
  }
};

#include "kernels/packed_gemm-inl.h"

void PackedGemm(const float* x, int64_t M, int64_t K, const WeightSource& w, const float* bias,
                float* y) {
  gemm_level<Kernel>(x, M, K, w, bias, y);
}

void PackedConv(const float* x, const packed::ConvShape& s, const WeightSource& w,
                const float* bias, const Conv2dParams& p, float* y) {
  conv_level<Kernel>(x, s, w, bias, p, y);
}

int64_t PackedBufferBytes(int64_t N, int64_t K, WeightSource::Kind kind, int threads,
                          int64_t taps) {
  return buffer_bytes_level<Kernel>(N, K, kind, threads, taps);
}

// The level's micro-tile (for tests of its tails).
void PackedTile(int* mr, int* nr) {
  *mr = Kernel::kMR;
  *nr = Kernel::kNR;
}

}  // namespace sdpal::k::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace sdpal::k {

HWY_EXPORT(PackedGemm);
HWY_EXPORT(PackedConv);
HWY_EXPORT(PackedBufferBytes);
HWY_EXPORT(PackedTile);

namespace packed {

namespace {

// A 64-byte aligned buffer that grows on demand.
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

thread_local Buffer tls_buffers[3];

}  // namespace

float* scratch(Scratch which, int64_t n) { return tls_buffers[static_cast<int>(which)].get(n); }

WeightReader::WeightReader(const WeightSource& src, int max_rows, int64_t max_len) : w_(src) {
  if (w_.kind != WeightSource::Kind::F32) buf_ = scratch(Scratch::Rows, max_rows * max_len);
  if (w_.kind == WeightSource::Kind::Compressed) expand_.emplace(*w_.view);
}

const float* WeightReader::rows(int64_t n0, int nrows, int64_t e0, int64_t len, int64_t& ld) {
  if (w_.kind == WeightSource::Kind::F32) {
    ld = w_.row_len;
    return static_cast<const float*>(w_.data) + n0 * w_.row_len + e0;
  }
  ld = len;
  for (int r = 0; r < nrows; ++r) {
    const int64_t at = (n0 + r) * w_.row_len + e0;
    if (w_.kind == WeightSource::Kind::F16)
      convert_to_f32(DType::F16, static_cast<const uint16_t*>(w_.data) + at, buf_ + r * len, len);
    else
      (*expand_)(at, at + len, buf_ + r * len);
  }
  return buf_;
}

int64_t conv_channel_block(int64_t cin, int64_t taps, int64_t kc) {
  const int64_t blocks = ceil_div(cin * taps, kc);
  return std::min(cin, ceil_div(ceil_div(cin, blocks), 16) * 16);
}

bool use_planes(int64_t Wo, const Conv2dParams& p) { return (p.kw - 1) * 8 <= Wo + p.kw - 1; }

bool worth_threads(int64_t M, int64_t N, int64_t K) { return double(M) * N * K > 1e6; }

}  // namespace packed

namespace {

void check_source(const WeightSource& w, int64_t rows, int64_t row_len, const char* what) {
  SDPAL_CHECK(w.rows == rows && w.row_len == row_len,
              std::string(what) + ": the weight is " + std::to_string(w.rows) + " x " +
                  std::to_string(w.row_len) + " but the input needs " + std::to_string(rows) +
                  " x " + std::to_string(row_len));
  SDPAL_CHECK(w.kind == WeightSource::Kind::Compressed ? w.view != nullptr : w.data != nullptr,
              std::string(what) + ": weight source without data");
}

// The hand-written kernel on AVX-512, Highway's below it.
bool hand_written_avx512() {
#if HWY_ARCH_X86
  return cpu::use_avx512();
#else
  return false;
#endif
}

}  // namespace

bool fused_linear_is_faster() { return cpu::level() != cpu::Level::avx2; }

bool fused_conv2d_is_faster(const Shape& x_nhwc, const Conv2dParams& p) {
  return cpu::level() != cpu::Level::avx2 || conv2d_runs_packed(x_nhwc, p);
}

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
#if HWY_ARCH_X86
  if (hand_written_avx512()) return packed::avx512::buffer_bytes(N, K, kind, threads, taps);
#endif
  return SDPAL_DISPATCH(PackedBufferBytes)(N, K, kind, threads, taps);
}

void packed_tile(int* mr, int* nr) {
#if HWY_ARCH_X86
  if (hand_written_avx512()) {
    *mr = 14;
    *nr = 32;
    return;
  }
#endif
  SDPAL_DISPATCH(PackedTile)(mr, nr);
}

void packed_gemm(const float* x, int64_t M, int64_t K, const WeightSource& w, const float* bias,
                 float* y) {
  const int64_t N = w.rows;
  check_source(w, N, K, "packed GEMM");
  if (M == 0 || N == 0) return;
  prof::OpScope scope(prof::Op::gemm, 2.0 * M * N * K);
  if (K == 0) {  // no products: y = bias
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) y[i * N + j] = bias ? bias[j] : 0.f;
    return;
  }
#if HWY_ARCH_X86
  if (hand_written_avx512()) return packed::avx512::gemm(x, M, K, w, bias, y);
#endif
  SDPAL_DISPATCH(PackedGemm)(x, M, K, w, bias, y);
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
  const packed::ConvShape s{B, H, W, cin, Ho, Wo};
#if HWY_ARCH_X86
  if (hand_written_avx512()) {
    packed::avx512::conv(x.data(), s, w, bias, p, y.data());
    return y;
  }
#endif
  SDPAL_DISPATCH(PackedConv)(x.data(), s, w, bias, p, y.data());
  return y;
}

}  // namespace sdpal::k
#endif  // HWY_ONCE
