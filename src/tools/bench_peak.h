// This CPU's arithmetic peaks, measured with independent AVX-512 instruction chains on the
// benchmark's threads (best of 3 runs of ~50 ms each): what "% of peak" in `sdpal bench` refers to.
#pragma once

namespace sdpal {

// fp32 FLOP/s of _mm512_fmadd_ps (one FMA = 2 FLOP per lane), in GFLOP/s.
double measure_fma_peak(int threads);
// int8 multiply-add ops/s of VNNI _mm512_dpbusd_epi32 (u8 x s8, 64 products + adds per
// instruction = 128 ops), in GOP/s: the ceiling of oneDNN's int8 convolutions on this CPU.
double measure_vnni_peak(int threads);

}  // namespace sdpal
