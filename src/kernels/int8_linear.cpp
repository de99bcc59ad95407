#include "kernels/int8_linear.h"

#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>

#include "core/error.h"
#include "core/profile.h"
#include "kernels/dnnl_engine.h"

namespace sdpal::k {

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

}  // namespace

bool int8_is_fast(cpu::Level l) { return l != cpu::Level::neon && l != cpu::Level::neon_dotprod; }

std::string int8_speed_warning(cpu::Level l) {
  if (int8_is_fast(l)) return "";
  return std::string("--int8: int8 compute on this CPU (level ") + cpu::level_name(l) +
         ") has no fast kernel: oneDNN has only reference (unoptimised) int8 code here, no faster "
         "and usually slower than fp32; use --int8 on x86 CPUs (AVX2, AVX-512, best with "
         "VNNI), or a palettized model (`sdpal compress`) to save memory";
}

// oneDNN's u8 x s8 matmul (brgemm on VNNI, gemm:jit without it, where the weights have 7 bits:
// int8_weight_max). The weight is reordered once into the layout the primitive asks for, which
// on the machines measured does not depend on M; primitives, whose output scales (act scale x
// weight scale) are fixed at creation, are made per M and kept.
// The zero point is not given to oneDNN (its src zero points gave wrong results for some
// convolution shapes in oneDNN 2.6.3): Σ w (q - zp) = Σ w q - zp Σ w, and zp Σ w goes into the
// bias.
struct Int8Linear::State {
  int64_t in = 0, out = 0;
  ActQuant act;
  std::vector<float> wscale, oscale, bias;  // bias: in accumulator units, minus zp Σ w
  dnnl::memory::desc wdesc;
  dnnl::memory weights;
  struct Prim {
    dnnl::matmul mm;
    dnnl::memory::desc scratchpad;
  };
  std::mutex mu;                  // guards prims (the primitives themselves are run unlocked)
  std::map<int64_t, Prim> prims;  // by M

  dnnl::matmul::primitive_desc make_pd(int64_t M, const dnnl::memory::desc& w) const {
    dnnl::primitive_attr attr = user_scratchpad_attr();
    attr.set_output_scales(1 << 1, oscale);
    const dnnl::memory::desc src({M, in}, dt::u8, tag::ab), dst({M, out}, dt::f32, tag::ab);
    const dnnl::memory::desc b({1, out}, dt::f32, tag::ab);
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, w, b, dst), attr,
                                        dnnl_cpu_engine());
  }

  const Prim& primitive(int64_t M) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = prims.find(M);
    if (it != prims.end()) return it->second;
    auto pd = make_pd(M, dnnl::memory::desc({in, out}, dt::s8, tag::any));
    if (pd.weights_desc() != wdesc) pd = make_pd(M, wdesc);  // keep the prepared layout
    return prims.emplace(M, Prim{dnnl::matmul(pd), pd.scratchpad_desc()}).first->second;
  }
};

Int8Linear::Int8Linear(const float* w, const float* bias, int64_t in, int64_t out,
                       const ActQuant& act)
    : s_(std::make_shared<State>()) {
  SDPAL_CHECK(in > 0 && out > 0, "int8 linear: empty weight");
  State& s = *s_;
  s.in = in;
  s.out = out;
  s.act = act;
  Int8Weights q = quantize_weights_s8(w, out, in);
  s.wscale = q.scale;
  s.oscale.resize(out);
  s.bias.resize(out);
  for (int64_t o = 0; o < out; ++o) {
    s.oscale[o] = act.scale * q.scale[o];
    int64_t sum = 0;
    for (int64_t i = 0; i < in; ++i) sum += q.q[o * in + i];
    // oneDNN 2.x applies the bias before the output scales: dst = oscale * (acc + bias).
    const double b = bias ? static_cast<double>(bias[o]) / s.oscale[o] : 0.0;
    s.bias[o] = static_cast<float>(b - static_cast<double>(act.zero_point) * sum);
  }
  s.wdesc = s.make_pd(256, dnnl::memory::desc({in, out}, dt::s8, tag::any)).weights_desc();
  s.weights = dnnl::memory(s.wdesc, dnnl_cpu_engine());
  // The [out, in] row-major weight is the [in, out] matrix in "ba" order.
  dnnl::memory plain({{in, out}, dt::s8, tag::ba}, dnnl_cpu_engine(), q.q.data());
  reorder(plain, s.weights);
}

void Int8Linear::forward(const float* x, int64_t M, float* y) const {
  if (M == 0) return;
  State& s = *s_;
  prof::OpScope scope(prof::Op::gemm_int8, 2.0 * M * s.in * s.out);
  uint8_t* q = u8_scratch(M * s.in);
  quantize_u8(x, M * s.in, s.act, q);
  const State::Prim& prim = s.primitive(M);
  dnnl::memory src({{M, s.in}, dt::u8, tag::ab}, dnnl_cpu_engine(), q);
  dnnl::memory dst({{M, s.out}, dt::f32, tag::ab}, dnnl_cpu_engine(), y);
  dnnl::memory bias({{1, s.out}, dt::f32, tag::ab}, dnnl_cpu_engine(), s.bias.data());
  execute(prim.mm, prim.scratchpad,
          {{DNNL_ARG_SRC, src},
           {DNNL_ARG_WEIGHTS, s.weights},
           {DNNL_ARG_BIAS, bias},
           {DNNL_ARG_DST, dst}});
}

Tensor Int8Linear::operator()(const Tensor& x) const {
  SDPAL_CHECK(
      x.ndim() >= 1 && x.dim(-1) == s_->in,
      "int8 linear: input " + shape_str(x.shape()) + " does not end in " + std::to_string(s_->in));
  Shape shape = x.shape();
  shape.back() = s_->out;
  Tensor y(shape);
  forward(x.data(), x.numel() / s_->in, y.data());
  return y;
}

int64_t Int8Linear::in() const { return s_->in; }
int64_t Int8Linear::out() const { return s_->out; }
const ActQuant& Int8Linear::act() const { return s_->act; }
const std::vector<float>& Int8Linear::weight_scales() const { return s_->wscale; }
size_t Int8Linear::weight_bytes() const { return s_->wdesc.get_size(); }

}  // namespace sdpal::k
