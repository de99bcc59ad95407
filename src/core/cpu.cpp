#include "core/cpu.h"

#include <hwy/targets.h>

#include <cstdlib>
#include <fstream>
#include <mutex>

#include "core/error.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define SDPAL_X86 1
#include <cpuid.h>
#elif defined(__aarch64__)
#define SDPAL_ARM64 1
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP_ASIMDHP
#define HWCAP_ASIMDHP (1 << 10)
#endif
#ifndef HWCAP_SVE
#define HWCAP_SVE (1 << 22)
#endif
#endif

namespace sdpal::cpu {

namespace {

#if SDPAL_X86
struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};
Regs cpuid(unsigned leaf, unsigned sub = 0) {
  Regs r;
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
  return r;
}
// XCR0: which register state the OS saves on a context switch (AVX needs XMM+YMM, AVX-512 also
// the opmask and the upper ZMM halves); a CPU flag without OS support must not count.
unsigned long long xgetbv0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}
#endif

Features detect() {
  Features f;
#if SDPAL_X86
  const unsigned max_leaf = cpuid(0).a;
  const Regs l1 = cpuid(1);
  f.sse41 = l1.c & (1u << 19);
  f.sse42 = l1.c & (1u << 20);
  const bool osxsave = l1.c & (1u << 27);
  const unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
  f.avx = os_avx && (l1.c & (1u << 28));
  f.fma = f.avx && (l1.c & (1u << 12));
  f.f16c = f.avx && (l1.c & (1u << 29));
  if (max_leaf >= 7) {
    const Regs l7 = cpuid(7, 0);
    f.avx2 = f.avx && (l7.b & (1u << 5));
    f.avx512f = os_avx512 && (l7.b & (1u << 16));
    f.avx512dq = f.avx512f && (l7.b & (1u << 17));
    f.avx512bw = f.avx512f && (l7.b & (1u << 30));
    f.avx512vl = f.avx512f && (l7.b & (1u << 31));
    f.avx512vnni = f.avx512f && (l7.c & (1u << 11));
    if (l7.a >= 1) f.avx_vnni = f.avx2 && (cpuid(7, 1).a & (1u << 4));
  }
#elif SDPAL_ARM64
  const unsigned long hw = getauxval(AT_HWCAP);
  f.neon = true;  // Advanced SIMD is mandatory in ARMv8-A
  f.dotprod = hw & HWCAP_ASIMDDP;
  f.fp16 = hw & HWCAP_ASIMDHP;
  f.sve = hw & HWCAP_SVE;
#endif
  return f;
}

std::string detect_model() {
#if SDPAL_X86
  if (cpuid(0x80000000).a >= 0x80000004) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      const Regs r = cpuid(0x80000002 + i);
      const unsigned w[4] = {r.a, r.b, r.c, r.d};
      for (int j = 0; j < 16; ++j) brand[i * 16 + j] = static_cast<char>(w[j / 4] >> (8 * (j % 4)));
    }
    std::string s(brand);
    const auto b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
    if (b != std::string::npos) return s.substr(b, e - b + 1);
  }
#endif
  // /proc/cpuinfo: "model name" (x86, some ARM kernels); ARM otherwise names the implementer and
  // part numbers only.
  std::ifstream in("/proc/cpuinfo");
  std::string line, implementer, part;
  while (std::getline(in, line)) {
    auto value = [&] {
      const auto c = line.find(':');
      const auto b = c == std::string::npos ? c : line.find_first_not_of(" \t", c + 1);
      return b == std::string::npos ? std::string() : line.substr(b);
    };
    if (line.rfind("model name", 0) == 0 || line.rfind("Model", 0) == 0) return value();
    if (line.rfind("CPU implementer", 0) == 0 && implementer.empty()) implementer = value();
    if (line.rfind("CPU part", 0) == 0 && part.empty()) part = value();
  }
  if (!implementer.empty()) return "ARM implementer " + implementer + " part " + part;
  return "unknown";
}

// Highway targets each level may run (the compiled set is narrowed in CMakeLists.txt).
int64_t hwy_targets_of(Level l) {
  const int64_t fallback = HWY_SCALAR | HWY_EMU128;
  switch (l) {
    case Level::baseline:
      return fallback | HWY_SSE4 | HWY_NEON;  // NEON is the lowest level on aarch64
    case Level::avx2:
      return fallback | HWY_SSE4 | HWY_AVX2;
    case Level::avx512:
    case Level::avx512vnni:
      return fallback | HWY_SSE4 | HWY_AVX2 | HWY_AVX3;
    case Level::neon:
    case Level::neon_dotprod:
      return fallback | HWY_NEON;
  }
  return fallback;
}

