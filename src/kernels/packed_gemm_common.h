// The ISA-independent pieces of the packed GEMM (kernels/packed_gemm.h), shared by its per-level
// instances (the hand-written AVX-512 one and the Highway ones): per-thread scratch buffers, the
// weight reader, the convolution geometry and the entry points of each level.
#pragma once
#include <cstdint>
#include <optional>

#include "core/compressed_weight.h"
#include "kernels/conv2d.h"
#include "kernels/expand.h"
#include "kernels/packed_gemm.h"

namespace sdpal::k::packed {

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A 64-byte aligned buffer per thread and purpose that grows on demand and is kept across calls,
// so the packing buffers are not page-faulted in on every GEMM.
enum class Scratch { A, B, Rows };
float* scratch(Scratch which, int64_t n);

// Per-thread state of the weight packing: a buffer for up to max_rows row pieces and, for
// compressed weights, an expander that keeps the current palette group's LUT in fp32.
class WeightReader {
 public:
  WeightReader(const WeightSource& src, int max_rows, int64_t max_len);
  // Elements [e0, e0 + len) of rows [n0, n0 + nrows) as fp32, row r at result + r * ld.
  const float* rows(int64_t n0, int nrows, int64_t e0, int64_t len, int64_t& ld);

 private:
  const WeightSource& w_;
  float* buf_ = nullptr;
  std::optional<SpanExpander> expand_;
};

// The activation side of one micro-tile: k-step (o, t), o < outer, t < inner, in that order,
// holds one value per tile row (MR consecutive floats) at a + o * stride + off[t].
struct ATile {
  const float* a;
  int64_t outer, stride;
  int inner;
  const int64_t* off;
};

// A convolution's input and output sizes (NHWC).
struct ConvShape {
  int64_t B, H, W, cin, Ho, Wo;
};

// Geometry of a stride-1 convolution on the zero-padded input grid.
struct PlaneGeometry {
  int64_t B, H, W, cin, Ho, Wo;
  int64_t Hp, Wp;  // padded input
  int64_t plane;   // floats per channel plane (padded grid, slack for the last tile, aligned)
  int64_t grid;    // grid pixels per image: Ho rows of Wp (Wp - Wo of them are dropped)
  int64_t tiles;   // micro-tiles per image
};

// Input channels per K-block of a convolution: blocks of all taps about kc long, a multiple of 16
// channels (whole transposes; byte-aligned packed indices).
int64_t conv_channel_block(int64_t cin, int64_t taps, int64_t kc);

// The padded grid computes Wp - Wo extra columns per output row: worth it (over packing every
// tap's pixels, im2col-style) when they are few.
bool use_planes(int64_t Wo, const Conv2dParams& p);

bool worth_threads(int64_t M, int64_t N, int64_t K);

// The hand-written AVX-512 level (packed_gemm_avx512.cpp); call only if cpu::use_avx512().
namespace avx512 {
void gemm(const float* x, int64_t M, int64_t K, const WeightSource& w, const float* bias, float* y);
void conv(const float* x, const ConvShape& s, const WeightSource& w, const float* bias,
          const Conv2dParams& p, float* y);
int64_t buffer_bytes(int64_t N, int64_t K, WeightSource::Kind kind, int threads, int64_t taps);
}  // namespace avx512

}  // namespace sdpal::k::packed
