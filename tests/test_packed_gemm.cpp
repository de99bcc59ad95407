// The packed GEMM/convolution with weights expanded during packing: on compressed weights it must
// equal, bit for bit, the same kernel on the weight expanded first (expand-then-GEMM); the dense
// kernel must match oneDNN up to fp32 summation order; layers dispatch to it when enabled.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "compression/palettize.h"
#include "compression/quantize.h"
#include "core/dtype.h"
#include "core/error.h"
#include "kernels/conv2d.h"
#include "kernels/expand.h"
#include "kernels/gemm.h"
#include "kernels/packed_gemm.h"
#include "models/config.h"
#include "models/layers.h"
#include "models/unet.h"
#include "support/fixtures.h"

using namespace sdpal;
using namespace sdpal::test;

namespace {

std::vector<float> random_vec(int64_t n, float stddev, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

Tensor random_tensor(Shape s, float stddev, uint64_t seed) {
  std::vector<float> v = random_vec(shape_numel(s), stddev, seed);
  return Tensor::from(std::move(s), v.data());
}

// Worst |got - want| relative to the largest |want|. A NaN (or an infinity) on either side gives
// +infinity, as support's max_abs_diff does, so that every bound fails: std::max(worst, NaN)
// would keep worst. Callers compare shapes before (ASSERT_EQ); here both hold n floats.
double rel_err(const float* got, const float* want, int64_t n) {
  double worst = 0, mag = 1e-30;
  for (int64_t i = 0; i < n; ++i) {
    const double d = std::fabs(double(got[i]) - want[i]);
    if (!std::isfinite(d)) return INFINITY;
    worst = std::max(worst, d);
    mag = std::max(mag, std::fabs(double(want[i])));
  }
  return worst / mag;
}

// The comparison itself: a NaN or an infinity in the output (or the reference) must fail the
// bounds the tests use, wherever it sits.
TEST(PackedGemm, RelErrFailsOnNonFinite) {
  const std::vector<float> want = {1.f, -2.f, 3.f, 0.5f};
  std::vector<float> got = want;
  EXPECT_EQ(rel_err(got.data(), want.data(), 4), 0.0);
  got[1] += 1e-6f;
  EXPECT_GT(rel_err(got.data(), want.data(), 4), 0.0);
  EXPECT_LE(rel_err(got.data(), want.data(), 4), 1e-5);
  for (int64_t at = 0; at < 4; ++at)
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      got = want;
      got[at] = bad;
      EXPECT_EQ(rel_err(got.data(), want.data(), 4), INFINITY) << at << " " << bad;
      EXPECT_EQ(rel_err(want.data(), got.data(), 4), INFINITY) << at << " " << bad;
    }
}

bool bit_equal(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, n * sizeof(float)) == 0;
}

struct GemmShape {
  int64_t M, K, N;
};
// Odd sizes around the blocking (MR 14, NR 32, KC 256, MC 168) and a few SD-like ones.
const GemmShape kShapes[] = {{1, 1, 1},      {5, 7, 3},       {13, 17, 33},    {14, 16, 32},
                             {15, 255, 31},  {29, 257, 47},   {169, 300, 65},  {200, 513, 100},
                             {2, 320, 1280}, {154, 768, 320}, {333, 64, 2049}, {700, 96, 130}};

// The weight a compressed view stands for, expanded by the library's reference path.
std::vector<float> expanded(const CompressedView& v) {
  std::vector<float> w(v.numel());
  expand(v, w.data());
  return w;
}

