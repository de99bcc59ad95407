// Element types and their conversions. The fp16/bf16 array conversions are Highway kernels
// (F16C on AVX2/AVX-512, FCVT on NEON), dispatched at run time; targets without hardware
// conversion (SSE4, scalar) use the exact scalar definitions below, since Highway 1.0.3's
// emulation there turns inf/NaN into finite numbers.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "core/dtype.cpp"
#include "core/dtype.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstring>

#include "core/dispatch.h"
#include "core/error.h"

#ifndef SDPAL_DTYPE_SCALAR_ONCE
#define SDPAL_DTYPE_SCALAR_ONCE
namespace sdpal {

// IEEE binary16 <-> binary32, exact (subnormals, inf, NaN payload kept; round to nearest even).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);  // inf / NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      man <<= 1;
    } while (!(man & 0x400u));
    u = sign | (static_cast<uint32_t>(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u)  // NaN: quiet, payload's top bits kept
    return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf, or is inf
  if (a < 0x38800000u) {                // below the smallest normal half: subnormal or zero
    if (a <= 0x33000000u) return sign;  // at most half the smallest subnormal: ties to even (0)
    const uint32_t man = (a & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(a >> 23);  // 14..24
    uint32_t r = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = a - 0x38000000u;  // rebias the exponent (127 -> 15)
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<uint16_t>(sign | (r >> 13));
}

}  // namespace sdpal
#endif  // SDPAL_DTYPE_SCALAR_ONCE

HWY_BEFORE_NAMESPACE();
namespace sdpal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Hardware fp16 conversion exists on these targets; elsewhere the scalar definitions run.
#undef SDPAL_HW_F16
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_NEON
#define SDPAL_HW_F16 1
#else
#define SDPAL_HW_F16 0
#endif

void F16ToF32(const uint16_t* s, float* dst, size_t n) {
  size_t i = 0;
#if SDPAL_HW_F16
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const hn::Rebind<uint16_t, decltype(df)> du;
  const size_t N = hn::Lanes(df);
  // Loaded as u16 and bit-cast: reading uint16_t storage through float16_t* is undefined.
  for (; i + N <= n; i += N)
    hn::StoreU(hn::PromoteTo(df, hn::BitCast(dh, hn::LoadU(du, s + i))), df, dst + i);
#endif
  for (; i < n; ++i) dst[i] = half_to_float(s[i]);
}

void F32ToF16(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
#if SDPAL_HW_F16
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const hn::Rebind<uint16_t, decltype(df)> du;
  const size_t N = hn::Lanes(df);
  for (; i + N <= n; i += N)
    hn::StoreU(hn::BitCast(du, hn::DemoteTo(dh, hn::LoadU(df, src + i))), du, dst + i);
#endif
  for (; i < n; ++i) dst[i] = float_to_half(src[i]);
}

void BF16ToF32(const uint16_t* s, float* dst, size_t n) {
  const hn::ScalableTag<uint32_t> d32;
  const hn::Rebind<uint16_t, decltype(d32)> d16;
  const hn::Rebind<float, decltype(d32)> df;
  const size_t N = hn::Lanes(d32);
  size_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(d32, hn::LoadU(d16, s + i)))), df,
               dst + i);
  for (; i < n; ++i) dst[i] = bf16_to_float(s[i]);
}

}  // namespace HWY_NAMESPACE
}  // namespace sdpal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace sdpal {

HWY_EXPORT(F16ToF32);
HWY_EXPORT(F32ToF16);
HWY_EXPORT(BF16ToF32);

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::F16:
    case DType::BF16:
    case DType::I16:
      return 2;
    case DType::F64:
    case DType::I64:
      return 8;
    case DType::I8:
    case DType::U8:
    case DType::BOOL:
      return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::F64:
      return "F64";
    case DType::I8:
      return "I8";
    case DType::U8:
      return "U8";
    case DType::I16:
      return "I16";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::BOOL:
      return "BOOL";
  }
  return "?";
}

bool parse_dtype(const std::string& s, DType* out) {
  static const struct {
    const char* n;
    DType t;
  } kTable[] = {{"F32", DType::F32},  {"F16", DType::F16}, {"BF16", DType::BF16},
                {"F64", DType::F64},  {"I8", DType::I8},   {"U8", DType::U8},
                {"I16", DType::I16},  {"I32", DType::I32}, {"I64", DType::I64},
                {"BOOL", DType::BOOL}};
  for (const auto& e : kTable)
    if (s == e.n) {
      *out = e.t;
      return true;
    }
  return false;
}

uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

namespace {
// Element i of an array of T at p, which need not be aligned for T (a safetensors file whose
// header length is not a multiple of 8 puts every tensor at an odd address).
template <class T>
T load_unaligned(const void* p, size_t i) {
  T v;
  std::memcpy(&v, static_cast<const uint8_t*>(p) + i * sizeof(T), sizeof(T));
  return v;
}
}  // namespace

void convert_to_f32(DType t, const void* src, float* dst, size_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::F16:
    case DType::BF16: {
      // The vector kernels load unaligned; an odd address is read through an aligned copy so
      // that their scalar tails (uint16_t loads) stay defined.
      const bool f16 = t == DType::F16;
      if (reinterpret_cast<uintptr_t>(src) % alignof(uint16_t) == 0) {
        if (f16)
          SDPAL_DISPATCH(F16ToF32)(static_cast<const uint16_t*>(src), dst, n);
        else
          SDPAL_DISPATCH(BF16ToF32)(static_cast<const uint16_t*>(src), dst, n);
        return;
      }
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = load_unaligned<uint16_t>(src, i);
        dst[i] = f16 ? half_to_float(h) : bf16_to_float(h);
      }
      return;
    }
    case DType::F64:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_unaligned<double>(src, i));
      return;
    case DType::I64:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_unaligned<int64_t>(src, i));
      return;
    case DType::I32:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load_unaligned<int32_t>(src, i));
      return;
    case DType::I16:
      for (size_t i = 0; i < n; ++i) dst[i] = load_unaligned<int16_t>(src, i);
      return;
    case DType::BOOL: {
      const uint8_t* s = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = s[i] ? 1.f : 0.f;
      return;
    }
    case DType::U8: {
      const uint8_t* s = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = s[i];
      return;
    }
    case DType::I8: {
      const int8_t* s = static_cast<const int8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = s[i];
      return;
    }
  }
}

void convert_f32_to_f16(const float* src, uint16_t* dst, size_t n) {
  SDPAL_DISPATCH(F32ToF16)(src, dst, n);
}

}  // namespace sdpal
#endif  // HWY_ONCE
