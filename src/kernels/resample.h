// Spatial resampling and channel concatenation on NHWC tensors.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sdpal::k {

// Nearest-neighbour resize to (Ho, Wo), source index floor(dst * in / out) as PyTorch's 'nearest'.
Tensor upsample_nearest(const Tensor& x, int64_t Ho, int64_t Wo);
// Concatenate NHWC tensors along channels.
Tensor concat_channels(const Tensor& a, const Tensor& b);
// a += b (same shape).
void add_(Tensor& a, const Tensor& b);

}  // namespace sdpal::k
