// What this CPU can run, and which kernel level sdpal uses on it.
//
// Kernels exist per level: hand-written AVX-512 ones (x86), portable Highway ones compiled for
// SSE4 / AVX2 / AVX-512 / NEON and chosen at run time, and a scalar fallback. The level is the
// best one the CPU and the OS support, or a lower one forced with the environment variable
// SDPAL_ISA (names as level_name() prints them); it is fixed for the life of the process (it is a
// property of the machine, not of a generation), and every dispatch point asks level().
#pragma once
#include <string>
#include <vector>

namespace sdpal::cpu {

// Ordered within an architecture: a higher level includes everything below it.
enum class Level {
  baseline,      // x86-64-v2 (SSE4) or the scalar fallback; the lowest level anywhere
  avx2,          // x86: AVX2 + FMA + F16C
  avx512,        // x86: AVX-512 F/BW/VL/DQ
  avx512vnni,    // x86: AVX-512 + VNNI (int8 dot products)
  neon,          // aarch64: Advanced SIMD (every ARMv8-A CPU)
  neon_dotprod,  // aarch64: + SDOT/UDOT (ARMv8.2 dot product)
};

struct Features {
  // x86 (OS support of the register state included: XGETBV)
  bool sse41 = false, sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx_vnni = false;
  // aarch64
  bool neon = false, dotprod = false, fp16 = false, sve = false;
};

const Features& features();
// The processor's name, e.g. "AMD EPYC 9654 96-Core Processor" (or "unknown").
const std::string& model_name();
// "sse4.1 sse4.2 avx avx2 fma f16c avx512f ..." (the features above that are present).
std::string feature_list();

// Levels of this architecture the CPU supports, lowest first.
std::vector<Level> supported_levels();
bool supported(Level l);
Level best_level();

// The level kernels run at: SDPAL_ISA if set (refused with an Error naming the supported levels
// when this CPU lacks it or the name is unknown), else best_level(). Read once.
Level level();
const char* level_name(Level l);
// Parses a level name ("avx2", "neon-dotprod", ...); throws an Error for an unknown name.
Level parse_level(const std::string& name);

// Convenience tests of the active level.
inline bool use_avx512() { return level() == Level::avx512 || level() == Level::avx512vnni; }
inline bool use_avx512_vnni() { return level() == Level::avx512vnni; }
inline bool use_avx2() { return level() == Level::avx2 || use_avx512(); }
inline bool use_dotprod() { return level() == Level::neon_dotprod; }

// Name of the Highway target the portable kernels run on at this level ("AVX2", "NEON", ...).
std::string portable_target_name();

// One paragraph for `--version` and benchmarks: CPU, features, level, portable target.
std::string describe();

}  // namespace sdpal::cpu
