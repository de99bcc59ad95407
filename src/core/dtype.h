// Element types found in safetensors files and their conversions to fp32.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace sdpal {

enum class DType { F32, F16, BF16, F64, I8, U8, I16, I32, I64, BOOL };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // safetensors spelling: "F32", "F16", ...
// Parses a safetensors dtype string; returns false for unknown ones.
bool parse_dtype(const std::string& s, DType* out);

float half_to_float(uint16_t h);
uint16_t float_to_half(float f);  // round to nearest even
inline float bf16_to_float(uint16_t b) {
  union {
    uint32_t u;
    float f;
  } v{static_cast<uint32_t>(b) << 16};
  return v.f;
}
uint16_t float_to_bf16(float f);  // round to nearest even

// Converts n elements of type `t` at src into fp32 (vectorised for F16/BF16).
void convert_to_f32(DType t, const void* src, float* dst, size_t n);
// Converts n fp32 values into F16 (vectorised).
void convert_f32_to_f16(const float* src, uint16_t* dst, size_t n);

}  // namespace sdpal
