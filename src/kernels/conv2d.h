// 2-D convolution on NHWC activations with PyTorch OIHW weights.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sdpal::k {

struct Conv2dParams {
  int64_t cout = 0, kh = 1, kw = 1;
  int stride = 1;
  int pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0;
};

// x: [N, H, W, Cin]; w: [Cout, Cin, kh, kw] (fp32); bias: [Cout] or null. Returns [N, Ho, Wo,
// Cout]. 1x1 stride-1 convolutions are a plain GEMM; others go through chunked im2col + GEMM, with
// the im2col columns ordered (ci, ky, kx) so the OIHW weight is used as it is, with no reorder.
Tensor conv2d(const Tensor& x, const float* w, const float* bias, const Conv2dParams& p);

// Floating-point operations of one such convolution (for benchmarks).
double conv2d_flops(const Shape& x_nhwc, const Conv2dParams& p);

// Whether conv2d() runs this convolution as the packed implicit GEMM (packed_gemm.h) at the kernel
// level in use, rather than oneDNN: where the packed kernel was measured faster.
bool conv2d_runs_packed(const Shape& x_nhwc, const Conv2dParams& p);

}  // namespace sdpal::k
