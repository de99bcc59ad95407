#include "kernels/dnnl_engine.h"

#include "core/cpu.h"
#include "core/scratch.h"

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

dnnl::primitive_attr user_scratchpad_attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

void execute(const dnnl::primitive& p, const dnnl::memory::desc& scratchpad,
             std::unordered_map<int, dnnl::memory> args) {
  const dnnl::engine& eng = dnnl_cpu_engine();
  const size_t bytes = scratchpad.get_size();
  const ScratchLease buf(bytes > 0 ? (bytes + sizeof(float) - 1) / sizeof(float) : 0);
  if (bytes > 0) args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(scratchpad, eng, buf.data()));
  dnnl::stream strm(eng);
  p.execute(strm, args);
  strm.wait();
}

void reorder(const dnnl::memory& from, const dnnl::memory& to) {
  const dnnl::reorder::primitive_desc pd(from, to, user_scratchpad_attr());
  execute(dnnl::reorder(pd), pd.scratchpad_desc(), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
}

WeightReorder::WeightReorder(const dnnl::memory::desc& plain_, const dnnl::memory::desc& blocked_)
    : plain(plain_), blocked(blocked_) {
  const dnnl::engine& eng = dnnl_cpu_engine();
  const dnnl::reorder::primitive_desc pd(eng, plain, eng, blocked, user_scratchpad_attr());
  scratchpad = pd.scratchpad_desc();
  prim = dnnl::reorder(pd);
}

dnnl::memory WeightReorder::blocked_weights(const float* w, float* buf) const {
  const dnnl::engine& eng = dnnl_cpu_engine();
  dnnl::memory from(plain, eng, const_cast<float*>(w)), to(blocked, eng, buf);
  execute(prim, scratchpad, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
  return to;
}

}  // namespace sdpal::k