Level choose() {
  const char* env = std::getenv("SDPAL_ISA");
  Level l = best_level();
  if (env && *env) {
    l = parse_level(env);
    if (!supported(l)) {
      std::string have;
      for (Level s : supported_levels()) have += std::string(have.empty() ? "" : ", ") + level_name(s);
      fail(std::string("SDPAL_ISA=") + env + ": this CPU (" + model_name() +
           ") does not support that level; it supports " + have);
    }
  }
  // The portable kernels dispatch through Highway: keep it from choosing a target above the level.
  // In Highway 1.0.3 every later SupportedTargets() call re-derives the chosen target from the
  // CPU, so the allowed set is installed as the supported set itself (a fixed mask it returns).
  const int64_t allowed = hwy::SupportedTargets() & hwy_targets_of(l);
  hwy::SetSupportedTargetsForTest(allowed ? allowed : HWY_STATIC_TARGET);
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
  return l;
}

}  // namespace

const Features& features() {
  static const Features f = detect();
  return f;
}

const std::string& model_name() {
  static const std::string m = detect_model();
  return m;
}

std::string feature_list() {
  const Features& f = features();
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (on) s += std::string(s.empty() ? "" : " ") + name;
  };
  add(f.sse41, "sse4.1");
  add(f.sse42, "sse4.2");
  add(f.avx, "avx");
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512dq, "avx512dq");
  add(f.avx512vnni, "avx512vnni");
  add(f.avx_vnni, "avxvnni");
  add(f.neon, "neon");
  add(f.dotprod, "dotprod");
  add(f.fp16, "fp16");
  add(f.sve, "sve");
  return s.empty() ? "none" : s;
}

std::vector<Level> supported_levels() {
  const Features& f = features();
  std::vector<Level> v;
#if SDPAL_ARM64
  v.push_back(Level::neon);
  if (f.dotprod) v.push_back(Level::neon_dotprod);
#else
  v.push_back(Level::baseline);
  if (f.avx2 && f.fma && f.f16c) {
    v.push_back(Level::avx2);
    if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) {
      v.push_back(Level::avx512);
      if (f.avx512vnni) v.push_back(Level::avx512vnni);
    }
  }
#endif
  return v;
}

bool supported(Level l) {
#if SDPAL_ARM64
  if (l == Level::baseline) return true;  // the same code as neon there
#endif
  for (Level s : supported_levels())
    if (s == l) return true;
  return false;
}

Level best_level() { return supported_levels().back(); }

Level level() {
  static const Level l = choose();
  return l;
}

const char* level_name(Level l) {
  switch (l) {
    case Level::baseline:
      return "baseline";
    case Level::avx2:
      return "avx2";
    case Level::avx512:
      return "avx512";
    case Level::avx512vnni:
      return "avx512vnni";
    case Level::neon:
      return "neon";
    case Level::neon_dotprod:
      return "neon-dotprod";
  }
  return "?";
}

Level parse_level(const std::string& name) {
  for (Level l : {Level::baseline, Level::avx2, Level::avx512, Level::avx512vnni, Level::neon,
                  Level::neon_dotprod})
    if (name == level_name(l)) return l;
  fail("unknown kernel level '" + name +
       "' (SDPAL_ISA takes baseline, avx2, avx512, avx512vnni on x86-64; neon, neon-dotprod on "
       "aarch64)");
}

std::string portable_target_name() {
  level();  // applies the level's limit first
  // Lower bits are better targets: the best one compiled and allowed is the lowest set bit.
  const int64_t t = hwy::SupportedTargets() & HWY_TARGETS;
  return hwy::TargetName(t & -t);
}

std::string describe() {
  std::string s = "CPU: " + model_name() + "\nfeatures: " + feature_list() + "\nlevels: ";
  for (Level l : supported_levels()) s += std::string(level_name(l)) + (l == best_level() ? "" : " ");
  const char* env = std::getenv("SDPAL_ISA");
  s += "\nkernel level: " + std::string(level_name(level())) +
       (env && *env ? " (SDPAL_ISA)" : " (best for this CPU)") +
       "; portable kernels: Highway " + portable_target_name();
  return s;
}

}  // namespace sdpal::cpu
