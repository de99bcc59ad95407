// Expansion of compressed weights to fp32 (the definitions in expand.h). A palette
// group's LUT is converted to fp32 once (exactly) and held in registers; each step of packed
// indices is widened to 32-bit lanes that select LUT entries with in-register table lookups, so
// the results equal the scalar lookup bit for bit on every level. Portable Highway kernels here;
// the AVX-512 level runs the hand-written palette kernel of expand_avx512.cpp (faster there).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/expand.cpp"
#include "kernels/expand.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "core/bitpack.h"
#include "core/compressed_weight.h"
#include "core/cpu.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/parallel.h"
#include "kernels/expand_avx512.h"

// The scalar kernel, compiled once at the baseline (per-target copies would be auto-vectorised
// into gathers, slower than this loop).
#ifndef SDPAL_EXPAND_SCALAR_ONCE
#define SDPAL_EXPAND_SCALAR_ONCE
namespace sdpal::expand_scalar {

// The NBITS bytes at p as a little-endian number, by whole loads (a 6-byte memcpy into a word
// would be stored and reloaded: a store-forwarding stall per 8 indices).
template <int NBITS>
inline uint64_t load_le(const uint8_t* p) {
  if constexpr (NBITS == 1) {
    return p[0];
  } else if constexpr (NBITS == 2) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
  } else if constexpr (NBITS == 4) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  } else {
    uint32_t lo;
    uint16_t hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 2);
    return lo | static_cast<uint64_t>(hi) << 32;
  }
}

// Scalar: eight indices at a time from one little-endian word of NBITS bytes.
template <int NBITS>
void PaletteRun(const uint8_t* packed, int64_t first, int64_t count, const float* lut, float* out) {
  int64_t i = 0;
  for (; i < count && (first + i) % 8 != 0; ++i)
    out[i] = lut[packed_index_at(packed, first + i, NBITS)];
  constexpr uint64_t kMask = (1u << NBITS) - 1u;
  for (; i + 8 <= count; i += 8) {
    const uint64_t v = load_le<NBITS>(packed + (first + i) / 8 * NBITS);
    for (int t = 0; t < 8; ++t) out[i + t] = lut[(v >> (t * NBITS)) & kMask];
  }
  for (; i < count; ++i) out[i] = lut[packed_index_at(packed, first + i, NBITS)];
}

void palette_run(const uint8_t* packed, int nbits, int64_t first, int64_t count, const float* lut,
                 float* out) {
  switch (nbits) {
    case 1:
      return PaletteRun<1>(packed, first, count, lut, out);
    case 2:
      return PaletteRun<2>(packed, first, count, lut, out);
    case 4:
      return PaletteRun<4>(packed, first, count, lut, out);
    default:
      return PaletteRun<6>(packed, first, count, lut, out);
  }
}

}  // namespace sdpal::expand_scalar
#endif  // SDPAL_EXPAND_SCALAR_ONCE

HWY_BEFORE_NAMESPACE();
namespace sdpal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128

void ExpandPaletteRun(const uint8_t* packed, int nbits, int64_t first, int64_t count,
                      const float* lut, float* out) {
  expand_scalar::palette_run(packed, nbits, first, count, lut, out);
}

#else

// Steps of S = max(N, 8) indices (K = S / N vectors of N float lanes) starting at a multiple of
// 8 elements, so that every step starts on a byte boundary. Index l of a step lies in the byte
// pair starting at byte (l * NBITS) >> 3, at bit (l * NBITS) & 7.
template <int NBITS, size_t N>
struct IndexLayout {
  static constexpr size_t S = N > 8 ? N : 8;
  static constexpr size_t K = S / N;
  // Byte numbers of each index's pair (low byte first), for a byte shuffle.
  uint8_t pair[2 * S];
  // 2^(16 - shift - NBITS): moves the index's top bit to bit 15 of its 16-bit pair.
  uint16_t mul[S];
  constexpr IndexLayout() : pair(), mul() {
    for (size_t l = 0; l < S; ++l) {
      const size_t bit = l * NBITS;
      pair[2 * l] = static_cast<uint8_t>(bit >> 3);
      pair[2 * l + 1] = static_cast<uint8_t>((bit >> 3) + 1);
      mul[l] = static_cast<uint16_t>(1u << (16 - (bit & 7) - NBITS));
    }
  }
};

