#include "core/profile.h"

#include <atomic>
#include <mutex>

namespace sdpal::prof {
namespace {
std::atomic<bool> g_enabled{false};
std::mutex g_mu;
Totals g_totals{};
}  // namespace

namespace detail {
thread_local int depth = 0;
void add(Op op, double seconds, double flops) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto& t = g_totals[static_cast<int>(op)];
  t.seconds += seconds;
  t.flops += flops;
  ++t.calls;
}
}  // namespace detail

std::string_view op_name(Op op) {
  switch (op) {
    case Op::conv:
      return "conv";
    case Op::gemm:
      return "gemm";
    case Op::conv_int8:
      return "conv_int8";
    case Op::gemm_int8:
      return "gemm_int8";
    case Op::attention:
      return "attention";
    case Op::norm:
      return "norm";
    case Op::elementwise:
      return "elementwise";
    case Op::expansion:
      return "weight_expansion";
    case Op::tome:
      return "tome";
    case Op::count_:
      break;
  }
  return "?";
}

void enable(bool on) { g_enabled.store(on, std::memory_order_relaxed); }
bool enabled() { return g_enabled.load(std::memory_order_relaxed); }
void reset() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_totals = Totals{};
}
Totals totals() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_totals;
}

}  // namespace sdpal::prof
