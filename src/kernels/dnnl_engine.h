// The one oneDNN CPU engine the kernels share (creating an engine per kernel file is needless).
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

namespace sdpal::k {

dnnl::engine& dnnl_cpu_engine();

}  // namespace sdpal::k
