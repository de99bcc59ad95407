#include "kernels/resample.h"

#include <cstring>

#include "core/error.h"
#include "core/parallel.h"
#include "core/profile.h"

namespace sdpal::k {

Tensor upsample_nearest(const Tensor& x, int64_t Ho, int64_t Wo) {
  prof::OpScope scope(prof::Op::elementwise);
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  Tensor y({N, Ho, Wo, C});
#pragma omp parallel for collapse(2) if (y.numel() > kParallelGrain)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oy = 0; oy < Ho; ++oy) {
      const int64_t iy = oy * H / Ho;
      for (int64_t ox = 0; ox < Wo; ++ox) {
        const int64_t ix = ox * W / Wo;
        std::memcpy(y.data() + ((n * Ho + oy) * Wo + ox) * C,
                    x.data() + ((n * H + iy) * W + ix) * C, C * 4);
      }
    }
  return y;
}

Tensor concat_channels(const Tensor& a, const Tensor& b) {
  SDPAL_CHECK(
      a.ndim() == 4 && b.ndim() == 4 && a.dim(0) == b.dim(0) && a.dim(1) == b.dim(1) &&
          a.dim(2) == b.dim(2),
      "concat_channels: shape mismatch " + shape_str(a.shape()) + " vs " + shape_str(b.shape()));
  prof::OpScope scope(prof::Op::elementwise);
  const int64_t P = a.dim(0) * a.dim(1) * a.dim(2), Ca = a.dim(3), Cb = b.dim(3);
  Tensor y({a.dim(0), a.dim(1), a.dim(2), Ca + Cb});
#pragma omp parallel for if (y.numel() > kParallelGrain)
  for (int64_t p = 0; p < P; ++p) {
    std::memcpy(y.data() + p * (Ca + Cb), a.data() + p * Ca, Ca * 4);
    std::memcpy(y.data() + p * (Ca + Cb) + Ca, b.data() + p * Cb, Cb * 4);
  }
  return y;
}

void add_(Tensor& a, const Tensor& b) {
  SDPAL_CHECK(a.numel() == b.numel(),
              "add_: size mismatch " + shape_str(a.shape()) + " vs " + shape_str(b.shape()));
  prof::OpScope scope(prof::Op::elementwise);
  const int64_t n = a.numel();
  float* x = a.data();
  const float* y = b.data();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace sdpal::k
