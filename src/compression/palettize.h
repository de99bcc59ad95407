// k-means palettization of a weight tensor (what coremltools calls "kmeans" palettization, but
// with the exact 1-D optimum instead of Lloyd's from a random start).
//
// Per group of output channels (or the whole tensor), the values are histogrammed exactly: data
// from fp16 files is exactly representable in fp16, so each fp16 bit pattern is one bucket and
// no binning happens. The optimal k-means (k = 2^nbits) runs on the distinct values weighted by
// their counts; its centroids rounded to the nearest fp16 become the LUT, and every element then
// takes the index of the NEAREST LUT entry (ties to the lower index), so the stored indices are
// optimal for the stored LUT. Values that are not fp16-exact (fp32/bf16 sources) are bucketed by
// their nearest fp16 with each bucket represented by its mean; their indices are still chosen per
// element against the LUT.
//
// Groups with fewer distinct values than 2^nbits get one entry per value; the LUT width
// (`entries`) is the largest group's, shorter groups repeat their last entry.
#pragma once
#include "core/compressed_weight.h"

namespace sdpal {

// w: shape_numel(shape) floats, row-major; rows = shape[0] are output channels.
// nbits in {1, 2, 4, 6, 8}; group_size = output channels per LUT, 0 for one LUT per tensor; it
// must divide shape[0]. Values must be finite and within the fp16 range (|w| <= 65504).
// Multithreaded (OpenMP). Throws sdpal::Error on invalid arguments or values.
PalettizedWeight palettize(const float* w, const Shape& shape, DType orig_dtype, int nbits,
                           int64_t group_size);

// Sum over elements of (expanded - original)^2 in double: the quantity palettization minimises.
double palettization_sse(const float* w, const PalettizedWeight& p);

}  // namespace sdpal
