// Linear 8-bit weight quantization, one scale (and zero point) per output channel (row), with
// the conventions of coremltools' linear_quantize_weights (per-channel granularity):
//
// - symmetric ("linear_symmetric", int8): scale = max|w| / 127, q = clamp(rint(w / scale),
//   -127, 127); -128 is never used so the range is symmetric.
// - asymmetric ("linear", uint8): the range is widened to contain 0, lo = min(min w, 0),
//   hi = max(max w, 0), so 0 is exactly representable and the zero point needs no clamping;
//   scale = (hi - lo) / 255, zero = clamp(rint(-lo / scale), 0, 255),
//   q = clamp(rint(w / scale) + zero, 0, 255).
//
// All arithmetic is fp32, rint rounds half to even (numpy.round). A row whose scale comes out 0
// (all zeros, or values so small that max/127 underflows) stores scale 0, zero 0 and q 0, so it
// expands to exact zeros instead of dividing by zero. Every element round-trips to within
// scale/2 (plus fp32 rounding) of its input: expansion is float(q) * scale (symmetric) or
// (float(q) - float(zero)) * scale (asymmetric), see compressed_weight.h.
#pragma once
#include "core/compressed_weight.h"

namespace sdpal {

// w holds shape_numel(shape) floats, row-major with rows = shape[0]. Non-finite values throw.
Linear8Weight quantize_linear8(const float* w, const Shape& shape, DType orig_dtype,
                               bool symmetric);

}  // namespace sdpal
