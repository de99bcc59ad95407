// int8 (W8A8) calibration of a UNet: the range of every Linear/Conv2d input, measured over a few
// prompts and timesteps (`sdpal calibrate`), and which layers run int8. Stored as JSON beside the
// UNet weights (default_int8_calibration_path), layers in forward order:
//
//   {"format": "sdpal-int8-calibration/1",
//    "model": "<label>",
//    "settings": {"prompts": [...], "steps": 4, "width": 256, ...},   (what calibrate ran)
//    "layers": {"<module path>": {"min": -0.27, "max": 4.1, "int8": true, "gflops": 1.2}, ...}}
//
// min/max: the input's observed range; the activation quantisation is k::ActQuant::from_range of
// it. gflops: the layer's work per UNet call at the calibration size (for choosing what to run
// int8). "int8": false keeps a layer in fp32; `sdpal analyze --int8` chooses these by measured
// sensitivity.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/int8_quant.h"
#include "models/layers.h"

namespace sdpal {

class UNet;

inline constexpr const char* kInt8CalibrationFormat = "sdpal-int8-calibration/1";

struct LayerRange {
  std::string name;
  float min = 0.f, max = 0.f;
  bool int8 = true;
  double gflops = 0;
  k::ActQuant act() const { return k::ActQuant::from_range(min, max); }
};

struct Int8Calibration {
  std::string model;
  nlohmann::ordered_json settings = nlohmann::ordered_json::object();
  std::vector<LayerRange> layers;  // forward order

  const LayerRange* find(const std::string& name) const;
  LayerRange* find(const std::string& name);
  int64_t int8_count() const;

  nlohmann::ordered_json to_json() const;
  // Validates every key; errors start with `where` (a file name).
  static Int8Calibration from_json(const nlohmann::ordered_json& j, const std::string& where);
};

// Clear errors for a missing, unreadable or malformed file.
Int8Calibration read_int8_calibration(const std::string& path);
// Atomic (temp file renamed into place).
void write_int8_calibration(const std::string& path, const Int8Calibration& c);

// Where a model's calibration lives by default: <folder>/unet/sdpal_int8.json for a diffusers
// folder, <name>.sdpal_int8.json beside a single-file checkpoint <name>.safetensors.
std::string default_int8_calibration_path(const std::string& model_path);

// Enables int8 on the UNet layers that `c` marks int8 and disables it on the others. Throws,
// naming `where`, when the calibration's layers are not exactly the UNet's (another model).
// Returns the number of int8 layers.
int64_t apply_int8_calibration(UNet& unet, const Int8Calibration& c, const std::string& where);

// Records the range (and work) of every layer input it observes (WeightLayer::observer).
class RangeObserver : public InputObserver {
 public:
  void observe(const WeightLayer& layer, const Tensor& x, double flops) override;
  // The ranges in `order` (layers never observed are an error); flops are divided by `calls`
  // (UNet calls observed) and every layer is marked int8.
  std::vector<LayerRange> ranges(const std::vector<std::string>& order, int64_t calls) const;

 private:
  struct Acc {
    float min = 0.f, max = 0.f;
    double flops = 0;
    int64_t count = 0;
  };
  std::map<std::string, Acc> acc_;
};

}  // namespace sdpal
