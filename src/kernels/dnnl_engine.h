// The one oneDNN CPU engine the kernels share (creating an engine per kernel file is needless), and
// how every oneDNN primitive here is run.
#pragma once
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

namespace sdpal::k {

// Caps oneDNN's instruction set at the kernel level (cpu::level()); once, before any oneDNN call.
void dnnl_init();
dnnl::engine& dnnl_cpu_engine();

// oneDNN keeps one scratchpad for all the primitives of a process unless it was built with
// DNNL_ENABLE_CONCURRENT_EXEC (Debian's is not): two primitives running at the same time on
// different threads overwrite each other's intermediate data. So every primitive here is made
// with this attribute (scratchpad_mode::user) ...
dnnl::primitive_attr user_scratchpad_attr();
// ... and run through this, with a scratchpad of `scratchpad` (the primitive descriptor's
// scratchpad_desc()) lent for the call from the calling thread's scratch, on a stream of its own.
void execute(const dnnl::primitive& p, const dnnl::memory::desc& scratchpad,
             std::unordered_map<int, dnnl::memory> args);
// A reorder from one memory to another, run the same way.
void reorder(const dnnl::memory& from, const dnnl::memory& to);

// An fp32 weight reordered from its plain layout into the one a primitive asks for, on every call
// (the weights stay as the model file has them; nothing is duplicated in memory).
struct WeightReorder {
  dnnl::reorder prim;
  dnnl::memory::desc plain, blocked, scratchpad;
  WeightReorder() = default;
  WeightReorder(const dnnl::memory::desc& plain, const dnnl::memory::desc& blocked);
  // Floats that blocked_weights() needs in `buf`.
  size_t blocked_floats() const { return blocked.get_size() / sizeof(float); }
  // w in the blocked layout, written into buf (at least blocked_floats()).
  dnnl::memory blocked_weights(const float* w, float* buf) const;
};

}  // namespace sdpal::k
