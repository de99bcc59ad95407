// Activation functions (in place, on contiguous float arrays), vectorised for the kernel level.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace sdpal::k {

void silu_(float* x, int64_t n);        // x * sigmoid(x)
void gelu_(float* x, int64_t n);        // exact erf GELU
void quick_gelu_(float* x, int64_t n);  // x * sigmoid(1.702 x)
void relu_(float* x, int64_t n);
// The vector math the activations are built on (exp clamped to [-87.3, 89], erf to 1.5e-7).
void exp_(float* x, int64_t n);
void erf_(float* x, int64_t n);

// Parallel whole-tensor versions.
void silu_(Tensor& x);
void gelu_(Tensor& x);
void quick_gelu_(Tensor& x);
void relu_(Tensor& x);

// GEGLU: h [M, 2*D] -> [M, D] = h[:, :D] * gelu(h[:, D:]).
Tensor geglu(const Tensor& h);

}  // namespace sdpal::k
