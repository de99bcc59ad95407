// UNet weights for `sdpal bench` in a chosen representation, made in memory from the model's files
// (fp16 files to fp32, fp32 to fp16, or linear 8-bit / k-means palettized like `sdpal compress`),
// so several representations are timed side by side in one run without writing models.
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "core/compressed_weight.h"
#include "models/weights.h"

namespace sdpal {

// "as-is" (the files' own), "fp32", "fp16", "linear8", "palN" (N = 1, 2, 4, 6, 8 bits, one LUT
// per tensor) or "palNgG" (one LUT per G output channels).
struct WeightSpec {
  enum class Kind { AsIs, F32, F16, Linear8, Palette } kind = Kind::AsIs;
  int nbits = 0;
  int64_t group_size = 0;
  static WeightSpec parse(const std::string& s);  // throws with the accepted forms
  std::string str() const;
};

class BenchUNetWeights {
 public:
  // The UNet of a diffusers folder `model_dir`, converted to `spec`; layers are compressed as
  // `sdpal compress` picks them (Linear/Conv weights of more than `min_elements` elements).
  BenchUNetWeights(const std::string& model_dir, const WeightSpec& spec,
                   int64_t min_elements = 100000);
  const WeightStore& store() const { return *store_; }
  int64_t params() const { return params_; }
  int64_t weight_bytes() const { return bytes_; }  // resident weight bytes in this representation
  std::string description() const;

 private:
  std::unique_ptr<WeightStore> files_, store_;
  std::deque<std::vector<uint8_t>> converted_;
  std::deque<PalettizedWeight> palettes_;
  std::deque<Linear8Weight> linear8_;
  WeightSpec spec_;
  int64_t params_ = 0, bytes_ = 0;
};

}  // namespace sdpal
