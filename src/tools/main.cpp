// sdpal command-line entry point: dispatches to the registered subcommands.
#include <omp.h>

#include <cstdio>
#include <exception>

#include "core/error.h"
#include "tools/command.h"
#include "tools/version.h"

namespace sdpal {

namespace {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
}  // namespace

bool register_command(Command c) {
  registry().push_back(std::move(c));
  return true;
}
const std::vector<Command>& registered_commands() { return registry(); }

}  // namespace sdpal

int main(int argc, char** argv) {
  CLI::App app{"sdpal " SDPAL_VERSION
               " - Stable Diffusion runtime and compression toolkit for CPUs"};
  app.set_version_flag("--version", "sdpal " SDPAL_VERSION);
  app.require_subcommand(1);
  for (const auto& c : sdpal::registered_commands()) c.setup(*app.add_subcommand(c.name, c.help));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const sdpal::Error& e) {
    std::fprintf(stderr, "sdpal: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sdpal: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