template <int NBITS>
void PaletteRun(const uint8_t* packed, int64_t first, int64_t count, const float* lut, float* out) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(du)> d16;
  const hn::Repartition<uint8_t, decltype(d16)> d8;
  constexpr size_t N = hn::MaxLanes(df);
  using Layout = IndexLayout<NBITS, N>;
  static constexpr Layout kLayout{};
  constexpr size_t S = Layout::S, K = Layout::K;
  // Bytes one step reads: a 16-byte block (repeated in every block of a wider vector), or the
  // whole vector when it is narrower.
  constexpr size_t kLoad = hn::MaxLanes(d8) < 16 ? hn::MaxLanes(d8) : 16;
  // Sub-tables of N entries: a 1- or 2-bit table fits in N lanes (it repeats with its period);
  // wider ones need 16 / N or 64 / N sub-tables, merged by a tree of selects on the index bits.
  constexpr size_t kEntries = NBITS <= 4 ? 16 : 64;
  constexpr size_t T = NBITS <= 2 ? 1 : kEntries / N;
  hn::Vec<decltype(df)> table[T];
  for (size_t t = 0; t < T; ++t) table[t] = hn::LoadU(df, lut + t * N);

  auto step = [&](const uint8_t* bytes, float* o) {
    const auto src = hn::LoadDup128(d8, bytes);
    for (size_t k = 0; k < K; ++k) {
      const auto pairs =
          hn::BitCast(d16, hn::TableLookupBytes(src, hn::LoadU(d8, kLayout.pair + 2 * N * k)));
      const auto idx16 =
          hn::ShiftRight<16 - NBITS>(hn::Mul(pairs, hn::LoadU(d16, kLayout.mul + N * k)));
      const auto idx = hn::PromoteTo(du, idx16);
      const auto lanes = hn::IndicesFromVec(df, hn::BitCast(di, hn::And(idx, hn::Set(du, N - 1))));
      hn::Vec<decltype(df)> v[T];
      for (size_t t = 0; t < T; ++t) v[t] = hn::TableLookupLanes(table[t], lanes);
      for (size_t width = 1; width < T; width *= 2) {
        const auto upper = hn::RebindMask(df, hn::TestBit(idx, hn::Set(du, N * width)));
        for (size_t t = 0; t + width < T; t += 2 * width)
          v[t] = hn::IfThenElse(upper, v[t + width], v[t]);
      }
      hn::StoreU(v[0], df, o + k * N);
    }
  };

  int64_t i = 0;
  for (; i < count && (first + i) % 8 != 0; ++i)
    out[i] = lut[packed_index_at(packed, first + i, NBITS)];
  const int64_t end_byte = ((first + count) * NBITS + 7) / 8;
  for (; i + static_cast<int64_t>(S) <= count; i += S) {
    const int64_t b = (first + i) / 8 * NBITS;
    if (b + static_cast<int64_t>(kLoad) > end_byte) break;
    step(packed + b, out + i);
  }
  // The last steps read their bytes from a zero-padded copy, never past the run's bytes.
  while (i < count) {
    const int64_t m = std::min<int64_t>(S, count - i), b = (first + i) / 8 * NBITS;
    alignas(16) uint8_t bytes[16] = {};
    std::memcpy(bytes, packed + b, static_cast<size_t>(((first + i + m) * NBITS + 7) / 8 - b));
    alignas(64) float vals[S];
    step(bytes, vals);
    std::memcpy(out + i, vals, static_cast<size_t>(m) * sizeof(float));
    i += m;
  }
}

void ExpandPaletteRun(const uint8_t* packed, int nbits, int64_t first, int64_t count,
                      const float* lut, float* out) {
  // Below 8 lanes (SSE4, NEON), or for 64 entries below 16 lanes (AVX2), the sub-table
  // selects cost more than they save: the scalar loop measured faster on Zen 4 (SSE4 4-bit
  // 7.8 vs 1.3 GB/s, AVX2 6-bit 3 vs 2 GB/s, in cache, one thread).
  constexpr size_t N = hn::MaxLanes(hn::ScalableTag<float>());
  if (N < 8 || (nbits == 6 && N < 16))
    return expand_scalar::palette_run(packed, nbits, first, count, lut, out);
  switch (nbits) {
    case 1:
      return PaletteRun<1>(packed, first, count, lut, out);
    case 2:
      return PaletteRun<2>(packed, first, count, lut, out);
    case 4:
      return PaletteRun<4>(packed, first, count, lut, out);
    default:
      return PaletteRun<6>(packed, first, count, lut, out);
  }
}

