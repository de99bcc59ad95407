// CPU detection, kernel levels and SDPAL_ISA; the same generation at every level this CPU has.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <hwy/targets.h>

#include "core/cpu.h"
#include "core/error.h"
#include "formats/safetensors.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace sdpal {
namespace {

using test::run_cli;

// Sets an environment variable for the CLI runs of one scope (the child inherits it).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { had_ ? (void)setenv(name_, old_.c_str(), 1) : (void)unsetenv(name_); }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(Cpu, LevelNamesRoundTrip) {
  for (auto l : {cpu::Level::baseline, cpu::Level::avx2, cpu::Level::avx512,
                 cpu::Level::avx512vnni, cpu::Level::neon, cpu::Level::neon_dotprod})
    EXPECT_EQ(cpu::parse_level(cpu::level_name(l)), l);
  EXPECT_STREQ(cpu::level_name(cpu::Level::neon_dotprod), "neon-dotprod");
  EXPECT_THROW(cpu::parse_level("avx3"), Error);
  EXPECT_THROW(cpu::parse_level(""), Error);
}

TEST(Cpu, SupportedLevelsAreOrderedAndConsistentWithFeatures) {
  const auto levels = cpu::supported_levels();
  ASSERT_FALSE(levels.empty());
  EXPECT_EQ(levels.back(), cpu::best_level());
  const auto& f = cpu::features();
  for (auto l : levels) {
    EXPECT_TRUE(cpu::supported(l));
    if (l == cpu::Level::avx2) {
      EXPECT_TRUE(f.avx2 && f.fma && f.f16c);
    } else if (l == cpu::Level::avx512) {
      EXPECT_TRUE(f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq);
    } else if (l == cpu::Level::avx512vnni) {
      EXPECT_TRUE(f.avx512vnni);
    } else if (l == cpu::Level::neon_dotprod) {
      EXPECT_TRUE(f.dotprod);
    }
  }
#if defined(__x86_64__)
  EXPECT_EQ(levels.front(), cpu::Level::baseline);
  EXPECT_FALSE(cpu::supported(cpu::Level::neon));
#elif defined(__aarch64__)
  EXPECT_EQ(levels.front(), cpu::Level::neon);
  EXPECT_FALSE(cpu::supported(cpu::Level::avx2));
#endif
  EXPECT_FALSE(cpu::model_name().empty());
  EXPECT_NE(cpu::describe().find(cpu::level_name(cpu::level())), std::string::npos);
}

// Asking Highway for its targets (as --version does) must not lift SDPAL_ISA's limit: the chosen
// target stays the level's.
TEST(Cpu, TargetQueriesKeepTheLevelsLimit) {
  const std::string before = cpu::portable_target_name();
  (void)hwy::SupportedTargets();
  (void)cpu::describe();
  EXPECT_EQ(cpu::portable_target_name(), before);
  const int64_t chosen = hwy::SupportedTargets() & HWY_TARGETS;
  EXPECT_EQ(hwy::TargetName(chosen & -chosen), before);
  if (cpu::level() == cpu::Level::avx2) {
    EXPECT_EQ(before, "AVX2");
  } else if (cpu::level() == cpu::Level::baseline) {
    EXPECT_TRUE(before == "SSE4" || before == "SCALAR") << before;
  }
}

TEST(Cpu, VersionNamesCpuAndLevel) {
  const auto r = run_cli({"--version"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("CPU: " + cpu::model_name()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("kernel level: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("portable kernels: Highway"), std::string::npos) << r.out;
}

TEST(Cpu, SdpalIsaForcesEachSupportedLevel) {
  for (auto l : cpu::supported_levels()) {
    ScopedEnv env("SDPAL_ISA", cpu::level_name(l));
    const auto r = run_cli({"--version"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find(std::string("kernel level: ") + cpu::level_name(l) + " (SDPAL_ISA)"),
              std::string::npos)
        << r.out;
  }
}

TEST(Cpu, SdpalIsaRefusesUnknownAndUnsupportedLevels) {
  {
    ScopedEnv env("SDPAL_ISA", "avx1024");
    const auto r = run_cli({"--version"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("unknown kernel level 'avx1024'"), std::string::npos) << r.err;
  }
#if defined(__x86_64__)
  const char* foreign = "neon";
#else
  const char* foreign = "avx2";
#endif
  ScopedEnv env("SDPAL_ISA", foreign);
  const auto r = run_cli({"--version"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("does not support that level"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(cpu::level_name(cpu::best_level())), std::string::npos) << r.err;
}

// The same command and seed at every level: latents within fp32 rounding of the best level's.
class CpuLevels : public test::TempDirTest {};

TEST_F(CpuLevels, DemoGenerationAgreesAcrossLevels) {
  const std::string model = std::string(SDPAL_SOURCE_DIR) + "/models/demo-fashion";
  Tensor ref;
  std::string ref_level;
  for (auto l : cpu::supported_levels()) {
    ScopedEnv env("SDPAL_ISA", cpu::level_name(l));
    const std::string latents = path(std::string("latents-") + cpu::level_name(l) + ".safetensors");
    const auto r = run_cli({"generate", "--model", model, "--prompt", "a sneaker", "--steps", "4",
                            "--seed", "7", "--quiet", "--output", path("out.png"),
                            "--save-latents", latents});
    ASSERT_EQ(r.exit_code, 0) << cpu::level_name(l) << ": " << r.err;
    Tensor got = SafetensorsFile(latents).to_f32("latents");
    if (ref.numel() == 0) {
      ref = got;
      ref_level = cpu::level_name(l);
      continue;
    }
    ASSERT_EQ(got.shape(), ref.shape());
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      const double d = std::abs(double(got.data()[i]) - ref.data()[i]);
      worst = std::isnan(d) ? INFINITY : std::max(worst, d);
      scale = std::max(scale, std::abs(double(ref.data()[i])));
    }
    EXPECT_LE(worst, 1e-3 * scale) << cpu::level_name(l) << " vs " << ref_level;
    std::printf("%s vs %s: max |diff| %.3g (max |latent| %.3g)\n", cpu::level_name(l),
                ref_level.c_str(), worst, scale);
  }
}

}  // namespace
}  // namespace sdpal
