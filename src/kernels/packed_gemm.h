// An fp32 GEMM (hand-written on AVX-512, Highway below) whose weight-packing stage reads the weight
// from where it is stored: a dense fp32 or fp16 matrix, or a compressed one (palette LUT + packed
// indices, linear 8-bit) expanded straight into the packed panels. The weight is packed one block
// (K-block x N-block) at a time, so a compressed layer never exists in fp32 as a whole: there is no
// layer-sized scratch buffer and no separate expansion pass over memory.
//
// Exactness: every source goes through the same packing order and the same micro-kernel, and LUT
// expansion is exact, so a GEMM on a compressed weight equals, bit for bit, the same GEMM on the
// weight expanded first (expand.h's expand()). Against oneDNN's sgemm it differs only in
// the order of the K summation (fp32 rounding).
//
// Convolutions run as an implicit GEMM over (ci, ky, kx) on NHWC activations: the K dimension is
// taken in blocks of input channels with all taps, which are contiguous spans of each OIHW weight
// row, so the same packing works for compressed convolution weights. Stride-1 convolutions read
// the taps straight from zero-padded channel planes of the input (no im2col); strided and narrow
// ones pack each tap's pixels.
#pragma once
#include <cstdint>

#include "core/compressed_weight.h"
#include "core/tensor.h"
#include "kernels/conv2d.h"

namespace sdpal::k {

// Where the GEMM reads its weight W [rows, row_len] (row-major; rows are output channels) from.
struct WeightSource {
  enum class Kind { F32, F16, Compressed };
  Kind kind = Kind::F32;
  const void* data = nullptr;            // F32 / F16
  const CompressedView* view = nullptr;  // Compressed (must outlive the call)
  int64_t rows = 0, row_len = 0;
  static WeightSource f32(const float* w, int64_t rows, int64_t row_len);
  static WeightSource f16(const uint16_t* w, int64_t rows, int64_t row_len);
  // rows = shape[0], row_len = numel / rows (a Linear [out, in] or a Conv [out, in, kh, kw]).
  static WeightSource compressed(const CompressedView& v);
};

// y[M, N] = x[M, K] * W[N, K]^T + b (b: N floats or null), y row-major with N columns.
void packed_gemm(const float* x, int64_t M, int64_t K, const WeightSource& w, const float* bias,
                 float* y);
// Linear over the last dim of x ([..., K] -> [..., N], N = w.rows).
Tensor packed_linear(const Tensor& x, const WeightSource& w, const float* bias);

// Bytes of fp32 buffers the packing needs for an output of N columns over K (for a convolution:
// K = cin * taps): one weight block shared by all threads, an activation block and (for fp16 or
// compressed weights) a row buffer per thread. This is what replaces the expanded layer; it is
// bounded by the blocking, not by the layer's size.
int64_t packed_buffer_bytes(int64_t N, int64_t K, WeightSource::Kind kind, int threads,
                            int64_t taps = 1);

// Convolution of NHWC x with the OIHW weight in `w` (rows = cout, row_len = cin * kh * kw) as an
// implicit GEMM; any kernel size, stride and padding. 1x1 stride-1 unpadded ones are a plain GEMM.
Tensor packed_conv2d(const Tensor& x, const WeightSource& w, const float* bias,
                     const Conv2dParams& p);

// Whether a layer with a compressed weight runs the fused kernels above (the weight expanded
// straight into the packing, no fp32 copy of the layer) or expands the layer into a scratch buffer
// and runs the dense kernel, at the kernel level in use. Fused everywhere except at avx2, where
// oneDNN's kernels beat the packed ones on the linear layers and on the deep convolutions (measured
// on SD 1.5: docs/speed.md): there a layer is fused only where the dense path runs the packed
// kernel too, so both paths cost the same.
bool fused_linear_is_faster();
bool fused_conv2d_is_faster(const Shape& x_nhwc, const Conv2dParams& p);

// The micro-tile (rows x columns) of the kernel level in use: what the tests' tail sizes aim at.
void packed_tile(int* mr, int* nr);

}  // namespace sdpal::k
