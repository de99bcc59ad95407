// Include LAST in the scheduler implementation files. diffusers does its scheduler arithmetic as
// separate float32 torch ops (and numpy float64 ops), each rounded on its own; a fused a*b+c
// would drift from the reference by an ulp per op. The build already compiles everything with
// -ffp-contract=off (CMakeLists.txt); this keeps these files right when compiled otherwise. From
// here to the end of the including file no contraction happens, so plain float expressions
// written in diffusers' operation order reproduce its values.
#pragma once
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "core/tensor.h"
#include "pipeline/scheduler_common.h"

namespace sdpal::sched {

// out[i] = f(first[i], rest[i]...) over tensors of one shape; f does one element of a chain of
// torch ops, in torch's order (defined here so that f's body gets no contraction either).
template <class F, class... Ts>
Tensor elementwise(F f, const Tensor& first, const Ts&... rest) {
  (check_same_shape(first, rest, "scheduler input"), ...);
  Tensor out(first.shape());
  float* o = out.data();
  const float* a = first.data();
  const int64_t n = first.numel();
  for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], rest.data()[i]...);
  return out;
}

}  // namespace sdpal::sched