TEST(PackedGemm, DenseMatchesOneDnnSgemm) {
  for (const GemmShape& s : kShapes)
    for (bool with_bias : {false, true}) {
      const auto x = random_vec(s.M * s.K, 1.f, 1 + s.M);
      const auto w = random_vec(s.N * s.K, 0.05f, 2 + s.N);
      const auto b = random_vec(s.N, 0.5f, 3 + s.K);
      const float* bias = with_bias ? b.data() : nullptr;
      std::vector<float> got(s.M * s.N), want(s.M * s.N);
      k::packed_gemm(x.data(), s.M, s.K, k::WeightSource::f32(w.data(), s.N, s.K), bias,
                     got.data());
      k::linear(x.data(), s.M, s.K, w.data(), bias, s.N, want.data());
      EXPECT_LE(rel_err(got.data(), want.data(), s.M * s.N), 1e-5)
          << "M=" << s.M << " K=" << s.K << " N=" << s.N << " bias=" << with_bias;
    }
}

// y = x W^T + b in double precision.
std::vector<double> reference_gemm(const std::vector<float>& x, const std::vector<float>& w,
                                   const float* bias, int64_t M, int64_t K, int64_t N) {
  std::vector<double> y(M * N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = bias ? bias[j] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += double(x[i * K + k]) * w[j * K + k];
      y[i * N + j] = s;
    }
  return y;
}

// Worst |got - want| over the largest |want|; a NaN or infinity anywhere fails it (returns
// infinity), as rel_err.
double rel_err_ref(const float* got, const std::vector<double>& want) {
  double worst = 0, mag = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::fabs(got[i] - want[i]);
    if (!std::isfinite(d)) return INFINITY;
    worst = std::max(worst, d);
    mag = std::max(mag, std::fabs(want[i]));
  }
  return worst / mag;
}

// Sizes around the active level's micro-tile (MR x NR) and K-block: partial tiles in both
// directions, one and two K-blocks (the second adds onto the first's partial sums).
TEST(PackedGemm, LevelTileTailsMatchDoubleReference) {
  int mr = 0, nr = 0;
  k::packed_tile(&mr, &nr);
  ASSERT_GT(mr, 0);
  ASSERT_GT(nr, 0);
  for (int64_t M : {int64_t(1), int64_t(mr - 1), int64_t(mr), int64_t(mr + 1), int64_t(9 * mr + 1)})
    for (int64_t N : {int64_t(nr - 1), int64_t(nr + 1), int64_t(2 * nr + 3)})
      for (int64_t K : {1, 17, 769}) {
        if (M < 1 || N < 1) continue;
        const auto x = random_vec(M * K, 1.f, 11 + M);
        const auto w = random_vec(N * K, 0.05f, 12 + N);
        const auto b = random_vec(N, 0.5f, 13 + K);
        std::vector<float> got(M * N);
        k::packed_gemm(x.data(), M, K, k::WeightSource::f32(w.data(), N, K), b.data(), got.data());
        EXPECT_LE(rel_err_ref(got.data(), reference_gemm(x, w, b.data(), M, K, N)), 1e-5)
            << "MR=" << mr << " NR=" << nr << " M=" << M << " K=" << K << " N=" << N;
      }
}

// A NaN or inf in one input row reaches exactly that output row (no lane of the tile leaks).
TEST(PackedGemm, NonFiniteInputStaysInItsRow) {
  int mr = 0, nr = 0;
  k::packed_tile(&mr, &nr);
  const int64_t M = mr + 2, K = 40, N = nr + 1;
  auto x = random_vec(M * K, 1.f, 21);
  const auto w = random_vec(N * K, 0.05f, 22);
  x[1 * K + 5] = NAN;
  x[(M - 1) * K + 7] = INFINITY;
  std::vector<float> y(M * N);
  k::packed_gemm(x.data(), M, K, k::WeightSource::f32(w.data(), N, K), nullptr, y.data());
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const float v = y[i * N + j];
      if (i == 1)
        EXPECT_TRUE(std::isnan(v)) << i << "," << j;
      else if (i == M - 1)
        EXPECT_FALSE(std::isfinite(v)) << i << "," << j;
      else
        EXPECT_TRUE(std::isfinite(v)) << i << "," << j;
    }
}

