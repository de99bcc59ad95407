#include "kernels/dnnl_engine.h"

namespace sdpal::k {

dnnl::engine& dnnl_cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

}  // namespace sdpal::k
