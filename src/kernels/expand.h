// Expansion of compressed weights (core/compressed_weight.h) to fp32: whole weights, row ranges,
// or arbitrary spans for kernels that expand a weight piece by piece. Highway-dispatched, with a
// hand-written AVX-512 palette kernel (expand_avx512.cpp) on CPUs that have it.
#pragma once
#include <cstdint>

#include "core/compressed_weight.h"

namespace sdpal {

// Expands to fp32: out[i] = float(lut[group(i)][index(i)]) (bit-exact), or the linear-8 formula
// in fp32 with exactly this operation order: symmetric float(int8 q) * scale[row], asymmetric
// (float(q) - float(zero[row])) * scale[row] (one rounding: the multiply).
// Vectorised; `out` holds numel floats. Indices >= entries (a malformed file) read as 0.0f.
void expand(const CompressedView& w, float* out);
// Expands rows [row_begin, row_end) only (out holds (row_end-row_begin) * numel/rows floats).
void expand_rows(const CompressedView& w, int64_t row_begin, int64_t row_end, float* out);

// Expands arbitrary spans of one weight on the calling thread, bit-identical to expand(), keeping
// the current palette group's fp32 LUT between calls: for kernels that expand a weight piece by
// piece (a GEMM packing its weight panels) instead of all at once. Validates the view once.
class SpanExpander {
 public:
  explicit SpanExpander(const CompressedView& w);
  // out[i] = element e0 + i of the flat row-major weight, for i < e1 - e0.
  void operator()(int64_t e0, int64_t e1, float* out);

 private:
  CompressedView w_;
  int64_t group_elems_ = 0;
  int64_t group_ = -1;  // palette group whose LUT is in lut_
  alignas(64) float lut_[256];
};

}  // namespace sdpal
