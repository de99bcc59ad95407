// Brackets the code of an *_avx512.cpp file: every function defined between SDPAL_AVX512_BEGIN
// and SDPAL_AVX512_END (lambdas and OpenMP regions included, with GCC) is compiled for AVX-512,
// while the rest of the program, and every inline function of a header included before BEGIN,
// stays at the baseline. Such functions may run only after cpu::use_avx512() said yes.
//
// Include every library header (<vector>, core/tensor.h, ...) before SDPAL_AVX512_BEGIN: an
// inline function compiled inside the region would use AVX-512 instructions, and the linker may
// keep that copy for callers on any CPU.
#pragma once
#include <hwy/base.h>

#define SDPAL_AVX512_TARGETS "avx,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt,avx512f,avx512bw,avx512vl,avx512dq,avx512cd"
#define SDPAL_AVX512_BEGIN HWY_PUSH_ATTRIBUTES(SDPAL_AVX512_TARGETS)
#define SDPAL_AVX512_END HWY_POP_ATTRIBUTES
// With VNNI (vpdpbusd): only the VNNI functions themselves.
#define SDPAL_AVX512VNNI_ATTR __attribute__((target(SDPAL_AVX512_TARGETS ",avx512vnni")))
