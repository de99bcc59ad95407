// Test hook for the crash-safety tests (tests/test_crash_safety.cpp): with SDPAL_TEST_CRASH_AT=N
// in the environment, the N-th crash_point() reached in this process kills it with SIGKILL, as an
// OOM kill or power cut would (no cleanup, no destructors). The crash points are the steps of the
// atomic writers (core/atomic_file.h): temp created, data written, data synced, renamed, folder
// swapped, old folder removed. Without the variable (always, outside those tests) a crash point
// is one relaxed atomic increment.
#pragma once

namespace sdpal {

void crash_point();

}  // namespace sdpal
