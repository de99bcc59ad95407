// The one oneDNN CPU engine the kernels share (creating an engine per kernel file is needless).
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

namespace sdpal::k {

// Caps oneDNN's instruction set at the kernel level (cpu::level()); once, before any oneDNN call.
void dnnl_init();
dnnl::engine& dnnl_cpu_engine();

}  // namespace sdpal::k
