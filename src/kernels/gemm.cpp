#include "kernels/gemm.h"

#include <oneapi/dnnl/dnnl.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <unordered_map>

#include "core/cpu.h"
#include "core/error.h"
#include "core/profile.h"
#include "core/scratch.h"
#include "kernels/dnnl_engine.h"
#include "kernels/packed_gemm.h"
#include "kernels/primitive_cache.h"

namespace sdpal::k {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  prof::OpScope scope(prof::Op::gemm, 2.0 * M * N * K);
  dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B,
                                ldb, beta, C, ldc);
  SDPAL_CHECK(st == dnnl_success, "oneDNN sgemm failed (status " + std::to_string(st) + ")");
}

namespace {

// Linear layers of a real size run as oneDNN brgemm matmuls: measured 1.0-1.2x faster than the JIT
// sgemm on SD shapes (most on N = 320/640, where sgemm's blocking is poor). As for convolutions,
// primitives are cached per shape (shared and never changed once made: any number of callers may
// run one at once) and the weight is reordered into the blocked layout on every call, into the
// caller's scratch, so weights stay as the model file has them.
struct MatmulPrimitive {
  dnnl::matmul mm;
  WeightReorder weights;
  dnnl::memory::desc src, dst, bias, scratchpad;
};

using MatmulKey = std::tuple<int64_t, int64_t, int64_t, bool>;

MatmulPrimitive make_matmul_primitive(int64_t M, int64_t K, int64_t N, bool bias) {
  const dnnl::engine& eng = dnnl_cpu_engine();
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  MatmulPrimitive p;
  p.src = dnnl::memory::desc({M, K}, dt::f32, tag::ab);
  p.dst = dnnl::memory::desc({M, N}, dt::f32, tag::ab);
  p.bias = bias ? dnnl::memory::desc({1, N}, dt::f32, tag::ab) : dnnl::memory::desc();
  const dnnl::memory::desc any({K, N}, dt::f32, tag::any);
  const dnnl::matmul::primitive_desc pd(
      bias ? dnnl::matmul::desc(p.src, any, p.bias, p.dst) : dnnl::matmul::desc(p.src, any, p.dst),
      user_scratchpad_attr(), eng);
  p.scratchpad = pd.scratchpad_desc();
  p.mm = dnnl::matmul(pd);
  // W[N, K] row-major is W^T [K, N] in "ba" order.
  p.weights = WeightReorder(dnnl::memory::desc({K, N}, dt::f32, tag::ba), pd.weights_desc());
  return p;
}

const MatmulPrimitive& matmul_primitive(int64_t M, int64_t K, int64_t N, bool bias) {
  static PrimitiveCache<MatmulKey, MatmulPrimitive> cache;
  return cache.get(std::make_tuple(M, K, N, bias),
                   [&] { return make_matmul_primitive(M, K, N, bias); });
}

// Below this many multiply-adds the JIT sgemm is used as it is: a primitive per shape is not worth
// creating for the time embedding or a handful of tokens.
constexpr int64_t kMatmulMinMacs = int64_t(1) << 24;

// Dense layers run oneDNN's JIT kernels, except on aarch64, where oneDNN's fp32 matmul is
// reference-speed code and the packed GEMM runs instead. On AVX2 oneDNN runs its jit sgemm,
// measured 1.15-1.9x faster than the packed Highway GEMM on SD 1.5 shapes: it stays.
bool packed_is_faster() {
  const cpu::Level l = cpu::level();
  return l == cpu::Level::neon || l == cpu::Level::neon_dotprod;
}

}  // namespace

void linear(const float* x, int64_t M, int64_t K, const float* W, const float* b, int64_t N,
            float* y, bool accumulate) {
  if (!accumulate && M > 0 && N > 0 && K > 0 && packed_is_faster()) {
    packed_gemm(x, M, K, WeightSource::f32(W, N, K), b, y);
    return;
  }
  prof::OpScope scope(prof::Op::gemm, 2.0 * M * N * K);
  if (!accumulate && M * N * K >= kMatmulMinMacs) {
    const MatmulPrimitive& p = matmul_primitive(M, K, N, b != nullptr);
    const dnnl::engine& eng = dnnl_cpu_engine();
    const ScratchLease blocked(p.weights.blocked_floats());
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, dnnl::memory(p.src, eng, const_cast<float*>(x))},
        {DNNL_ARG_WEIGHTS, p.weights.blocked_weights(W, blocked.data())},
        {DNNL_ARG_DST, dnnl::memory(p.dst, eng, y)}};
    if (b) args.emplace(DNNL_ARG_BIAS, dnnl::memory(p.bias, eng, const_cast<float*>(b)));
    execute(p.mm, p.scratchpad, std::move(args));
    return;
  }
  float beta = accumulate ? 1.f : 0.f;
  if (b && !accumulate) {
    // Seed y with the bias so the GEMM adds onto it (beta = 1).
#pragma omp parallel for if (M * N > 65536)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) y[i * N + j] = b[j];
    beta = 1.f;
  }
  sgemm(false, true, M, N, K, 1.f, x, K, W, K, beta, y, N);
  if (b && accumulate) {
#pragma omp parallel for if (M * N > 65536)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) y[i * N + j] += b[j];
  }
}

Tensor linear(const Tensor& x, const float* W, const float* b, int64_t N) {
  const int64_t K = x.dim(-1);
  const int64_t M = x.numel() / K;
  Shape s = x.shape();
  s.back() = N;
  Tensor y(s);
  linear(x.data(), M, K, W, b, N, y.data());
  return y;
}

}  // namespace sdpal::k
