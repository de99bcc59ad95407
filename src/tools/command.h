// Subcommand registry of the `sdpal` CLI. Each src/tools/cmd_*.cpp registers itself:
//   static const bool registered = sdpal::register_command(
//       {"bench", "Time one UNet step ...", [](CLI::App& app) { ...options...;
//        app.callback([=] { ... }); }});
// Errors are reported by throwing sdpal::Error; main prints "sdpal: error: <message>" and exits 1.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace sdpal {

struct Command {
  std::string name, help;
  std::function<void(CLI::App&)> setup;  // adds options and a callback to the subcommand
};

bool register_command(Command c);
const std::vector<Command>& registered_commands();

}  // namespace sdpal
