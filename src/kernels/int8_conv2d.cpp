#include "kernels/int8_conv2d.h"

#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/profile.h"
#include "kernels/dnnl_engine.h"

namespace sdpal::k {

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

bool is_pointwise(const Conv2dParams& p) {
  return p.kh == 1 && p.kw == 1 && p.stride == 1 && !p.pad_t && !p.pad_l && !p.pad_b && !p.pad_r;
}

}  // namespace

// A 1x1 convolution on channel-last data is a matmul (Int8Linear). Otherwise oneDNN's int8
// convolution: brgemm or direct JIT kernels, chosen per input size, each with its weight layout.
// Output scales are fixed at primitive creation, so primitives are per layer and input size.
//
// The zero point is not given to oneDNN: its src zero points gave wrong results for some shapes
// in oneDNN 2.6.3 (brgemm, >= ~1700 input channels, e.g. SD 1.5's up-block convolutions). Instead
// the uint8 input is convolved as it is, padded with 0, and
//   Σ_valid w (q - zp) = Σ_valid w q - zp Σ_all w + zp Σ_padded w:
// zp Σ_all w is folded into the bias, and the last term, non-zero only where the window overlaps
// the padding, is added to those border outputs afterwards from per-tap weight sums.
struct Int8Conv2d::State {
  WeightSource source;
  int64_t cin = 0;
  Conv2dParams p;
  ActQuant act;
  std::vector<float> wscale, oscale, bias;  // bias: accumulator units, minus zp Σ w
  std::vector<float> tap_fix;  // [kh*kw][cout]: oscale * zp * Σ_ic w of each kernel tap
  std::optional<Int8Linear> pointwise;

  struct Layout {
    dnnl::memory::desc desc;
    dnnl::memory weights;
  };
  struct Prim {
    dnnl::convolution_forward conv;
    dnnl::memory::desc scratchpad;
    size_t layout = 0;
  };
  std::mutex mu;
  std::vector<Layout> layouts;
  std::map<std::tuple<int64_t, int64_t, int64_t>, Prim> prims;  // (N, H, W)

  const Prim& primitive(int64_t N, int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
    const auto key = std::make_tuple(N, H, W);
    auto it = prims.find(key);
    if (it != prims.end()) return it->second;
    dnnl::primitive_attr attr = user_scratchpad_attr();
    attr.set_output_scales(1 << 1, oscale);
    const dnnl::memory::desc src({N, cin, H, W}, dt::u8, tag::nhwc);
    const dnnl::memory::desc dst({N, p.cout, Ho, Wo}, dt::f32, tag::nhwc);
    const dnnl::memory::desc wany({p.cout, cin, p.kh, p.kw}, dt::s8, tag::any);
    const dnnl::memory::desc b({p.cout}, dt::f32, tag::x);
    const dnnl::memory::dims strides{p.stride, p.stride}, pl{p.pad_t, p.pad_l},
        pr{p.pad_b, p.pad_r};
    const dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference,
                                               dnnl::algorithm::convolution_direct, src, wany, b,
                                               dst, strides, pl, pr);
    dnnl::convolution_forward::primitive_desc pd(desc, attr, dnnl_cpu_engine());
    Prim prim{dnnl::convolution_forward(pd), pd.scratchpad_desc(), layouts.size()};
    for (size_t i = 0; i < layouts.size(); ++i)
      if (layouts[i].desc == pd.weights_desc()) prim.layout = i;
    if (prim.layout == layouts.size()) add_layout(pd.weights_desc());
    return prims.emplace(key, std::move(prim)).first->second;
  }

  void add_layout(const dnnl::memory::desc& desc) {
    const std::shared_ptr<const float> w = source();
    SDPAL_CHECK(w, "int8 conv2d: the weight source returned no data");
    Int8Weights q = quantize_weights_s8(w.get(), p.cout, cin * p.kh * p.kw);
    Layout l{desc, dnnl::memory(desc, dnnl_cpu_engine())};
    dnnl::memory plain({{p.cout, cin, p.kh, p.kw}, dt::s8, tag::oihw}, dnnl_cpu_engine(),
                       q.q.data());
    reorder(plain, l.weights);
    layouts.push_back(std::move(l));
  }

  // Adds oscale * zp * Σ_padded-taps w to the outputs whose window overlaps the padding.
  void fix_borders(float* y, int64_t N, int64_t H, int64_t W, int64_t Ho, int64_t Wo) const {
    if (act.zero_point == 0) return;
    auto padded = [](int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t size) {
      const int64_t i0 = o * stride - pad;
      return i0 < 0 || i0 + k > size;
    };
    std::vector<int64_t> border;  // output pixels (oy * Wo + ox) whose window leaves the image
    for (int64_t oy = 0; oy < Ho; ++oy) {
      const bool row = padded(oy, p.stride, p.pad_t, p.kh, H);
      for (int64_t ox = 0; ox < Wo; ++ox)
        if (row || padded(ox, p.stride, p.pad_l, p.kw, W)) border.push_back(oy * Wo + ox);
    }
    const int64_t C = p.cout, nb = static_cast<int64_t>(border.size());
#pragma omp parallel for collapse(2) if (N * nb * C > 65536)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t oy = border[b] / Wo, ox = border[b] % Wo;
        float* out = y + (n * Ho * Wo + border[b]) * C;
        for (int64_t ky = 0; ky < p.kh; ++ky) {
          const int64_t iy = oy * p.stride - p.pad_t + ky;
          for (int64_t kx = 0; kx < p.kw; ++kx) {
            const int64_t ix = ox * p.stride - p.pad_l + kx;
            if (iy >= 0 && iy < H && ix >= 0 && ix < W) continue;
            const float* fix = tap_fix.data() + (ky * p.kw + kx) * C;
            for (int64_t c = 0; c < C; ++c) out[c] += fix[c];
          }
        }
      }
  }
};

