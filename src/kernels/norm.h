// Normalisations on channel-last data.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sdpal::k {

// GroupNorm over x viewed as [N, S, C] (S = spatial positions, channel-last), in place.
// gamma/beta: [C]. If silu, applies x*sigmoid(x) afterwards (the GroupNorm+SiLU fusion).
void group_norm_(Tensor& x, int64_t groups, const float* gamma, const float* beta, float eps,
                 bool silu);
Tensor group_norm(const Tensor& x, int64_t groups, const float* gamma, const float* beta, float eps,
                  bool silu);

// LayerNorm over the last dim, out of place.
Tensor layer_norm(const Tensor& x, const float* gamma, const float* beta, float eps);

}  // namespace sdpal::k
