// Building blocks shared by the model files: parameterised layers bound to a WeightStore by their
// diffusers/transformers module path (e.g. "down_blocks.0.resnets.1.conv1").
#pragma once
#include <string>

#include "kernels/conv2d.h"
#include "models/weights.h"

namespace sdpal {

// Joins module paths: join("a.b", "c") == "a.b.c"; an empty prefix yields the name alone.
inline std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

struct Linear {
  Param w, b;
  int64_t in = 0, out = 0;
  // conv1x1: the weight is a 1x1 convolution's [out, in, 1, 1] (identical on channel-last data)
  // instead of a Linear's [out, in].
  void load(const WeightStore& ws, const std::string& path, int64_t in, int64_t out,
            bool bias = true, bool conv1x1 = false);
  Tensor operator()(const Tensor& x) const;  // [..., in] -> [..., out]
};

struct Conv2d {
  Param w, b;
  k::Conv2dParams p;
  int64_t in = 0;
  void load(const WeightStore& ws, const std::string& path, int64_t in, int64_t out, int kernel,
            int stride = 1, int pad = -1, bool bias = true);  // pad -1: kernel/2
  Tensor operator()(const Tensor& x) const;                   // NHWC
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
