// AVX-512 palette expansion: the fp32 LUT sits in one (<= 16 entries) or four (64 entries)
// registers and each block of 16 packed indices, widened to 32-bit lanes, selects its entries
// with in-register permutes. Kept beside the portable Highway kernel because it is faster there.
#include "kernels/expand_avx512.h"

#include <cstring>

#include "core/bitpack.h"
#include "core/target_avx512.h"

SDPAL_AVX512_BEGIN
#include <immintrin.h>

namespace sdpal::avx512 {

namespace {

// 16 indices starting at a byte-aligned position -> 16 lanes whose low nbits bits are the
// indices (the higher bits are don't-care: the permutes below read only the low bits).
template <int NBITS>
inline __m512i load_indices16(const uint8_t* p) {
  if constexpr (NBITS == 1 || NBITS == 2) {
    uint32_t bits = 0;
    std::memcpy(&bits, p, 2 * NBITS);
    const __m512i shifts =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32(NBITS));
    return _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(bits)), shifts);
  } else if constexpr (NBITS == 4) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    const __m512i dup = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));  // b0 b0 b1 b1 ...
    return _mm512_srlv_epi32(dup,
                             _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4));
  } else {
    static_assert(NBITS == 6);
    // 12 bytes (a masked load never touches the 4 after them); element e spans byte (6e)>>3
    // and the next one, shifted right by (6e)&7.
    const __m128i b = _mm_maskz_loadu_epi8(0x0fff, p);
    const __m256i both = _mm256_broadcastsi128_si256(b);
    const __m256i pairs = _mm256_shuffle_epi8(
        both, _mm256_setr_epi8(0, 1, 0, 1, 1, 2, 2, 3, 3, 4, 3, 4, 4, 5, 5, 6,  //
                               6, 7, 6, 7, 7, 8, 8, 9, 9, 10, 9, 10, 10, 11, 11, 12));
    return _mm512_srlv_epi32(_mm512_cvtepu16_epi32(pairs),
                             _mm512_setr_epi32(0, 6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2));
  }
}

// The LUT as registers: one for up to 16 entries, four for 64.
template <int NBITS>
struct LutRegs {
  static constexpr int kRegs = NBITS <= 4 ? 1 : 4;
  __m512 r[kRegs];
  explicit LutRegs(const float* lut) {
    for (int i = 0; i < kRegs; ++i) r[i] = _mm512_loadu_ps(lut + 16 * i);
  }
  __m512 lookup(__m512i idx) const {
    if constexpr (NBITS <= 4) {
      return _mm512_permutexvar_ps(idx, r[0]);
    } else {
      const __m512 lo = _mm512_permutex2var_ps(r[0], idx, r[1]);  // bit 4 picks the register
      const __m512 hi = _mm512_permutex2var_ps(r[2], idx, r[3]);
      return _mm512_mask_blend_ps(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(32)), lo, hi);
    }
  }
};

template <int NBITS>
void run(const uint8_t* packed, int64_t first, int64_t count, const float* lut, float* out) {
  int64_t i = 0;
  for (; i < count && (first + i) % 8 != 0; ++i)
    out[i] = lut[packed_index_at(packed, first + i, NBITS)];
  const LutRegs<NBITS> regs(lut);
  for (; i + 16 <= count; i += 16) {
    const __m512i idx = load_indices16<NBITS>(packed + (first + i) / 8 * NBITS);
    _mm512_storeu_ps(out + i, regs.lookup(idx));
  }
  for (; i < count; ++i) out[i] = lut[packed_index_at(packed, first + i, NBITS)];
}

}  // namespace

void expand_palette_run(const uint8_t* packed, int nbits, int64_t first, int64_t count,
                        const float* lut, float* out) {
  switch (nbits) {
    case 1:
      return run<1>(packed, first, count, lut, out);
    case 2:
      return run<2>(packed, first, count, lut, out);
    case 4:
      return run<4>(packed, first, count, lut, out);
    default:
      return run<6>(packed, first, count, lut, out);
  }
}

}  // namespace sdpal::avx512
SDPAL_AVX512_END
