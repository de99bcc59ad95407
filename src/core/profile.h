// Per-op-type time and FLOP accounting for benchmarks. Kernels open an OpScope; only the outermost
// scope on a thread counts (a 1x1 convolution that runs as a GEMM is counted once, as conv). Off by
// default: a disabled scope costs one relaxed atomic load.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace sdpal::prof {

enum class Op : int {
  conv,         // fp32 convolutions (incl. 1x1 as GEMM)
  gemm,         // fp32 linear layers / matrix products
  conv_int8,    // int8 (W8A8) convolutions incl. activation quantisation
  gemm_int8,    // int8 linear layers incl. activation quantisation
  attention,    // softmax(QK^T)V
  norm,         // group/layer norm (with fused activation)
  elementwise,  // activations, residual adds, resampling, concat
  expansion,    // fp16/compressed weight -> fp32
  tome,         // token merging: similarity, matching, merge/unmerge
  count_
};
inline constexpr int kOps = static_cast<int>(Op::count_);
std::string_view op_name(Op op);

struct OpTotals {
  double seconds = 0, flops = 0;
  int64_t calls = 0;
};
using Totals = std::array<OpTotals, kOps>;

void enable(bool on);
bool enabled();
void reset();
Totals totals();

namespace detail {
extern thread_local int depth;
void add(Op op, double seconds, double flops);
}  // namespace detail

class OpScope {
 public:
  explicit OpScope(Op op, double flops = 0) : op_(op), flops_(flops) {
    if (!enabled()) return;
    if (detail::depth++ == 0) {
      active_ = true;
      t0_ = std::chrono::steady_clock::now();
    } else {
      nested_ = true;  // counted by the outer scope
    }
  }
  ~OpScope() {
    if (active_) {
      auto s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
      detail::add(op_, s, flops_);
    }
    if (active_ || nested_) --detail::depth;
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  Op op_;
  double flops_;
  bool active_ = false, nested_ = false;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace sdpal::prof
