// W8A8 linear layer: uint8 activations (per tensor, asymmetric) times int8 weights (per output
// channel, symmetric) on oneDNN's int8 matmul, int32 accumulation, fp32 output and bias.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/tensor.h"
#include "kernels/int8_quant.h"

namespace sdpal::k {

// Whether oneDNN's int8 kernels beat its fp32 ones at level l: on x86 at every level (JIT code
// from SSE4.1 up; an SD 1.5 UNet step measured 2.3x faster at avx512vnni (512², the figure of
// record), 2.1x at avx2 (256²) and 2.4x at baseline (128²): docs/int8.md), not on aarch64, where
// oneDNN 2.6 has only reference int8 code.
bool int8_is_fast(cpu::Level l);
// For `generate --int8` where !int8_is_fast(l): what happens and what to use instead; "" else.
std::string int8_speed_warning(cpu::Level l);

class Int8Linear {
 public:
  // w: [out, in] fp32 (PyTorch Linear), bias: [out] or null, act: the input's quantisation.
  // Quantises the weight and lays it out for oneDNN once, here; w need not outlive the call.
  Int8Linear(const float* w, const float* bias, int64_t in, int64_t out, const ActQuant& act);
  // y[M, out] = dequant(q(x))[M, in] * dequant(q(w))^T + bias.
  void forward(const float* x, int64_t M, float* y) const;
  Tensor operator()(const Tensor& x) const;  // [..., in] -> [..., out]

  int64_t in() const;
  int64_t out() const;
  const ActQuant& act() const;
  const std::vector<float>& weight_scales() const;
  // Bytes held for the prepared weights (for memory accounting).
  size_t weight_bytes() const;

 private:
  struct State;
  std::shared_ptr<State> s_;
};

}  // namespace sdpal::k