// Fused (expanded into the panels) == expand the whole weight, then the same kernel, bit for bit.
void expect_fused_exact(const CompressedView& v, const std::string& what) {
  const int64_t N = v.rows(), K = v.numel() / N;
  const std::vector<float> dense = expanded(v);
  for (int64_t M : {1, 15, 97}) {
    const auto x = random_vec(M * K, 1.f, 7 + M);
    const auto b = random_vec(N, 0.5f, 9);
    for (const float* bias : {static_cast<const float*>(nullptr), b.data()}) {
      std::vector<float> fused(M * N), ref(M * N);
      k::packed_gemm(x.data(), M, K, k::WeightSource::compressed(v), bias, fused.data());
      k::packed_gemm(x.data(), M, K, k::WeightSource::f32(dense.data(), N, K), bias, ref.data());
      EXPECT_TRUE(bit_equal(fused.data(), ref.data(), M * N))
          << what << " M=" << M << " K=" << K << " N=" << N << " bias=" << (bias != nullptr);
    }
  }
}

TEST(PackedGemm, FusedLutEqualsExpandThenGemmExactly) {
  // Output channels x input: odd and even, with groups of 1, 3 or 16 channels per LUT.
  const std::vector<std::pair<Shape, std::vector<int64_t>>> cases = {
      {{33, 257}, {0, 3}}, {{48, 320}, {0, 16}}, {{7, 13}, {0, 1}}, {{96, 600}, {0, 32}}};
  for (const auto& [shape, groups] : cases)
    for (int nbits : {1, 2, 4, 6, 8})
      for (int64_t g : groups) {
        const auto w = random_vec(shape_numel(shape), 0.05f, nbits * 100 + g);
        const PalettizedWeight pw = palettize(w.data(), shape, DType::F32, nbits, g);
        expect_fused_exact(CompressedView::of(pw), "palette " + std::to_string(nbits) +
                                                       "-bit group " + std::to_string(g) + " " +
                                                       shape_str(shape));
      }
  for (bool symmetric : {true, false}) {
    const Shape shape{65, 300};
    const auto w = random_vec(shape_numel(shape), 0.05f, 77);
    const Linear8Weight q = quantize_linear8(w.data(), shape, DType::F32, symmetric);
    expect_fused_exact(CompressedView::of(q), symmetric ? "linear8 symmetric" : "linear8");
  }
}

TEST(PackedGemm, Fp16SourceEqualsConvertedWeightExactly) {
  const int64_t M = 50, K = 300, N = 70;
  const auto x = random_vec(M * K, 1.f, 5);
  const auto w = random_vec(N * K, 0.05f, 6);
  std::vector<uint16_t> h(N * K);
  std::vector<float> hw(N * K);
  for (int64_t i = 0; i < N * K; ++i) hw[i] = half_to_float(h[i] = float_to_half(w[i]));
  std::vector<float> a(M * N), b(M * N);
  k::packed_gemm(x.data(), M, K, k::WeightSource::f16(h.data(), N, K), nullptr, a.data());
  k::packed_gemm(x.data(), M, K, k::WeightSource::f32(hw.data(), N, K), nullptr, b.data());
  EXPECT_TRUE(bit_equal(a.data(), b.data(), M * N));
}

TEST(PackedGemm, RejectsMismatchedWeight) {
  const auto w = random_vec(12, 1.f, 1);
  std::vector<float> x(8), y(8);
  EXPECT_THROW(
      k::packed_gemm(x.data(), 2, 4, k::WeightSource::f32(w.data(), 4, 3), nullptr, y.data()),
      Error);
}

