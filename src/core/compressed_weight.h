// Compressed weights: k-means palettization (a LUT per tensor or per group of output channels,
// plus packed n-bit indices) and linear 8-bit quantization (int8 per output channel).
//
// Conventions shared by the compressor, the file format and the runtime:
// - "Rows" are output channels: dim 0 of a Linear [out, in] or Conv [out, in, kh, kw] weight.
//   Each row holds numel / shape[0] consecutive elements (row-major).
// - Palette groups: group g covers rows [g * group_size, (g + 1) * group_size); group_size 0 means
//   one LUT for the whole tensor. LUT entries are fp16, `entries` per group (<= 2^nbits).
// - Index packing: element i's index occupies bits [i*nbits, (i+1)*nbits) of a little-endian
//   bit stream, least significant bit first (byte b holds stream bits 8b..8b+7, bit 0 = LSB).
//   So 4-bit: element 2j in the low nibble of byte j; 6-bit: 4 indices per 3 bytes.
// - Linear 8-bit: symmetric w = scale[row] * q (q int8); asymmetric w = scale[row] * (q -
// zero[row])
//   with q and zero uint8 (stored as U8). Scales are fp32.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace sdpal {

inline bool valid_palette_bits(int n) { return n == 1 || n == 2 || n == 4 || n == 6 || n == 8; }

// Owned results of compressing one tensor.
struct PalettizedWeight {
  Shape shape;                    // original shape
  DType orig_dtype = DType::F16;  // dtype of the uncompressed weight
  int nbits = 4;
  int64_t group_size = 0;        // output channels per LUT; 0 = per tensor
  int64_t entries = 0;           // LUT entries per group (<= 2^nbits)
  std::vector<uint16_t> lut;     // fp16 [groups, entries]
  std::vector<uint8_t> indices;  // packed, see above
  int64_t groups() const { return group_size ? shape[0] / group_size : 1; }
};

struct Linear8Weight {
  Shape shape;
  DType orig_dtype = DType::F16;
  bool symmetric = true;
  std::vector<uint8_t> q;     // int8 (symmetric) or uint8 (asymmetric) bytes, numel
  std::vector<float> scale;   // [rows]
  std::vector<uint8_t> zero;  // [rows], asymmetric only
};

// Non-owning view of a compressed weight (into a mapped file, or into the owned structs above).
// Expanding one to fp32: kernels/expand.h.
struct CompressedView {
  enum class Kind { Palette, Linear8 } kind = Kind::Palette;
  Shape shape;
  DType orig_dtype = DType::F16;
  // Palette
  int nbits = 0;
  int64_t group_size = 0, groups = 1, entries = 0;
  const uint16_t* lut = nullptr;
  const uint8_t* indices = nullptr;
  // Linear8
  bool symmetric = true;
  const uint8_t* q = nullptr;
  const float* scale = nullptr;
  const uint8_t* zero = nullptr;

  int64_t numel() const { return shape_numel(shape); }
  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  // Bytes this weight occupies in a file (LUT + indices, or q + scales + zeros).
  int64_t stored_bytes() const;
  static CompressedView of(const PalettizedWeight& w);
  static CompressedView of(const Linear8Weight& w);
};

}  // namespace sdpal
