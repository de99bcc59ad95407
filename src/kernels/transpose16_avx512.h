// The 16 x 16 in-register float transpose shared by the hand-written AVX-512 kernels
// (packed_gemm_avx512.cpp packs its panels with it, flash_attention_avx512.cpp its Q and output
// blocks).
//
// AVX-512-only header: include it only inside an SDPAL_AVX512_BEGIN ... SDPAL_AVX512_END region,
// after every library and standard header (docs/portability.md, "Hand-written AVX-512 kernels").
// Everything here has internal linkage (an anonymous namespace), so no copy of this AVX-512 code
// can be chosen by the linker for a caller on another CPU.
#pragma once
#include <immintrin.h>

namespace sdpal::k::avx512_transpose {
namespace {

// Full-mask forms of the shuffles: the unmasked intrinsics pass GCC 12 an "undefined" source that
// -Wuninitialized reports; with every lane selected the instruction is the same.
inline __m512 unpacklo(__m512 a, __m512 b) { return _mm512_mask_unpacklo_ps(a, 0xFFFF, a, b); }
inline __m512 unpackhi(__m512 a, __m512 b) { return _mm512_mask_unpackhi_ps(a, 0xFFFF, a, b); }
template <int Imm>
inline __m512 shuffle(__m512 a, __m512 b) {
  return _mm512_mask_shuffle_ps(a, 0xFFFF, a, b, Imm);
}
template <int Imm>
inline __m512 shuffle128(__m512 a, __m512 b) {
  return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, b, Imm);
}

// In-register transpose: on entry r[i] is row i of a 16x16 tile, on exit r[j] is its column j.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = unpacklo(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = unpackhi(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + c], 128-bit lane L: column 4L + c of rows 4g..4g+3.
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = shuffle<0x44>(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = shuffle<0xEE>(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = shuffle<0x44>(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = shuffle<0xEE>(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v = shuffle128<0x88>(u[c], u[4 + c]);
    const __m512 w = shuffle128<0xDD>(u[c], u[4 + c]);
    const __m512 v2 = shuffle128<0x88>(u[8 + c], u[12 + c]);
    const __m512 w2 = shuffle128<0xDD>(u[8 + c], u[12 + c]);
    r[c] = shuffle128<0x88>(v, v2);
    r[8 + c] = shuffle128<0xDD>(v, v2);
    r[4 + c] = shuffle128<0x88>(w, w2);
    r[12 + c] = shuffle128<0xDD>(w, w2);
  }
}

}  // namespace
}  // namespace sdpal::k::avx512_transpose
