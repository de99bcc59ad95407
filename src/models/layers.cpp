#include "models/layers.h"

#include "core/error.h"
#include "kernels/gemm.h"
#include "kernels/norm.h"
#include "kernels/packed_gemm.h"

namespace sdpal {

void Linear::load(const WeightStore& ws, const std::string& path, int64_t in_, int64_t out_,
                  bool bias, bool conv1x1) {
  in = in_;
  out = out_;
  w = ws.param(join(path, "weight"), conv1x1 ? Shape{out, in, 1, 1} : Shape{out, in});
  if (bias) b = ws.param(join(path, "bias"), {out});
}

Tensor Linear::operator()(const Tensor& x) const {
  SDPAL_CHECK(x.dim(-1) == in,
              "linear: input " + shape_str(x.shape()) + " does not end in " + std::to_string(in));
  if (w.compressed() && k::fused_lut_enabled())  // expand into the GEMM's packing, no dense copy
    return k::packed_linear(x, k::WeightSource::compressed(*w.compressed_view()),
                            b.valid() ? b.f32() : nullptr);
  return k::linear(x, w.f32(), b.valid() ? b.f32() : nullptr, out);
}

void Conv2d::load(const WeightStore& ws, const std::string& path, int64_t in_, int64_t out,
                  int kernel, int stride, int pad, bool bias) {
  in = in_;
  if (pad < 0) pad = kernel / 2;
  p.cout = out;
  p.kh = p.kw = kernel;
  p.stride = stride;
  p.pad_t = p.pad_l = p.pad_b = p.pad_r = pad;
  w = ws.param(join(path, "weight"), {out, in, kernel, kernel});
  if (bias) b = ws.param(join(path, "bias"), {out});
}

Tensor Conv2d::operator()(const Tensor& x) const {
  SDPAL_CHECK(x.ndim() == 4 && x.dim(3) == in, "conv2d: input " + shape_str(x.shape()) +
                                                   " does not have " + std::to_string(in) +
                                                   " channels");
  const float* bias = b.valid() ? b.f32() : nullptr;  // small: never the scratch buffer
  if (w.compressed() && k::fused_lut_enabled() && p.kh == 1 && p.kw == 1)
    return k::packed_conv2d(x, k::WeightSource::compressed(*w.compressed_view()), bias, p);
  return k::conv2d(x, w.f32(), bias, p);
}

void GroupNorm::load(const WeightStore& ws, const std::string& path, int64_t channels_,
                     int64_t groups_, float eps_) {
  channels = channels_;
  groups = groups_;
  eps = eps_;
  SDPAL_CHECK(groups > 0 && channels % groups == 0,
              ws.label() + ": " + path + ": " + std::to_string(channels) +
                  " channels are not divisible into " + std::to_string(groups) + " groups");
  g = ws.param(join(path, "weight"), {channels});
  b = ws.param(join(path, "bias"), {channels});
}

Tensor GroupNorm::operator()(const Tensor& x, bool silu) const {
  return k::group_norm(x, groups, g.f32(), b.f32(), eps, silu);
}

void LayerNorm::load(const WeightStore& ws, const std::string& path, int64_t dim, float eps_) {
  eps = eps_;
  g = ws.param(join(path, "weight"), {dim});
  b = ws.param(join(path, "bias"), {dim});
}

Tensor LayerNorm::operator()(const Tensor& x) const {
  return k::layer_norm(x, g.f32(), b.f32(), eps);
}

}  // namespace sdpal
