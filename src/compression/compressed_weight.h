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
// - Linear 8-bit: symmetric w = scale[row] * q (q int8); asymmetric w = scale[row] * (q - zero[row])
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
  int64_t group_size = 0;         // output channels per LUT; 0 = per tensor
  int64_t entries = 0;            // LUT entries per group (<= 2^nbits)
  std::vector<uint16_t> lut;      // fp16 [groups, entries]
  std::vector<uint8_t> indices;   // packed, see above
  int64_t groups() const { return group_size ? shape[0] / group_size : 1; }
};

struct Linear8Weight {
  Shape shape;
  DType orig_dtype = DType::F16;
  bool symmetric = true;
  std::vector<uint8_t> q;         // int8 (symmetric) or uint8 (asymmetric) bytes, numel
  std::vector<float> scale;       // [rows]
  std::vector<uint8_t> zero;      // [rows], asymmetric only
};

// Non-owning view of a compressed weight (into a mapped file, or into the owned structs above).
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

// Expands to fp32: out[i] = float(lut[group(i)][index(i)]) (bit-exact), or the linear-8 formula
// in fp32 with exactly this operation order: symmetric float(int8 q) * scale[row], asymmetric
// (float(q) - float(zero[row])) * scale[row] (one rounding: the multiply).
// Vectorised; `out` holds numel floats. Indices >= entries (a malformed file) read as 0.0f.
void expand(const CompressedView& w, float* out);
// Expands rows [row_begin, row_end) only (out holds (row_end-row_begin) * numel/rows floats).
void expand_rows(const CompressedView& w, int64_t row_begin, int64_t row_end, float* out);

// Expands arbitrary spans of one weight on the calling thread, bit-identical to expand(), keeping
// the current palette group's fp32 LUT between calls: for kernels that expand a weight piece by
// piece (a GEMM packing its weight panels) instead of all at once. Validates the view once.
class SpanExpander {
 public:
  explicit SpanExpander(const CompressedView& w);
  // out[i] = element e0 + i of the flat row-major weight, for i < e1 - e0.
  void operator()(int64_t e0, int64_t e1, float* out);

 private:
  CompressedView w_;
  int64_t group_elems_ = 0;
  int64_t group_ = -1;  // palette group whose LUT is in lut_
  alignas(64) float lut_[256];
};

}  // namespace sdpal
