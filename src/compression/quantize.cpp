#include "compression/quantize.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/parallel.h"

namespace sdpal {

Linear8Weight quantize_linear8(const float* w, const Shape& shape, DType orig_dtype,
                               bool symmetric) {
  SDPAL_CHECK(!shape.empty(), "quantize_linear8: a scalar weight has no output channels");
  const int64_t numel = shape_numel(shape);
  SDPAL_CHECK(numel > 0, "quantize_linear8: empty weight " + shape_str(shape));
  const int64_t rows = shape[0], row_len = numel / rows;
  Linear8Weight out;
  out.shape = shape;
  out.orig_dtype = orig_dtype;
  out.symmetric = symmetric;
  out.q.resize(numel);
  out.scale.resize(rows);
  if (!symmetric) out.zero.resize(rows);
  bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite) if (numel > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = w + r * row_len;
    uint8_t* q = out.q.data() + r * row_len;
    float lo = 0.f, hi = 0.f;  // starting at 0 also widens the asymmetric range to contain 0
    bool row_finite = true;
    for (int64_t i = 0; i < row_len; ++i) {
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
      row_finite = row_finite && std::isfinite(x[i]);
    }
    // (hi - lo) can overflow for values near the fp32 limit: treated like a non-finite input.
    row_finite = row_finite && std::isfinite(hi - lo);
    finite = finite && row_finite;
    if (symmetric) {
      const float scale = row_finite ? std::max(-lo, hi) / 127.f : 0.f;
      out.scale[r] = scale;
      for (int64_t i = 0; i < row_len; ++i) {
        const float v = scale > 0.f ? std::clamp(std::rint(x[i] / scale), -127.f, 127.f) : 0.f;
        q[i] = static_cast<uint8_t>(static_cast<int8_t>(v));
      }
    } else {
      const float scale = row_finite ? (hi - lo) / 255.f : 0.f;
      const float zero = scale > 0.f ? std::clamp(std::rint(-lo / scale), 0.f, 255.f) : 0.f;
      out.scale[r] = scale;
      out.zero[r] = static_cast<uint8_t>(zero);
      for (int64_t i = 0; i < row_len; ++i) {
        const float v = scale > 0.f ? std::clamp(std::rint(x[i] / scale) + zero, 0.f, 255.f) : 0.f;
        q[i] = static_cast<uint8_t>(v);
      }
    }
  }
  SDPAL_CHECK(finite, "quantize_linear8: weight " + shape_str(shape) +
                          " has a non-finite value (inf or NaN) or a range beyond fp32");
  return out;
}

}  // namespace sdpal
