// Runs the sdpal CLI binary built alongside the tests, without a shell.
#pragma once
#include <string>
#include <vector>

namespace sdpal::test {

struct CliResult {
  int exit_code = -1;
  std::string out, err;
};

// Runs `sdpal args...` and captures its stdout and stderr.
CliResult run_cli(const std::vector<std::string>& args);

}  // namespace sdpal::test
