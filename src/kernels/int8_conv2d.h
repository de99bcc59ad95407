// W8A8 2-D convolution on NHWC activations: uint8 input (per tensor, asymmetric), int8 OIHW
// weights (per output channel, symmetric), oneDNN's int8 convolutions, fp32 output and bias.
// Padding is zero in real terms (the zero point in uint8), as in the fp32 convolution.
#pragma once
#include <functional>
#include <memory>
#include <optional>

#include "kernels/conv2d.h"
#include "kernels/int8_linear.h"
#include "kernels/int8_quant.h"

namespace sdpal::k {

class Int8Conv2d {
 public:
  // The fp32 OIHW weight [p.cout, cin, kh, kw]; asked for again only when an input size needs a
  // weight layout not prepared yet (oneDNN picks different kernels, with different layouts, for
  // small and large images), so that one quantised copy is held per layout in use and no other.
  // The returned pointer owns what it points to (e.g. an expansion of a compressed weight).
  using WeightSource = std::function<std::shared_ptr<const float>()>;
  // bias: [p.cout] or null (copied). Quantises the weight (for its scales) here; the layout for an
  // input size is made on its first call.
  Int8Conv2d(const WeightSource& w, const float* bias, int64_t cin, const Conv2dParams& p,
             const ActQuant& act);
  Tensor operator()(const Tensor& x) const;  // [N, H, W, cin] -> [N, Ho, Wo, cout]

  const ActQuant& act() const;
  const std::vector<float>& weight_scales() const;
  size_t weight_bytes() const;  // prepared layouts

 private:
  struct State;
  std::shared_ptr<State> s_;
};

}  // namespace sdpal::k
