// Quantisation for int8 (W8A8) compute: per-tensor asymmetric uint8 activations and
// per-output-channel symmetric int8 weights. The int8 convolution and linear kernels
// (int8_conv2d.h, int8_linear.h) use these, and so do their tests, which compare the kernels with
// fp32 arithmetic on exactly these quantised values.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace sdpal::k {

// q = clamp(round(x * inv_scale + zero_point), 0, 255) (round half to even); x ≈ (q - zp) * scale.
struct ActQuant {
  float scale = 1.f;
  int32_t zero_point = 0;
  // From a calibrated range, widened to contain 0 so that zero (e.g. convolution padding) is exact.
  static ActQuant from_range(float lo, float hi);
  float inv_scale() const { return 1.f / scale; }
  float dequant(uint8_t q) const { return static_cast<float>(q - zero_point) * scale; }
};

// x[n] -> q[n] as ActQuant describes (vectorised, parallel for large n; NaN maps to 0), the same
// bytes as the scalar definition at every kernel level.
void quantize_u8(const float* x, int64_t n, const ActQuant& a, uint8_t* q);
uint8_t quantize_u8(float x, const ActQuant& a);  // the scalar definition

// {min, max} of x[n], NaN ignored ({inf, -inf} if x holds no number): a calibration range.
std::pair<float, float> min_max(const float* x, int64_t n);

// Weights [rows, cols] row-major (rows = output channels), quantised per row symmetrically:
// w ≈ q * scale[row], q in [-qmax, qmax] (never -128, so that u8 x s8 products of VNNI's 4-term
// sums cannot overflow anywhere). An all-zero row gets scale 1.
struct Int8Weights {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> q;
  std::vector<float> scale;
};
Int8Weights quantize_weights_s8(const float* w, int64_t rows, int64_t cols, int qmax);
// With the level's int8_weight_max().
Int8Weights quantize_weights_s8(const float* w, int64_t rows, int64_t cols);

// The largest weight magnitude the int8 kernels of the active level compute exactly: 127 with
// VNNI (and oneDNN's int32 reference code on aarch64), 64 on x86 without it, where oneDNN adds
// u8 x s8 products pairwise into saturating int16 (vpmaddubsw: 2 * 255 * 64 still fits, 127
// does not). Weights are quantised at load time, so calibration files stay level-free.
int int8_weight_max();

// Reused per-thread buffer for quantised activations (valid until the next call on the thread).
uint8_t* u8_scratch(size_t n);

}  // namespace sdpal::k
