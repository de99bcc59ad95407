#include "kernels/conv2d.h"

#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <vector>

#include "core/cpu.h"
#include "core/error.h"
#include "core/profile.h"
#include "kernels/dnnl_engine.h"
#include "kernels/gemm.h"
#include "kernels/packed_gemm.h"

namespace sdpal::k {

namespace {

// oneDNN's brgemm convolution on NHWC data, measured 1.2-1.9x faster than im2col + sgemm here.
// Primitives are cached per shape; the OIHW weight is reordered into oneDNN's blocked layout on
// every call (a pass over the weight, small next to the convolution itself), so the weights stay
// as the model file has them and nothing is duplicated in memory.
struct ConvPrimitive {
  dnnl::convolution_forward conv;
  dnnl::reorder weight_reorder;
  dnnl::memory::desc src, dst, weights_plain, weights_blocked, bias;
};

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, int,
                       int, int, bool>;

struct Dnnl {
  dnnl::engine eng = dnnl_cpu_engine();  // a handle to the shared engine
  dnnl::stream strm{eng};
  std::map<Key, ConvPrimitive> cache;
  std::vector<float> blocked_weights;
  std::mutex mu;
};

Dnnl& dnnl_state() {
  static Dnnl d;
  return d;
}

const ConvPrimitive& get_primitive(Dnnl& d, const Key& key, const Conv2dParams& p, int64_t N,
                                   int64_t H, int64_t W, int64_t Cin, int64_t Ho, int64_t Wo,
                                   bool has_bias) {
  auto it = d.cache.find(key);
  if (it != d.cache.end()) return it->second;
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  ConvPrimitive c;
  c.src = dnnl::memory::desc({N, Cin, H, W}, dt::f32, tag::nhwc);
  c.dst = dnnl::memory::desc({N, p.cout, Ho, Wo}, dt::f32, tag::nhwc);
  c.weights_plain = dnnl::memory::desc({p.cout, Cin, p.kh, p.kw}, dt::f32, tag::oihw);
  auto weights_any = dnnl::memory::desc({p.cout, Cin, p.kh, p.kw}, dt::f32, tag::any);
  c.bias = has_bias ? dnnl::memory::desc({p.cout}, dt::f32, tag::x) : dnnl::memory::desc();
  const dnnl::memory::dims strides{p.stride, p.stride}, pl{p.pad_t, p.pad_l}, pr{p.pad_b, p.pad_r};
  auto desc = has_bias
                  ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                    dnnl::algorithm::convolution_direct, c.src,
                                                    weights_any, c.bias, c.dst, strides, pl, pr)
                  : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                    dnnl::algorithm::convolution_direct, c.src,
                                                    weights_any, c.dst, strides, pl, pr);
  dnnl::convolution_forward::primitive_desc pd(desc, d.eng);
  c.weights_blocked = pd.weights_desc();
  c.conv = dnnl::convolution_forward(pd);
  c.weight_reorder = dnnl::reorder(dnnl::memory(c.weights_plain, d.eng, DNNL_MEMORY_NONE),
                                   dnnl::memory(c.weights_blocked, d.eng, DNNL_MEMORY_NONE));
  return d.cache.emplace(key, std::move(c)).first->second;
}

// Convolutions run oneDNN's JIT kernels, except where the packed implicit GEMM is faster: on
// aarch64 always (oneDNN's fp32 convolution there is reference-speed code), and on AVX2 for the
// large, narrow stride-1 layers (oneDNN's jit:avx2 measured 1.6x slower on the UNet's 64x64 x 320
// ones, ahead on the deeper ones).
bool packed_is_faster(int64_t Ho, int64_t Wo, int64_t cin, const Conv2dParams& p) {
  switch (cpu::level()) {
    case cpu::Level::neon:
    case cpu::Level::neon_dotprod:
      return true;
    case cpu::Level::avx2:
      return p.stride == 1 && Ho * Wo >= 4096 && cin <= 320 && p.cout <= 320;
    default:
      return false;
  }
}

}  // namespace

Tensor conv2d(const Tensor& x, const float* w, const float* bias, const Conv2dParams& p) {
  SDPAL_CHECK(x.ndim() == 4, "conv2d: input must be NHWC 4-D, got " + shape_str(x.shape()));
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), Cin = x.dim(3);
  const int64_t Ho = (H + p.pad_t + p.pad_b - p.kh) / p.stride + 1;
  const int64_t Wo = (W + p.pad_l + p.pad_r - p.kw) / p.stride + 1;
  SDPAL_CHECK(Ho > 0 && Wo > 0, "conv2d: output would be empty for input " + shape_str(x.shape()));
  if (packed_is_faster(Ho, Wo, Cin, p))
    return packed_conv2d(x, WeightSource::f32(w, p.cout, Cin * p.kh * p.kw), bias, p);
  Tensor y({N, Ho, Wo, p.cout});
  prof::OpScope scope(prof::Op::conv, conv2d_flops(x.shape(), p));
  if (p.kh == 1 && p.kw == 1 && p.stride == 1 && !p.pad_t && !p.pad_l && !p.pad_b && !p.pad_r) {
    // A 1x1 convolution on channel-last data is a GEMM with the weight used as it is.
    linear(x.data(), N * H * W, Cin, w, bias, p.cout, y.data());
    return y;
  }
  Dnnl& d = dnnl_state();
  std::lock_guard<std::mutex> lock(d.mu);
  const Key key{N,        H,       W,       Cin,     p.cout,  p.kh,           p.kw,
                p.stride, p.pad_t, p.pad_l, p.pad_b, p.pad_r, bias != nullptr};
  const ConvPrimitive& c = get_primitive(d, key, p, N, H, W, Cin, Ho, Wo, bias != nullptr);
  const size_t wn = c.weights_blocked.get_size() / sizeof(float);
  if (d.blocked_weights.size() < wn) d.blocked_weights.resize(wn);
  dnnl::memory wplain(c.weights_plain, d.eng, const_cast<float*>(w));
  dnnl::memory wblocked(c.weights_blocked, d.eng, d.blocked_weights.data());
  c.weight_reorder.execute(d.strm, wplain, wblocked);
  dnnl::memory src(c.src, d.eng, const_cast<float*>(x.data()));
  dnnl::memory dst(c.dst, d.eng, y.data());
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wblocked}, {DNNL_ARG_DST, dst}};
  if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(c.bias, d.eng, const_cast<float*>(bias)));
  c.conv.execute(d.strm, args);
  d.strm.wait();
  return y;
}

double conv2d_flops(const Shape& x, const Conv2dParams& p) {
  const int64_t Ho = (x[1] + p.pad_t + p.pad_b - p.kh) / p.stride + 1;
  const int64_t Wo = (x[2] + p.pad_l + p.pad_r - p.kw) / p.stride + 1;
  return 2.0 * x[0] * Ho * Wo * p.cout * x[3] * p.kh * p.kw;
}

}  // namespace sdpal::k
