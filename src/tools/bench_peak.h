// This CPU's arithmetic peaks at the active kernel level (core/cpu.h), measured with independent
// instruction chains on the benchmark's threads (best of 3 runs of ~50 ms each): what "% of peak"
// in `sdpal bench` refers to. Only instructions the level has are executed.
#pragma once
#include <string>

namespace sdpal {

// fp32 FLOP/s of the level's multiply-add (one FMA = 2 FLOP per lane), in GFLOP/s.
double measure_fma_peak(int threads);
// What measure_fma_peak runs, e.g. "fp32 FMA, AVX3 (16 lanes)" or "fp32 mul+add, SSE4 (4 lanes)".
std::string fma_peak_name();

// int8 multiply-add ops/s (u8 x s8 products, 2 ops each) of the level's int8 dot-product path, in
// GOP/s: VNNI vpdpbusd at avx512vnni, vpmaddubsw + vpmaddwd + vpaddd (as oneDNN's int8 kernels
// without VNNI) at avx512 (zmm), avx2 (ymm) and baseline (xmm); 0 where none is measured.
double measure_int8_peak(int threads);
// What measure_int8_peak runs, e.g. "int8 VNNI vpdpbusd (zmm)", or "n/a".
std::string int8_peak_name();

}  // namespace sdpal