Int8Conv2d::Int8Conv2d(const WeightSource& w, const float* bias, int64_t cin, const Conv2dParams& p,
                       const ActQuant& act)
    : s_(std::make_shared<State>()) {
  SDPAL_CHECK(cin > 0 && p.cout > 0 && p.kh > 0 && p.kw > 0 && p.stride > 0,
              "int8 conv2d: empty weight or bad parameters");
  State& s = *s_;
  s.cin = cin;
  s.p = p;
  s.act = act;
  const std::shared_ptr<const float> wdata = w();
  SDPAL_CHECK(wdata, "int8 conv2d: the weight source returned no data");
  const float* wf = wdata.get();
  if (is_pointwise(p)) {
    s.pointwise.emplace(wf, bias, cin, p.cout, act);  // OIHW 1x1 is [out, in]
    s.wscale = s.pointwise->weight_scales();
    return;
  }
  s.source = w;
  const int64_t taps = p.kh * p.kw;
  const Int8Weights q = quantize_weights_s8(wf, p.cout, cin * taps);
  s.wscale = q.scale;
  s.oscale.resize(p.cout);
  s.bias.resize(p.cout);
  s.tap_fix.resize(taps * p.cout);
  const double zp = act.zero_point;
  for (int64_t o = 0; o < p.cout; ++o) {
    s.oscale[o] = act.scale * q.scale[o];
    int64_t total = 0;
    for (int64_t t = 0; t < taps; ++t) {
      int64_t sum = 0;
      for (int64_t c = 0; c < cin; ++c) sum += q.q[(o * cin + c) * taps + t];
      s.tap_fix[t * p.cout + o] = static_cast<float>(s.oscale[o] * zp * sum);
      total += sum;
    }
    // oneDNN 2.x applies the bias before the output scales: dst = oscale * (acc + bias).
    const double b = bias ? static_cast<double>(bias[o]) / s.oscale[o] : 0.0;
    s.bias[o] = static_cast<float>(b - zp * total);
  }
}

Tensor Int8Conv2d::operator()(const Tensor& x) const {
  State& s = *s_;
  SDPAL_CHECK(x.ndim() == 4 && x.dim(3) == s.cin, "int8 conv2d: input " + shape_str(x.shape()) +
                                                      " is not NHWC with " + std::to_string(s.cin) +
                                                      " channels");
  const Conv2dParams& p = s.p;
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2);
  const int64_t Ho = (H + p.pad_t + p.pad_b - p.kh) / p.stride + 1;
  const int64_t Wo = (W + p.pad_l + p.pad_r - p.kw) / p.stride + 1;
  SDPAL_CHECK(Ho > 0 && Wo > 0,
              "int8 conv2d: output would be empty for input " + shape_str(x.shape()));
  Tensor y({N, Ho, Wo, p.cout});
  prof::OpScope scope(prof::Op::conv_int8, conv2d_flops(x.shape(), p));
  if (s.pointwise) {
    s.pointwise->forward(x.data(), N * H * W, y.data());
    return y;
  }
  uint8_t* q = u8_scratch(x.numel());
  quantize_u8(x.data(), x.numel(), s.act, q);
  std::lock_guard<std::mutex> lock(s.mu);
  const State::Prim& prim = s.primitive(N, H, W, Ho, Wo);
  dnnl::memory src({{N, s.cin, H, W}, dt::u8, tag::nhwc}, dnnl_cpu_engine(), q);
  dnnl::memory dst({{N, p.cout, Ho, Wo}, dt::f32, tag::nhwc}, dnnl_cpu_engine(), y.data());
  dnnl::memory bias({{p.cout}, dt::f32, tag::x}, dnnl_cpu_engine(), s.bias.data());
  execute(prim.conv, prim.scratchpad,
          {{DNNL_ARG_SRC, src},
           {DNNL_ARG_WEIGHTS, s.layouts[prim.layout].weights},
           {DNNL_ARG_BIAS, bias},
           {DNNL_ARG_DST, dst}});
  s.fix_borders(y.data(), N, H, W, Ho, Wo);
  return y;
}

const ActQuant& Int8Conv2d::act() const { return s_->act; }
const std::vector<float>& Int8Conv2d::weight_scales() const { return s_->wscale; }
size_t Int8Conv2d::weight_bytes() const {
  if (s_->pointwise) return s_->pointwise->weight_bytes();
  std::lock_guard<std::mutex> lock(s_->mu);
  size_t n = 0;
  for (const auto& l : s_->layouts) n += l.desc.get_size();
  return n;
}

}  // namespace sdpal::k