#endif

// out[i] = float(int8 q[i]) * scale, or (float(q[i]) - float(zero)) * scale: float(q) - float(zero)
// == float(q - zero) exactly (small integers), so either way the multiply is the one rounding.
void ExpandLinear8Run(const uint8_t* q, int64_t len, float scale, int32_t zero, bool symmetric,
                      float* out) {
  int64_t i = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::Rebind<int8_t, decltype(di)> di8;
  const hn::Rebind<uint8_t, decltype(du)> du8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto vscale = hn::Set(df, scale);
  if (symmetric) {
    const int8_t* s = reinterpret_cast<const int8_t*>(q);
    for (; i + N <= len; i += N)
      hn::StoreU(hn::Mul(hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(di8, s + i))), vscale), df,
                 out + i);
  } else {
    const auto vzero = hn::Set(di, zero);
    for (; i + N <= len; i += N) {
      const auto v = hn::Sub(hn::BitCast(di, hn::PromoteTo(du, hn::LoadU(du8, q + i))), vzero);
      hn::StoreU(hn::Mul(hn::ConvertTo(df, v), vscale), df, out + i);
    }
  }
#endif
  for (; i < len; ++i) {
    const int32_t v = symmetric ? static_cast<int8_t>(q[i]) : static_cast<int32_t>(q[i]) - zero;
    out[i] = static_cast<float>(v) * scale;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace sdpal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace sdpal {

HWY_EXPORT(ExpandPaletteRun);
HWY_EXPORT(ExpandLinear8Run);

namespace {

// One group's LUT in fp32 (v: 256 floats), zero-padded to 256 entries (indices >= entries read
// 0; a file loader should reject them); the kernels below hold it in registers.
void load_float_lut(const uint16_t* lut16, int64_t entries, int nbits, float* v) {
  std::fill(v, v + 256, 0.f);
  for (int64_t j = 0; j < entries; ++j) v[j] = half_to_float(lut16[j]);
  // 1- and 2-bit: repeat the table across 16 lanes so a permute may ignore the higher bits.
  const int n = 1 << nbits;
  if (n < 16)
    for (int j = n; j < 16; ++j) v[j] = v[j % n];
}

// out[i] = lut[index(first + i)] for i < count, on the active level's kernel.
void expand_palette_run(const uint8_t* packed, int nbits, int64_t first, int64_t count,
                        const float* lut, float* out) {
  if (nbits == 8) {
    // 256 entries: a plain table lookup per element measured faster (Zen 5: 16 GB/s on one
    // core) than an AVX-512 gather (12.7 GB/s) or a tree of 8 permutex2var + 7 blends (7 GB/s).
    const uint8_t* q = packed + first;
    for (int64_t i = 0; i < count; ++i) out[i] = lut[q[i]];
    return;
  }
#if HWY_ARCH_X86
  if (cpu::use_avx512()) return avx512::expand_palette_run(packed, nbits, first, count, lut, out);
#endif
  SDPAL_DISPATCH(ExpandPaletteRun)(packed, nbits, first, count, lut, out);
}

// Expands elements [e0, e1) of one palette group whose fp32 LUT is `lut`.
void expand_palette_group_span(const CompressedView& w, int64_t e0, int64_t e1, const float* lut,
                               float* out) {
  expand_palette_run(w.indices, w.nbits, e0, e1 - e0, lut, out);
}

int64_t palette_group_elems(const CompressedView& w) {
  return w.group_size ? w.group_size * (w.numel() / w.rows()) : w.numel();
}

void expand_palette_range(const CompressedView& w, int64_t e0, int64_t e1, float* out) {
  const int64_t group_elems = palette_group_elems(w);
  alignas(64) float lut[256];
  for (int64_t e = e0; e < e1;) {
    const int64_t g = e / group_elems, end = std::min(e1, (g + 1) * group_elems);
    load_float_lut(w.lut + g * w.entries, w.entries, w.nbits, lut);
    expand_palette_group_span(w, e, end, lut, out + (e - e0));
    e = end;
  }
}

void expand_linear8_range(const CompressedView& w, int64_t e0, int64_t e1, float* out) {
  const int64_t row_len = w.numel() / w.rows();
  for (int64_t e = e0; e < e1;) {
    const int64_t r = e / row_len, end = std::min(e1, (r + 1) * row_len);
    SDPAL_DISPATCH(ExpandLinear8Run)
    (w.q + e, end - e, w.scale[r], w.symmetric ? 0 : w.zero[r], w.symmetric, out + (e - e0));
    e = end;
  }
}

void expand_range(const CompressedView& w, int64_t e0, int64_t e1, float* out) {
  if (e0 >= e1) return;
  if (w.kind == CompressedView::Kind::Palette)
    expand_palette_range(w, e0, e1, out);
  else
    expand_linear8_range(w, e0, e1, out);
}

void check_view(const CompressedView& w) {
  SDPAL_CHECK(w.rows() > 0 && w.numel() % w.rows() == 0,
              "expand: bad compressed weight shape " + shape_str(w.shape));
  if (w.kind == CompressedView::Kind::Palette) {
    SDPAL_CHECK(valid_palette_bits(w.nbits),
                "expand: unsupported palette width " + std::to_string(w.nbits) + " bits");
    SDPAL_CHECK(w.entries >= 1 && w.entries <= (int64_t(1) << w.nbits),
                "expand: " + std::to_string(w.entries) + " LUT entries for " +
                    std::to_string(w.nbits) + "-bit indices");
    SDPAL_CHECK(w.group_size == 0 || (w.group_size > 0 && w.rows() % w.group_size == 0),
                "expand: group size " + std::to_string(w.group_size) + " does not divide " +
                    std::to_string(w.rows()) + " rows");
    SDPAL_CHECK(w.lut && w.indices, "expand: palette weight without LUT or indices");
  } else {
    SDPAL_CHECK(w.q && w.scale && (w.symmetric || w.zero),
                "expand: linear 8-bit weight without data, scales or zero points");
  }
}

}  // namespace

void expand_rows(const CompressedView& w, int64_t row_begin, int64_t row_end, float* out) {
  check_view(w);
  SDPAL_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= w.rows(),
              "expand_rows: rows [" + std::to_string(row_begin) + ", " + std::to_string(row_end) +
                  ") out of range for " + shape_str(w.shape));
  const int64_t row_len = w.numel() / w.rows();
  const int64_t e0 = row_begin * row_len, e1 = row_end * row_len, total = e1 - e0;
  if (total < kParallelGrain) {
    expand_range(w, e0, e1, out);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    // Split at absolute multiples of 64 elements so every chunk starts byte-aligned.
    auto bound = [&](int64_t k) {
      if (k == nt) return e1;
      return std::clamp((e0 + total * k / nt) / 64 * 64, e0, e1);
    };
    const int64_t b = bound(t), e = bound(t + 1);
    expand_range(w, b, e, out + (b - e0));
  }
}

void expand(const CompressedView& w, float* out) { expand_rows(w, 0, w.rows(), out); }

SpanExpander::SpanExpander(const CompressedView& w) : w_(w) {
  check_view(w);
  if (w.kind == CompressedView::Kind::Palette) group_elems_ = palette_group_elems(w);
}

void SpanExpander::operator()(int64_t e0, int64_t e1, float* out) {
  if (e0 >= e1) return;
  if (w_.kind != CompressedView::Kind::Palette) {
    expand_linear8_range(w_, e0, e1, out);
    return;
  }
  for (int64_t e = e0; e < e1;) {
    const int64_t g = e / group_elems_, end = std::min(e1, (g + 1) * group_elems_);
    if (g != group_) {
      load_float_lut(w_.lut + g * w_.entries, w_.entries, w_.nbits, lut_);
      group_ = g;
    }
    expand_palette_group_span(w_, e, end, lut_, out + (e - e0));
    e = end;
  }
}

}  // namespace sdpal
#endif  // HWY_ONCE
