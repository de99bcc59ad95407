#include "models/layers.h"

#include "core/error.h"
#include "kernels/gemm.h"
#include "kernels/int8_conv2d.h"
#include "kernels/int8_linear.h"
#include "kernels/norm.h"
#include "kernels/packed_gemm.h"

namespace sdpal {
namespace {

// y[M, out] += scale * (t[M, r] * up[out, r]^T) for each branch, t = down(x) computed by `down`.
template <class Down>
void add_branches(const LowRankBranches& branches, int64_t M, int64_t out, float* y, Down down) {
  for (const LowRankBranch& br : branches) {
    const int64_t r = br.up.shape()[1];
    SDPAL_CHECK(br.up.shape()[0] == out && br.down.shape()[0] == r,
                "LoRA branch: up " + shape_str(br.up.shape()) + " and down " +
                    shape_str(br.down.shape()) + " do not fit a layer with " + std::to_string(out) +
                    " outputs");
    const Tensor t = down(br);  // [M, r]
    const F32Data up = br.up.f32();
    k::sgemm(false, true, M, out, r, br.scale, t.data(), r, up.get(), r, 1.f, y, out);
  }
}

}  // namespace

void Linear::load(const WeightStore& ws, const std::string& path, int64_t in_, int64_t out_,
                  bool bias, bool conv1x1) {
  name = path;
  in = in_;
  out = out_;
  w = ws.param(join(path, "weight"), conv1x1 ? Shape{out, in, 1, 1} : Shape{out, in});
  if (bias) b = ws.param(join(path, "bias"), {out});
}

Tensor Linear::operator()(const Tensor& x) const {
  SDPAL_CHECK(x.dim(-1) == in,
              "linear: input " + shape_str(x.shape()) + " does not end in " + std::to_string(in));
  if (observer) observer->observe(*this, x, 2.0 * x.numel() * out);
  Tensor y = base(x);
  if (low_rank) {
    const int64_t M = x.numel() / in;
    add_branches(*low_rank, M, out, y.data(), [&](const LowRankBranch& br) {
      const int64_t r = br.down.shape()[0];
      SDPAL_CHECK(br.down.numel() == r * in, "LoRA down " + shape_str(br.down.shape()) +
                                                 " does not take " + std::to_string(in) +
                                                 " inputs (" + name + ")");
      return k::linear(x, br.down.f32().get(), nullptr, r);
    });
  }
  return y;
}

Tensor Linear::base(const Tensor& x) const {
  if (int8_) return (*int8_)(x);
  const F32Data bias = b.f32_or_null();
  if (w.compressed() && fused_lut && k::fused_linear_is_faster())  // expand into the packing
    return k::packed_linear(x, k::WeightSource::compressed(*w.compressed_view()), bias.get());
  return k::linear(x, w.f32().get(), bias.get(), out);
}

void Conv2d::load(const WeightStore& ws, const std::string& path, int64_t in_, int64_t out,
                  int kernel, int stride, int pad, bool bias) {
  name = path;
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
  if (observer) observer->observe(*this, x, k::conv2d_flops(x.shape(), p));
  Tensor y = base(x);
  if (low_rank) {
    const int64_t M = y.numel() / p.cout;
    add_branches(*low_rank, M, p.cout, y.data(), [&](const LowRankBranch& br) {
      const Shape& d = br.down.shape();
      SDPAL_CHECK(d.size() == 4 && d[1] == in, "LoRA down " + shape_str(d) + " does not take " +
                                                   std::to_string(in) + " input channels (" + name +
                                                   ")");
      k::Conv2dParams q = p;
      q.cout = d[0];
      q.kh = d[2];
      q.kw = d[3];
      if (q.kh != p.kh || q.kw != p.kw) q.pad_t = q.pad_l = q.pad_b = q.pad_r = int(q.kh / 2);
      return k::conv2d(x, br.down.f32().get(), nullptr, q);
    });
  }
  return y;
}

Tensor Conv2d::base(const Tensor& x) const {
  if (int8_) {
    const size_t prepared = int8_->weight_bytes();
    Tensor y = (*int8_)(x);
    // A new weight layout was made from the fp32 weight: the file's pages are not needed again
    // until the next one, so they need not stay resident.
    if (int8_->weight_bytes() != prepared) w.release_pages();
    return y;
  }
  const F32Data bias = b.f32_or_null();
  if (w.compressed() && fused_lut && k::fused_conv2d_is_faster(x.shape(), p))
    return k::packed_conv2d(x, k::WeightSource::compressed(*w.compressed_view()), bias.get(), p);
  return k::conv2d(x, w.f32().get(), bias.get(), p);
}

void Linear::enable_int8(const k::ActQuant& a) {
  int8_ = std::make_shared<const k::Int8Linear>(w.f32().get(), b.f32_or_null().get(), in, out, a);
  w.release_pages();  // the int8 copy is all the layer reads from now on
}

void Conv2d::enable_int8(const k::ActQuant& a) {
  // The source is asked again for new weight layouts (other image sizes): it holds a copy of the
  // Param, not `this`, which may move.
  const Param weight = w;
  auto source = [weight] {
    auto d = std::make_shared<const F32Data>(weight.f32());
    return std::shared_ptr<const float>(d, d->get());  // owns the expansion, if any
  };
  int8_ = std::make_shared<const k::Int8Conv2d>(source, b.f32_or_null().get(), in, p, a);
  w.release_pages();  // read again only for a new weight layout (see operator())
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
  return k::group_norm(x, groups, g.f32().get(), b.f32().get(), eps, silu);
}

void LayerNorm::load(const WeightStore& ws, const std::string& path, int64_t dim, float eps_) {
  eps = eps_;
  g = ws.param(join(path, "weight"), {dim});
  b = ws.param(join(path, "bias"), {dim});
}

Tensor LayerNorm::operator()(const Tensor& x) const {
  return k::layer_norm(x, g.f32().get(), b.f32().get(), eps);
}

}  // namespace sdpal
