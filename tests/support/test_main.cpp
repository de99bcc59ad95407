// The tests' main(): GoogleTest's, plus a guard for the per-level runs (ctest runs the kernel
// tests again with SDPAL_ISA set to each lower level): on a CPU without the requested level
// every test is skipped with a message instead of failing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/cpu.h"
#include "core/error.h"

namespace {

class LevelGuard : public testing::Environment {
 public:
  void SetUp() override {
    const char* env = std::getenv("SDPAL_ISA");
    if (!env || !*env) return;
    try {
      const auto l = sdpal::cpu::parse_level(env);
      if (!sdpal::cpu::supported(l))
        GTEST_SKIP() << "SDPAL_ISA=" << env << ": this CPU (" << sdpal::cpu::model_name()
                     << ") lacks that level; skipping";
    } catch (const sdpal::Error& e) {
      GTEST_SKIP() << e.what();
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  testing::AddGlobalTestEnvironment(new LevelGuard);
  return RUN_ALL_TESTS();
}