struct ConvCase {
  int64_t B, H, W, cin, cout;
  int kernel, stride, pad;
};
// Narrow images take the im2col-style packing, wide stride-1 ones the padded-plane path.
const ConvCase kConvs[] = {
    {1, 8, 8, 16, 32, 3, 1, 1},   {2, 9, 7, 5, 33, 3, 1, 1},    {1, 9, 9, 40, 17, 3, 2, 1},
    {1, 16, 16, 64, 64, 3, 2, 1}, {2, 5, 6, 70, 45, 1, 1, 0},   {1, 12, 10, 3, 8, 3, 1, 1},
    {1, 6, 6, 33, 20, 3, 1, 0},   {1, 7, 11, 36, 50, 5, 2, 2},  {2, 20, 18, 40, 33, 3, 1, 1},
    {1, 17, 30, 70, 64, 3, 1, 1}, {1, 18, 16, 24, 40, 3, 1, 0}, {1, 9, 40, 20, 70, 5, 1, 2},
    {1, 16, 16, 4, 32, 3, 1, 1},  {2, 14, 14, 32, 16, 3, 1, 1}};

k::Conv2dParams conv_params(const ConvCase& c) {
  k::Conv2dParams p;
  p.cout = c.cout;
  p.kh = p.kw = c.kernel;
  p.stride = c.stride;
  p.pad_t = p.pad_l = p.pad_b = p.pad_r = c.pad;
  return p;
}

TEST(PackedConv, DenseMatchesOneDnnConvolution) {
  for (const ConvCase& c : kConvs)
    for (bool with_bias : {false, true}) {
      const Tensor x = random_tensor({c.B, c.H, c.W, c.cin}, 1.f, c.cin);
      const int64_t row = c.cin * c.kernel * c.kernel;
      const auto w = random_vec(c.cout * row, 0.05f, c.cout);
      const auto b = random_vec(c.cout, 0.5f, 3);
      const float* bias = with_bias ? b.data() : nullptr;
      const k::Conv2dParams p = conv_params(c);
      const Tensor got = k::packed_conv2d(x, k::WeightSource::f32(w.data(), c.cout, row), bias, p);
      const Tensor want = k::conv2d(x, w.data(), bias, p);
      ASSERT_EQ(got.shape(), want.shape());
      EXPECT_LE(rel_err(got.data(), want.data(), got.numel()), 1e-5)
          << shape_str(x.shape()) << " cout=" << c.cout << " k=" << c.kernel << " s=" << c.stride
          << " pad=" << c.pad << " bias=" << with_bias;
    }
}

// Output channels around the level's panel width and widths that leave partial tiles, on the
// planes path (stride 1) and the im2col one (stride 2), against direct double-precision loops.
TEST(PackedConv, LevelTileTailsMatchDoubleReference) {
  int mr = 0, nr = 0;
  k::packed_tile(&mr, &nr);
  for (int64_t cout : {int64_t(nr - 1), int64_t(nr + 1)})
    for (int stride : {1, 2})
      for (int64_t W : {int64_t(mr - 1), int64_t(mr + 3)}) {
        const int64_t B = 1, H = 5, cin = 19;
        if (W < 1 || cout < 1) continue;
        k::Conv2dParams p;
        p.cout = cout;
        p.kh = p.kw = 3;
        p.stride = stride;
        p.pad_t = p.pad_l = p.pad_b = p.pad_r = 1;
        const auto xv = random_vec(B * H * W * cin, 1.f, 31 + W);
        const Tensor x = Tensor::from({B, H, W, cin}, xv.data());
        const auto w = random_vec(cout * cin * 9, 0.05f, 32 + cout);
        const auto b = random_vec(cout, 0.5f, 33);
        const Tensor y =
            k::packed_conv2d(x, k::WeightSource::f32(w.data(), cout, cin * 9), b.data(), p);
        const int64_t Ho = y.dim(1), Wo = y.dim(2);
        std::vector<double> want(Ho * Wo * cout);
        for (int64_t oy = 0; oy < Ho; ++oy)
          for (int64_t ox = 0; ox < Wo; ++ox)
            for (int64_t co = 0; co < cout; ++co) {
              double s = b[co];
              for (int64_t ci = 0; ci < cin; ++ci)
                for (int ky = 0; ky < 3; ++ky)
                  for (int kx = 0; kx < 3; ++kx) {
                    const int64_t iy = oy * stride - 1 + ky, ix = ox * stride - 1 + kx;
                    if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                    s +=
                        double(xv[(iy * W + ix) * cin + ci]) * w[(co * cin + ci) * 9 + ky * 3 + kx];
                  }
              want[(oy * Wo + ox) * cout + co] = s;
            }
        EXPECT_LE(rel_err_ref(y.data(), want), 1e-5)
            << "MR=" << mr << " NR=" << nr << " W=" << W << " cout=" << cout << " s=" << stride;
      }
}

