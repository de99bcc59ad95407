#include "kernels/dnnl_engine.h"

#include "core/cpu.h"

namespace sdpal::k {

namespace {

// oneDNN picks its own JIT kernels from CPUID; SDPAL_ISA must hold it to the same level, and the
// cap only takes effect before its first primitive is made.
dnnl::cpu_isa dnnl_isa(cpu::Level l) {
  switch (l) {
    case cpu::Level::baseline:
      return dnnl::cpu_isa::sse41;
    case cpu::Level::avx2:
      return dnnl::cpu_isa::avx2;
    case cpu::Level::avx512:
      return dnnl::cpu_isa::avx512_core;
    default:
      return dnnl::cpu_isa::all;
  }
}

}  // namespace

void dnnl_init() {
  static const bool once = [] {
    try {
      dnnl::set_max_cpu_isa(dnnl_isa(cpu::level()));
    } catch (const dnnl::error&) {
      // Already fixed by an earlier oneDNN call (or not supported on this architecture).
    }
    return true;
  }();
  (void)once;
}

dnnl::engine& dnnl_cpu_engine() {
  dnnl_init();
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

}  // namespace sdpal::k
