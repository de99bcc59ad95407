#include "core/crash_point.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

namespace sdpal {

namespace {
// 0: off. Read once; the environment of a process does not change what it is testing.
long crash_target() {
  const char* s = std::getenv("SDPAL_TEST_CRASH_AT");
  if (!s || !*s) return 0;
  char* end = nullptr;
  const long n = std::strtol(s, &end, 10);
  return *end == '\0' && n > 0 ? n : 0;
}
}  // namespace

void crash_point() {
  static const long target = crash_target();
  static std::atomic<long> reached{0};  // process-wide by design: counts this process's points
  if (reached.fetch_add(1, std::memory_order_relaxed) + 1 == target) ::kill(::getpid(), SIGKILL);
}

}  // namespace sdpal