TEST(PackedConv, FusedLutEqualsExpandThenConvExactly) {
  for (const ConvCase& c : kConvs)
    for (int nbits : {2, 4, 6, 8}) {
      const Shape shape{c.cout, c.cin, c.kernel, c.kernel};
      const int64_t row = c.cin * c.kernel * c.kernel;
      const auto w = random_vec(shape_numel(shape), 0.05f, nbits + c.cout);
      const PalettizedWeight pw = palettize(w.data(), shape, DType::F32, nbits, 0);
      const CompressedView v = CompressedView::of(pw);
      const std::vector<float> dense = expanded(v);
      const Tensor x = random_tensor({c.B, c.H, c.W, c.cin}, 1.f, c.H);
      const auto b = random_vec(c.cout, 0.5f, 4);
      const k::Conv2dParams p = conv_params(c);
      const Tensor fused = k::packed_conv2d(x, k::WeightSource::compressed(v), b.data(), p);
      const Tensor ref =
          k::packed_conv2d(x, k::WeightSource::f32(dense.data(), c.cout, row), b.data(), p);
      EXPECT_TRUE(bit_equal(fused.data(), ref.data(), ref.numel()))
          << shape_str(x.shape()) << " cout=" << c.cout << " k=" << c.kernel << " " << nbits
          << "-bit";
    }
}

TEST(PackedConv, AsymmetricPaddingMatchesOneDnn) {
  // The VAE encoder's downsampling pads right and bottom only.
  for (int stride : {1, 2})
    for (int64_t W : {9, 33}) {
      const Tensor x = random_tensor({1, 20, W, 24}, 1.f, W + stride);
      const auto w = random_vec(40 * 24 * 9, 0.05f, 8);
      k::Conv2dParams p;
      p.cout = 40;
      p.kh = p.kw = 3;
      p.stride = stride;
      p.pad_b = p.pad_r = 1;
      const Tensor got =
          k::packed_conv2d(x, k::WeightSource::f32(w.data(), 40, 24 * 9), nullptr, p);
      const Tensor want = k::conv2d(x, w.data(), nullptr, p);
      ASSERT_EQ(got.shape(), want.shape());
      EXPECT_LE(rel_err(got.data(), want.data(), got.numel()), 1e-5)
          << "stride " << stride << " W " << W;
    }
}

TEST(PackedGemm, LayersDispatchOnTheSwitch) {
  const Shape shape{40, 300};
  const auto w = random_vec(shape_numel(shape), 0.05f, 11);
  const auto bias = random_vec(40, 0.5f, 12);
  const PalettizedWeight pw = palettize(w.data(), shape, DType::F32, 4, 0);
  const CompressedView v = CompressedView::of(pw);
  WeightStore ws("test");
  ws.add_compressed("fc.weight", v);
  ws.add_view(
      "fc.bias",
      TensorView{"fc.bias", DType::F32, {40}, reinterpret_cast<const uint8_t*>(bias.data()), 160});
  Linear fc;
  fc.load(ws, "fc", 300, 40);
  const Tensor x = random_tensor({3, 7, 300}, 1.f, 13);
  const std::vector<float> dense = expanded(v);
  const Tensor packed =
      k::packed_linear(x, k::WeightSource::f32(dense.data(), 40, 300), bias.data());
  const Tensor onednn = k::linear(x, dense.data(), bias.data(), 40);
  EXPECT_TRUE(fc.fused_lut);  // the default: fused where the level runs that faster
  const Tensor& fused = k::fused_linear_is_faster() ? packed : onednn;
  EXPECT_TRUE(bit_equal(fc(x).data(), fused.data(), fused.numel()));
  fc.fused_lut = false;
  EXPECT_TRUE(bit_equal(fc(x).data(), onednn.data(), onednn.numel()));
}

