// Building blocks shared by the model files: parameterised layers bound to a WeightStore by their
// diffusers/transformers module path (e.g. "down_blocks.0.resnets.1.conv1").
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/int8_quant.h"
#include "models/weights.h"

namespace sdpal::k {
class Int8Linear;
class Int8Conv2d;
}  // namespace sdpal::k

namespace sdpal {

// Joins module paths: join("a.b", "c") == "a.b.c"; an empty prefix yields the name alone.
inline std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

class InputObserver;

// A low-rank branch beside a layer's weight (LoRA, models/lora.h): y += scale * up(down(x)).
// down: [r, in] (Linear, or a 1x1 conv's [r, in, 1, 1]) or a convolution [r, in, kh, kw] run
// with the layer's stride and padding; up: [out, r] or [out, r, 1, 1]. The weight itself is
// untouched, whatever its form (fp16, palettized, linear 8-bit, int8 compute).
struct LowRankBranch {
  Param down, up;
  float scale = 1.f;                  // the LoRA's multiplier x alpha / rank
  std::shared_ptr<const void> owner;  // keeps the file that down/up point into alive
};
using LowRankBranches = std::vector<LowRankBranch>;

// What Linear and Conv2d share: their module path, how they run, and int8 (W8A8) compute on
// request. The settings belong to the layer (so to one model), never to the process.
struct WeightLayer {
  std::string name;  // module path, e.g. "down_blocks.0.resnets.1.conv1"
  // Compressed weights: expand them straight into the GEMM/convolution packing (no fp32 copy of
  // the layer; the default, where the kernel level runs that faster: k::fused_*_is_faster), or
  // expand the whole layer and run the dense kernel.
  bool fused_lut = true;
  // Calibration hook: while set, the layer reports its input before computing. Set it around
  // single-threaded model calls only (see ScopedInputObserver).
  InputObserver* observer = nullptr;
  // LoRA branches added to the output (null: none). Set on a per-generation copy of a model
  // (UNet/ClipTextModel are cheap to copy: weights are shared), never on a shared one.
  std::shared_ptr<const LowRankBranches> low_rank;
  virtual ~WeightLayer() = default;
  // From now on, quantise the input with `a` and compute in int8 with the weight quantised per
  // output channel (prepared here, or for convolutions on the first call of an image size).
  virtual void enable_int8(const k::ActQuant& a) = 0;
  virtual void disable_int8() = 0;
  virtual bool int8() const = 0;
};

// Calibration hook (WeightLayer::observer).
class InputObserver {
 public:
  virtual ~InputObserver() = default;
  // flops: of the layer's computation on x.
  virtual void observe(const WeightLayer& layer, const Tensor& x, double flops) = 0;
};

// Sets `o` as the observer of each of `layers` for the lifetime of the object.
class ScopedInputObserver {
 public:
  ScopedInputObserver(const std::vector<WeightLayer*>& layers, InputObserver* o) : layers_(layers) {
    for (WeightLayer* l : layers_) l->observer = o;
  }
  ~ScopedInputObserver() {
    for (WeightLayer* l : layers_) l->observer = nullptr;
  }
  ScopedInputObserver(const ScopedInputObserver&) = delete;
  ScopedInputObserver& operator=(const ScopedInputObserver&) = delete;

 private:
  std::vector<WeightLayer*> layers_;
};

struct Linear : WeightLayer {
  Param w, b;
  int64_t in = 0, out = 0;
  // conv1x1: the weight is a 1x1 convolution's [out, in, 1, 1] (identical on channel-last data)
  // instead of a Linear's [out, in].
  void load(const WeightStore& ws, const std::string& path, int64_t in, int64_t out,
            bool bias = true, bool conv1x1 = false);
  Tensor operator()(const Tensor& x) const;  // [..., in] -> [..., out]
  void enable_int8(const k::ActQuant& a) override;
  void disable_int8() override { int8_.reset(); }
  bool int8() const override { return int8_ != nullptr; }

 private:
  Tensor base(const Tensor& x) const;  // without the low-rank branches
  std::shared_ptr<const k::Int8Linear> int8_;
};

struct Conv2d : WeightLayer {
  Param w, b;
  k::Conv2dParams p;
  int64_t in = 0;
  void load(const WeightStore& ws, const std::string& path, int64_t in, int64_t out, int kernel,
            int stride = 1, int pad = -1, bool bias = true);  // pad -1: kernel/2
  Tensor operator()(const Tensor& x) const;                   // NHWC
  void enable_int8(const k::ActQuant& a) override;
  void disable_int8() override { int8_.reset(); }
  bool int8() const override { return int8_ != nullptr; }

 private:
  Tensor base(const Tensor& x) const;  // without the low-rank branches
  std::shared_ptr<const k::Int8Conv2d> int8_;
};

struct GroupNorm {
  Param g, b;
  int64_t groups = 32, channels = 0;
  float eps = 1e-5f;
  void load(const WeightStore& ws, const std::string& path, int64_t channels, int64_t groups,
            float eps);
  Tensor operator()(const Tensor& x, bool silu = false) const;  // channel-last
};

struct LayerNorm {
  Param g, b;
  float eps = 1e-5f;
  void load(const WeightStore& ws, const std::string& path, int64_t dim, float eps);
  Tensor operator()(const Tensor& x) const;
};

}  // namespace sdpal
