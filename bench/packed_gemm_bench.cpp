// Micro-benchmarks of SD 1.5 linear and 3x3 convolution shapes with compressed weights:
// oneDNN on a dense fp32 weight, expand-then-oneDNN (what Param::f32() + k::linear/conv2d do),
// the packed kernel on the dense weight, and the packed kernel expanding 4-/8-bit palettes into
// its panels. Counters: FLOP/s, and extra_MiB = the fp32 weight memory the variant needs besides
// its inputs and outputs (the expanded layer, or the packed kernel's block buffers).
//   build-*/sdpal_microbench --benchmark_filter=Linear --benchmark_min_time=0.3
#include <benchmark/benchmark.h>
#include <omp.h>

#include <map>
#include <random>
#include <vector>

#include "compression/palettize.h"
#include "kernels/conv2d.h"
#include "kernels/expand.h"
#include "kernels/gemm.h"
#include "kernels/packed_gemm.h"

using namespace sdpal;

namespace {

std::vector<float> random_vec(int64_t n, float stddev, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

enum Variant { kOneDnn, kExpandOneDnn, kPackedDense, kPackedFused };

// Palettizing a large layer takes a while: cache one per (shape, bits).
const PalettizedWeight& palette_of(const std::vector<float>& w, const Shape& s, int nbits) {
  static std::map<std::pair<Shape, int>, PalettizedWeight> cache;
  auto key = std::make_pair(s, nbits);
  auto it = cache.find(key);
  if (it == cache.end())
    it = cache.emplace(key, palettize(w.data(), s, DType::F32, nbits, 0)).first;
  return it->second;
}

double packed_extra_mib(int64_t N, int64_t K, bool fused, int64_t taps = 1) {
  return k::packed_buffer_bytes(
             N, K, fused ? k::WeightSource::Kind::Compressed : k::WeightSource::Kind::F32,
             omp_get_max_threads(), taps) /
         double(1 << 20);
}

void BM_Linear(benchmark::State& st) {
  const int64_t M = st.range(0), K = st.range(1), N = st.range(2);
  const auto variant = static_cast<Variant>(st.range(3));
  const int nbits = static_cast<int>(st.range(4));
  const auto x = random_vec(M * K, 1.f, 1);
  const auto w = random_vec(N * K, 0.05f, 2);
  const auto b = random_vec(N, 0.1f, 3);
  std::vector<float> y(M * N), scratch;
  CompressedView v;
  if (nbits) v = CompressedView::of(palette_of(w, {N, K}, nbits));
  if (variant == kExpandOneDnn || (variant == kPackedDense && nbits)) {
    scratch.resize(N * K);
    expand(v, scratch.data());
  }
  const float* dense = nbits ? scratch.data() : w.data();
  for (auto _ : st) {
    switch (variant) {
      case kOneDnn:
        k::linear(x.data(), M, K, dense, b.data(), N, y.data());
        break;
      case kExpandOneDnn:
        expand(v, scratch.data());
        k::linear(x.data(), M, K, scratch.data(), b.data(), N, y.data());
        break;
      case kPackedDense:
        k::packed_gemm(x.data(), M, K, k::WeightSource::f32(dense, N, K), b.data(), y.data());
        break;
      case kPackedFused:
        k::packed_gemm(x.data(), M, K, k::WeightSource::compressed(v), b.data(), y.data());
        break;
    }
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["FLOP/s"] =
      benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["extra_MiB"] = variant == kExpandOneDnn  ? 4.0 * N * K / (1 << 20)
                             : variant == kPackedFused ? packed_extra_mib(N, K, true)
                             : variant == kPackedDense ? packed_extra_mib(N, K, false)
                                                       : 0.0;
}

void BM_Conv3x3(benchmark::State& st) {
  const int64_t B = 2, H = st.range(0), C = st.range(1), stride = st.range(2);
  const auto variant = static_cast<Variant>(st.range(3));
  const int nbits = static_cast<int>(st.range(4));
  const Shape ws{C, C, 3, 3};
  const int64_t row = C * 9;
  const auto xv = random_vec(B * H * H * C, 1.f, 1);
  const Tensor x = Tensor::from({B, H, H, C}, xv.data());
  const auto w = random_vec(C * row, 0.02f, 2);
  const auto b = random_vec(C, 0.1f, 3);
  k::Conv2dParams p;
  p.cout = C;
  p.kh = p.kw = 3;
  p.stride = static_cast<int>(stride);
  p.pad_t = p.pad_l = p.pad_b = p.pad_r = 1;
  std::vector<float> scratch;
  CompressedView v;
  if (nbits) v = CompressedView::of(palette_of(w, ws, nbits));
  if (variant == kExpandOneDnn || (variant == kPackedDense && nbits)) {
    scratch.resize(C * row);
    expand(v, scratch.data());
  }
  const float* dense = nbits ? scratch.data() : w.data();
  for (auto _ : st) {
    Tensor y;
    switch (variant) {
      case kOneDnn:
        y = k::conv2d(x, dense, b.data(), p);
        break;
      case kExpandOneDnn:
        expand(v, scratch.data());
        y = k::conv2d(x, scratch.data(), b.data(), p);
        break;
      case kPackedDense:
        y = k::packed_conv2d(x, k::WeightSource::f32(dense, C, row), b.data(), p);
        break;
      case kPackedFused:
        y = k::packed_conv2d(x, k::WeightSource::compressed(v), b.data(), p);
        break;
    }
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["FLOP/s"] = benchmark::Counter(k::conv2d_flops(x.shape(), p),
                                             benchmark::Counter::kIsIterationInvariantRate);
  // oneDNN also reorders the weight into a blocked copy (the layer's size) on every call.
  st.counters["extra_MiB"] = variant == kExpandOneDnn  ? 8.0 * C * row / (1 << 20)
                             : variant == kOneDnn      ? 4.0 * C * row / (1 << 20)
                             : variant == kPackedFused ? packed_extra_mib(C, row, true, 9)
                                                       : packed_extra_mib(C, row, false, 9);
}

// {M, K, N}: SD 1.5 at 512x512 with classifier-free guidance (batch 2).
const int64_t kLinearShapes[][3] = {{8192, 320, 320},  {8192, 320, 2560},  {8192, 1280, 320},
                                    {2048, 640, 640},  {2048, 640, 5120},  {2048, 2560, 640},
                                    {512, 1280, 1280}, {512, 1280, 10240}, {512, 5120, 1280},
                                    {154, 768, 320},   {154, 768, 1280}};

void linear_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "K", "N", "variant", "bits"});
  for (const auto& s : kLinearShapes) {
    b->Args({s[0], s[1], s[2], kOneDnn, 0});
    b->Args({s[0], s[1], s[2], kPackedDense, 0});
    for (int bits : {4, 8}) {
      b->Args({s[0], s[1], s[2], kExpandOneDnn, bits});
      b->Args({s[0], s[1], s[2], kPackedFused, bits});
    }
  }
}

// {H (= W), channels, stride}: the UNet's 3x3 convolutions (batch 2).
const int64_t kConvShapes[][3] = {{64, 320, 1}, {32, 640, 1}, {16, 1280, 1},
                                  {8, 1280, 1}, {64, 320, 2}, {32, 640, 2}};

void conv_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"H", "C", "stride", "variant", "bits"});
  for (const auto& s : kConvShapes) {
    b->Args({s[0], s[1], s[2], kOneDnn, 0});
    b->Args({s[0], s[1], s[2], kPackedDense, 0});
    b->Args({s[0], s[1], s[2], kExpandOneDnn, 4});
    b->Args({s[0], s[1], s[2], kPackedFused, 4});
  }
}

BENCHMARK(BM_Linear)->Apply(linear_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Conv3x3)->Apply(conv_args)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
