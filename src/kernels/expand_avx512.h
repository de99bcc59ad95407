// Hand-written AVX-512 expansion kernels (expand_avx512.cpp), used by expand.cpp when
// cpu::use_avx512() says yes; x86 builds only. Same results as the portable kernels, bit for bit.
#pragma once
#include <cstdint>

namespace sdpal::avx512 {

// out[i] = lut[index(first + i)] for i < count; nbits 1, 2, 4 or 6; lut: 256 fp32 entries as
// expand.cpp prepares them (1- and 2-bit tables repeated over the first 16 entries).
void expand_palette_run(const uint8_t* packed, int nbits, int64_t first, int64_t count,
                        const float* lut, float* out);

}  // namespace sdpal::avx512
