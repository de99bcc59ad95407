// Runs the sdpal CLI binary built alongside the tests, without a shell.
#pragma once
#include <string>
#include <vector>

namespace sdpal::test {

struct CliResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the signal that killed it, 0 if it exited
  std::string out, err;
};

// Runs `sdpal args...` and captures its stdout and stderr. `env` ("NAME=value") is added to the
// environment of the child (e.g. the crash-point hook of core/crash_point.h).
CliResult run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env = {});

}  // namespace sdpal::test
