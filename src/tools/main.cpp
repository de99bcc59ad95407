// sdpal command-line entry point: dispatches to the registered subcommands.
#include <malloc.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "core/cpu.h"
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

namespace {

// libgomp reads its wait policy when it loads, before main. Its default, spinning at every
// barrier, turns a busy machine (other processes on the cores) into a 50x slowdown for models
// with many small layers; passive waiting costs next to nothing on large layers. So, unless the
// user chose a policy, OMP_WAIT_POLICY=passive is set from the executable's pre-initialisers,
// which the dynamic loader runs before any shared library's initialisers (libgomp's included):
// no re-execution of the program (which would leave an emulator such as qemu-user) and nothing
// Linux-specific beyond ELF.
void default_omp_wait_policy(int, char**, char**) { setenv("OMP_WAIT_POLICY", "passive", 0); }
__attribute__((section(".preinit_array"), used)) void (*const preinit_omp)(int, char**, char**) =
    default_omp_wait_policy;

}  // namespace

int main(int argc, char** argv) {
  // Activations are allocated and freed layer by layer. glibc's defaults give large blocks back to
  // the kernel when freed and take fresh ones (page faults, zeroing) at the next malloc; keeping
  // blocks up to 32 MB in the heap, and the heap from being trimmed below 1 GiB, made an int8
  // SD 1.5 step 15 % faster (1.51 vs 1.76-1.85 s at 512x512). Peak RSS is unchanged: it is the
  // peak.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  CLI::App app{"sdpal " SDPAL_VERSION
               " - Stable Diffusion runtime and compression toolkit for CPUs"};
  app.set_version_flag("--version", [] {
    return std::string("sdpal " SDPAL_VERSION "\n") + sdpal::cpu::describe();
  });
  app.require_subcommand(1);
  for (const auto& c : sdpal::registered_commands()) c.setup(*app.add_subcommand(c.name, c.help));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help / --version print and exit 0; a bad command line is one error line like any other.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "sdpal: error: %s (see --help)\n", e.what());
    return e.get_exit_code();
  } catch (const sdpal::Error& e) {
    std::fprintf(stderr, "sdpal: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sdpal: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
