#include "kernels/conv2d.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "kernels/gemm.h"

namespace sdpal::k {

namespace {
// Rows of the im2col buffer per GEMM call: large enough for GEMM efficiency, small enough to stay
// within a few tens of MB even for 512x512 VAE layers.
int64_t chunk_rows(int64_t cols) {
  int64_t r = (16ll << 20) / (cols * 4);
  return std::clamp<int64_t>(r, 256, 8192);
}
}  // namespace

Tensor conv2d(const Tensor& x, const float* w, const float* bias, const Conv2dParams& p) {
  SDPAL_CHECK(x.ndim() == 4, "conv2d: input must be NHWC 4-D, got " + shape_str(x.shape()));
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), Cin = x.dim(3);
  const int64_t Ho = (H + p.pad_t + p.pad_b - p.kh) / p.stride + 1;
  const int64_t Wo = (W + p.pad_l + p.pad_r - p.kw) / p.stride + 1;
  SDPAL_CHECK(Ho > 0 && Wo > 0, "conv2d: output would be empty for input " + shape_str(x.shape()));
  Tensor y({N, Ho, Wo, p.cout});
  const int64_t K = Cin * p.kh * p.kw;
  if (p.kh == 1 && p.kw == 1 && p.stride == 1 && !p.pad_t && !p.pad_l && !p.pad_b && !p.pad_r) {
    linear(x.data(), N * H * W, Cin, w, bias, p.cout, y.data());
    return y;
  }
  const int64_t P = N * Ho * Wo;
  const int64_t rows = std::min(P, chunk_rows(K));
  std::vector<float> col(static_cast<size_t>(rows * K));
  const int64_t taps = p.kh * p.kw;
  for (int64_t r0 = 0; r0 < P; r0 += rows) {
    const int64_t nr = std::min(rows, P - r0);
#pragma omp parallel for schedule(static) if (nr * K > kParallelGrain)
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t q = r0 + r;
      const int64_t n = q / (Ho * Wo), oy = (q / Wo) % Ho, ox = q % Wo;
      float* dst = col.data() + r * K;
      for (int64_t ky = 0; ky < p.kh; ++ky) {
        const int64_t iy = oy * p.stride - p.pad_t + ky;
        for (int64_t kx = 0; kx < p.kw; ++kx) {
          const int64_t ix = ox * p.stride - p.pad_l + kx;
          const int64_t t = ky * p.kw + kx;
          if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
            for (int64_t c = 0; c < Cin; ++c) dst[c * taps + t] = 0.f;
          } else {
            const float* src = x.data() + ((n * H + iy) * W + ix) * Cin;
            for (int64_t c = 0; c < Cin; ++c) dst[c * taps + t] = src[c];
          }
        }
      }
    }
    linear(col.data(), nr, K, w, bias, p.cout, y.data() + r0 * p.cout);
  }
  return y;
}

double conv2d_flops(const Shape& x, const Conv2dParams& p) {
  const int64_t Ho = (x[1] + p.pad_t + p.pad_b - p.kh) / p.stride + 1;
  const int64_t Wo = (x[2] + p.pad_l + p.pad_r - p.kw) / p.stride + 1;
  return 2.0 * x[0] * Ho * Wo * p.cout * x[3] * p.kh * p.kw;
}

}  // namespace sdpal::k
