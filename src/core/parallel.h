// Work below this many elements runs on one thread: an OpenMP fork/join costs microseconds, more
// than small elementwise work, and spinning threads hurt on a busy machine.
#pragma once
#include <cstdint>

namespace sdpal {
inline constexpr int64_t kParallelGrain = int64_t(1) << 15;
}