TEST(PackedConv, Conv2dLayerDispatchesOnTheSwitch) {
  const Shape shape{24, 16, 3, 3};
  const auto w = random_vec(shape_numel(shape), 0.05f, 21);
  const PalettizedWeight pw = palettize(w.data(), shape, DType::F32, 6, 0);
  const CompressedView v = CompressedView::of(pw);
  WeightStore ws("test");
  ws.add_compressed("conv.weight", v);
  Conv2d conv;
  conv.load(ws, "conv", 16, 24, 3, 1, 1, false);
  const Tensor x = random_tensor({2, 20, 20, 16}, 1.f, 22);
  const std::vector<float> dense = expanded(v);
  const Tensor packed =
      k::packed_conv2d(x, k::WeightSource::f32(dense.data(), 24, 16 * 9), nullptr, conv.p);
  const Tensor onednn = k::conv2d(x, dense.data(), nullptr, conv.p);
  const Tensor& fused = k::fused_conv2d_is_faster(x.shape(), conv.p) ? packed : onednn;
  EXPECT_TRUE(bit_equal(conv(x).data(), fused.data(), fused.numel()));
  conv.fused_lut = false;
  EXPECT_TRUE(bit_equal(conv(x).data(), onednn.data(), onednn.numel()));
}

// A fixture UNet with its Linear/Conv weights palettized in memory: the fused path changes only
// the GEMMs' summation order, so the output stays within fp32 rounding of the expand-first one.
TEST(PackedGemm, FixtureUNetSameOutputFusedOnOrOff) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string dir = model_dir("tiny-sd1") + "/unet";
  WeightStore ws("unet");
  ws.add_file(dir + "/diffusion_pytorch_model.safetensors");
  std::vector<PalettizedWeight> owned;
  owned.reserve(ws.names().size());
  for (const std::string& name : ws.names()) {
    const TensorView* t = ws.find(name);
    if (!t || (t->shape.size() != 2 && t->shape.size() != 4) || t->numel() < 1000) continue;
    Tensor w = Tensor::zeros(t->shape);
    convert_to_f32(t->dtype, t->data, w.data(), t->numel());
    owned.push_back(palettize(w.data(), t->shape, t->dtype, 4, 0));
    ws.add_compressed(name, CompressedView::of(owned.back()));
  }
  ASSERT_GT(owned.size(), 20u);
  UNet unet(ws, UNetConfig::from_json(read_json_file(dir + "/config.json"), "unet"));
  Case c = load_case("tiny-sd1", "unet_t999");
  Tensor sample = c.in("sample"), context = c.in("encoder_hidden_states");
  const Tensor on = unet.forward(sample, {999}, context);
  unet.set_fused_lut(false);
  const Tensor off = unet.forward(sample, {999}, context);
  ASSERT_EQ(on.shape(), off.shape());
  EXPECT_LE(rel_err(on.data(), off.data(), on.numel()), 1e-4);
  if (k::fused_linear_is_faster()) {  // (at avx2 these small layers all run the dense kernels)
    EXPECT_FALSE(bit_equal(on.data(), off.data(), on.numel()))
        << "the fused path should have run (its summation order differs from oneDNN's)";
  }
}

}  // namespace
