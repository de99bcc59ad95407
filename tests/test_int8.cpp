// int8 (W8A8) compute: the kernels against fp32 arithmetic on the very values they quantise
// (exact but for fp32 rounding) and against the fp32 layer within the quantisation error bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "compression/calibrate.h"
#include "compression/quality.h"
#include "core/cpu.h"
#include "core/error.h"
#include "core/tensor.h"
#include "formats/png.h"
#include "kernels/conv2d.h"
#include "kernels/gemm.h"
#include "kernels/int8_conv2d.h"
#include "kernels/int8_linear.h"
#include "kernels/int8_quant.h"
#include "models/int8_calibration.h"
#include "models/unet.h"
#include "pipeline/generate.h"
#include "support/cli.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"

using namespace sdpal;

namespace {

// A weight source's result for data the test owns.
std::shared_ptr<const float> borrowed(const float* p) {
  return std::shared_ptr<const float>(p, [](const float*) {});
}

Tensor uniform_tensor(Shape shape, std::mt19937& rng, float lo, float hi) {
  Tensor t(std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = dist(rng);
  return t;
}

// What the kernels compute, in double: the quantised input and weight, dequantised.
struct Dequantised {
  std::vector<double> x, w;
  std::vector<float> wscale;
};

Dequantised dequantise(const Tensor& x, const k::ActQuant& a, const float* w, int64_t rows,
                       int64_t cols) {
  Dequantised d;
  std::vector<uint8_t> q(x.numel());
  k::quantize_u8(x.data(), x.numel(), a, q.data());
  for (uint8_t v : q) d.x.push_back(a.dequant(v));
  const k::Int8Weights qw = k::quantize_weights_s8(w, rows, cols);
  for (int64_t o = 0; o < rows; ++o)
    for (int64_t i = 0; i < cols; ++i)
      d.w.push_back(static_cast<double>(qw.q[o * cols + i]) * qw.scale[o]);
  d.wscale = qw.scale;
  return d;
}

// NHWC x OIHW convolution in double with zero padding; also sum |w||x| per output for tolerances.
struct ConvRef {
  std::vector<double> y, magnitude;
};
ConvRef conv_ref(const std::vector<double>& x, const std::vector<double>& w, const float* bias,
                 const Shape& xs, int64_t cin, const k::Conv2dParams& p) {
  const int64_t N = xs[0], H = xs[1], W = xs[2];
  const int64_t Ho = (H + p.pad_t + p.pad_b - p.kh) / p.stride + 1;
  const int64_t Wo = (W + p.pad_l + p.pad_r - p.kw) / p.stride + 1;
  ConvRef r;
  r.y.assign(N * Ho * Wo * p.cout, 0.0);
  r.magnitude.assign(r.y.size(), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oy = 0; oy < Ho; ++oy)
      for (int64_t ox = 0; ox < Wo; ++ox)
        for (int64_t o = 0; o < p.cout; ++o) {
          double acc = bias ? bias[o] : 0.0, mag = bias ? std::fabs(bias[o]) : 0.0;
          for (int64_t ky = 0; ky < p.kh; ++ky)
            for (int64_t kx = 0; kx < p.kw; ++kx) {
              const int64_t iy = oy * p.stride - p.pad_t + ky, ix = ox * p.stride - p.pad_l + kx;
              if (iy < 0 || ix < 0 || iy >= H || ix >= W) continue;
              for (int64_t c = 0; c < cin; ++c) {
                const double t = x[((n * H + iy) * W + ix) * cin + c] *
                                 w[((o * cin + c) * p.kh + ky) * p.kw + kx];
                acc += t;
                mag += std::fabs(t);
              }
            }
          const int64_t i = ((n * Ho + oy) * Wo + ox) * p.cout + o;
          r.y[i] = acc;
          r.magnitude[i] = mag;
        }
  return r;
}

// The int8 result must equal the dequantised computation up to fp32 rounding of the scales and
// of the final products (the int32 accumulation itself is exact).
void expect_matches_dequantised(const Tensor& got, const ConvRef& ref, const std::string& what) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(ref.y.size())) << what;
  int64_t bad = 0, worst = -1;
  double worst_ratio = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double tol = 1e-5 * ref.magnitude[i] + 1e-6;
    const double ratio = std::fabs(got[i] - ref.y[i]) / tol;
    if (!(ratio <= 1.0)) ++bad;
    if (!(ratio <= worst_ratio)) worst_ratio = ratio, worst = i;
  }
  EXPECT_EQ(bad, 0) << what << ": worst at " << worst << " got " << got[worst] << " want "
                    << ref.y[worst] << " (" << worst_ratio << " x tolerance)";
}

// Quantisation error bound against the fp32 layer, per output: with x' = dq(q(x)) and
// w' = dq(q(w)), |x'w' - xw| <= Σ |w||x' - x| + |x'||w' - w| <= Σ |w| s_x/2 + |x'| s_w/2
// (inputs inside the calibrated range; weights rounded to the nearest step).
void expect_within_quantisation_bound(const Tensor& got, const Tensor& fp32, const Tensor& x,
                                      const float* w, const Dequantised& d, const k::ActQuant& a,
                                      int64_t cin, const k::Conv2dParams& p,
                                      const std::string& what) {
  std::vector<double> absw(w, w + p.cout * cin * p.kh * p.kw);
  for (auto& v : absw) v = std::fabs(v);
  std::vector<double> ones(x.numel(), 1.0);
  // Σ|w|·1 over the receptive field (inside the image) and Σ|x'|·1 per output channel weightless.
  const ConvRef sum_absw = conv_ref(ones, absw, nullptr, x.shape(), cin, p);
  std::vector<double> absx(d.x);
  for (auto& v : absx) v = std::fabs(v);
  std::vector<double> ones_w(absw.size(), 1.0);
  const ConvRef sum_absx = conv_ref(absx, ones_w, nullptr, x.shape(), cin, p);
  int64_t bad = 0;
  double worst = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const int64_t o = i % p.cout;
    const double bound = sum_absw.y[i] * a.scale / 2 + sum_absx.y[i] * d.wscale[o] / 2 +
                         1e-5 * (std::fabs(fp32[i]) + sum_absw.y[i]);
    const double err = std::fabs(got[i] - fp32[i]);
    if (!(err <= bound)) ++bad;
    worst = std::max(worst, err / bound);
  }
  EXPECT_EQ(bad, 0) << what << ": error above the quantisation bound (worst " << worst << " x)";
  // The bound is not vacuous: the error uses a fair part of it somewhere.
  EXPECT_GT(worst, 0.01) << what;
}

struct ConvCase {
  int64_t n, h, w, cin, cout;
  int k, stride, pad_t, pad_l, pad_b, pad_r;
};

void check_conv(const ConvCase& c, uint32_t seed) {
  const std::string what = "conv " + std::to_string(c.cin) + "->" + std::to_string(c.cout) + " k" +
                           std::to_string(c.k) + " s" + std::to_string(c.stride) + " " +
                           std::to_string(c.h) + "x" + std::to_string(c.w);
  std::mt19937 rng(seed);
  // Asymmetric range (zero point well inside), with a few inputs beyond it (clipped).
  const k::ActQuant a = k::ActQuant::from_range(-0.7f, 2.3f);
  ASSERT_GT(a.zero_point, 30);
  const Tensor x = uniform_tensor({c.n, c.h, c.w, c.cin}, rng, -0.8f, 2.2f);
  const Tensor w = uniform_tensor({c.cout, c.cin, c.k, c.k}, rng, -0.5f, 0.5f);
  const Tensor bias = uniform_tensor({c.cout}, rng, -1.f, 1.f);
  k::Conv2dParams p;
  p.cout = c.cout;
  p.kh = p.kw = c.k;
  p.stride = c.stride;
  p.pad_t = c.pad_t, p.pad_l = c.pad_l, p.pad_b = c.pad_b, p.pad_r = c.pad_r;
  const k::Int8Conv2d conv([&] { return borrowed(w.data()); }, bias.data(), c.cin, p, a);
  const Tensor got = conv(x);
  const Dequantised d = dequantise(x, a, w.data(), c.cout, c.cin * c.k * c.k);
  expect_matches_dequantised(got, conv_ref(d.x, d.w, bias.data(), x.shape(), c.cin, p), what);
  // Against the fp32 layer, with the input clipped to the calibrated range.
  Tensor xc = x;
  for (int64_t i = 0; i < xc.numel(); ++i)
    xc[i] = std::clamp(xc[i], -a.zero_point * a.scale, (255 - a.zero_point) * a.scale);
  const Tensor fp32 = k::conv2d(xc, w.data(), bias.data(), p);
  expect_within_quantisation_bound(got, fp32, xc, w.data(), d, a, c.cin, p, what);
}

}  // namespace

TEST(Int8Quant, RangeContainsZeroAndMapsItExactly) {
  for (auto [lo, hi] : std::vector<std::pair<float, float>>{
           {-0.7f, 2.3f}, {0.5f, 3.f}, {-4.f, -1.f}, {-1.f, 1.f}, {0.f, 1e-3f}}) {
    const k::ActQuant a = k::ActQuant::from_range(lo, hi);
    EXPECT_GT(a.scale, 0.f);
    EXPECT_GE(a.zero_point, 0);
    EXPECT_LE(a.zero_point, 255);
    EXPECT_EQ(k::quantize_u8(0.f, a), a.zero_point) << lo << " " << hi;
    EXPECT_EQ(a.dequant(k::quantize_u8(0.f, a)), 0.f);
    // The range ends map to the ends of uint8 (within one step where 0 forced a shift).
    EXPECT_LE(std::fabs(a.dequant(0) - std::min(lo, 0.f)), a.scale);
    EXPECT_LE(std::fabs(a.dequant(255) - std::max(hi, 0.f)), a.scale);
  }
  const k::ActQuant flat = k::ActQuant::from_range(0.f, 0.f);
  EXPECT_EQ(flat.scale, 1.f);
  EXPECT_EQ(flat.zero_point, 0);
}

TEST(Int8Quant, VectorMatchesScalarDefinition) {
  std::mt19937 rng(3);
  const k::ActQuant a = k::ActQuant::from_range(-1.3f, 5.1f);
  // Values beyond the range, exact half steps, NaN and infinities.
  Tensor x = uniform_tensor({100003}, rng, -3.f, 8.f);
  for (int i = 0; i < 200; ++i) x[i * 7] = (static_cast<float>(i) - 40.f + 0.5f) * a.scale;
  x[5] = std::numeric_limits<float>::quiet_NaN();
  x[6] = std::numeric_limits<float>::infinity();
  x[8] = -std::numeric_limits<float>::infinity();
  std::vector<uint8_t> q(x.numel());
  k::quantize_u8(x.data(), x.numel(), a, q.data());
  int64_t mismatches = 0;
  for (int64_t i = 0; i < x.numel(); ++i) mismatches += q[i] != k::quantize_u8(x[i], a);
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(q[5], 0);
  EXPECT_EQ(q[6], 255);
  EXPECT_EQ(q[8], 0);
  // Inside the range, the round trip is within half a step.
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (x[i] >= a.dequant(0) && x[i] <= a.dequant(255)) {
      ASSERT_LE(std::fabs(a.dequant(q[i]) - x[i]), a.scale * 0.5f + 1e-6f) << x[i];
    }
  }
}

namespace {

// The quantisation's definition, written out again: one fp32 fma, NaN and negatives to 0, round
// half to even, 255 at most.
uint8_t quantize_ref(float x, float inv, float zp) {
  const float v = std::fma(x, inv, zp);
  if (std::isnan(v) || v <= 0.f) return 0;
  if (v >= 255.f) return 255;
  return static_cast<uint8_t>(std::nearbyint(v));
}

}  // namespace

// Bit-identical at every kernel level (run with SDPAL_ISA): lengths with every tail, start offsets,
// exact half steps and their neighbours, values where fma and mul+add round differently,
// out-of-range values, infinities, NaN, subnormals.
TEST(Int8Quant, BitIdenticalToDefinitionOnTailsAndHalfSteps) {
  std::mt19937 rng(11);
  for (auto [lo, hi] : std::vector<std::pair<float, float>>{
           {-1.3f, 5.1f}, {0.f, 1.f}, {-2.f, 0.f}, {-0.37f, 0.0041f}, {-300.f, 1e3f}}) {
    const k::ActQuant a = k::ActQuant::from_range(lo, hi);
    const float inv = a.inv_scale(), zp = static_cast<float>(a.zero_point);
    std::vector<float> x;
    for (int q = -3; q <= 258; ++q) {
      const float h = (static_cast<float>(q) + 0.5f - zp) * a.scale;  // about a half step
      for (float v : {h, std::nextafter(h, -INFINITY), std::nextafter(h, INFINITY)}) x.push_back(v);
    }
    // Inputs whose fma(x, inv, zp) lands exactly on .5 (found by search), and ones whose fp32
    // product-then-sum would round otherwise than the fused result.
    std::uniform_real_distribution<float> dist(lo - 0.5f * (hi - lo), hi + 0.5f * (hi - lo));
    int exact_half = 0, unfused_differs = 0;
    for (int i = 0; i < 2000000 && (exact_half < 64 || unfused_differs < 64); ++i) {
      const float v = dist(rng);
      const float f = std::fma(v, inv, zp);
      if (f - std::floor(f) == 0.5f && exact_half < 64) {
        x.push_back(v);
        ++exact_half;
      }
      const float prod = v * inv;
      if (prod + zp != f && std::nearbyint(prod + zp) != std::nearbyint(f) &&
          unfused_differs < 64) {
        x.push_back(v);
        ++unfused_differs;
      }
    }
    for (float v :
         {0.f, -0.f, 1e-40f, -1e-40f, 1e30f, -1e30f, 3.4e38f, -3.4e38f, INFINITY, -INFINITY,
          std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN()})
      x.push_back(v);
    while (x.size() % 64 != 61) x.push_back(dist(rng));
    std::vector<uint8_t> want(x.size());
    for (size_t i = 0; i < x.size(); ++i) want[i] = quantize_ref(x[i], inv, zp);
    // Every start offset and length modulo the widest vector, and the whole array.
    for (size_t off = 0; off < 17; ++off)
      for (size_t n :
           {size_t(0), size_t(1), size_t(15), size_t(16), size_t(17), size_t(33), x.size() - off}) {
        std::vector<uint8_t> q(n + 1, 0xAB);
        k::quantize_u8(x.data() + off, static_cast<int64_t>(n), a, q.data());
        for (size_t i = 0; i < n; ++i)
          ASSERT_EQ(q[i], want[off + i])
              << "x=" << x[off + i] << " (" << lo << ", " << hi << ") off=" << off << " n=" << n;
        ASSERT_EQ(q[n], 0xAB) << "wrote past the end";
      }
    if (a.zero_point != 0) {
      EXPECT_GT(unfused_differs, 0);  // with zp = 0 both round alike
    }
    EXPECT_GT(exact_half, 0);
  }
}

TEST(Int8Quant, BitIdenticalOnLargeParallelArrays) {
  std::mt19937 rng(12);
  const k::ActQuant a = k::ActQuant::from_range(-3.f, 7.f);
  Tensor x = uniform_tensor({1 << 19 | 13}, rng, -4.f, 9.f);
  std::vector<uint8_t> q(x.numel());
  k::quantize_u8(x.data(), x.numel(), a, q.data());
  for (int64_t i = 0; i < x.numel(); ++i)
    ASSERT_EQ(q[i], quantize_ref(x[i], a.inv_scale(), float(a.zero_point))) << x[i];
}

TEST(Int8Quant, MinMaxIgnoresNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t n : {0, 1, 5, 16, 17, 63, 1001}) {
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = std::sin(0.3f * float(i)) * 5.f + 0.01f * float(i);
    for (int64_t i = 0; i < n; i += 3) x[i] = nan;  // NaN first, in vectors and in the tail
    float lo = INFINITY, hi = -INFINITY;
    for (float v : x)
      if (!std::isnan(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    const auto [mn, mx] = k::min_max(x.data(), n);
    EXPECT_EQ(mn, lo) << n;
    EXPECT_EQ(mx, hi) << n;
  }
  const std::vector<float> all_nan(37, nan);
  const auto [mn, mx] = k::min_max(all_nan.data(), 37);
  EXPECT_EQ(mn, INFINITY);
  EXPECT_EQ(mx, -INFINITY);
  const std::vector<float> inf = {1.f, -INFINITY, 2.f, INFINITY, nan};
  const auto [il, ih] = k::min_max(inf.data(), 5);
  EXPECT_EQ(il, -INFINITY);
  EXPECT_EQ(ih, INFINITY);
}

TEST(Int8Quant, WeightsPerOutputChannelSymmetric) {
  std::mt19937 rng(4);
  Tensor w = uniform_tensor({5, 33}, rng, -1.f, 1.f);
  for (int i = 0; i < 33; ++i) w[33 * 2 + i] = 0.f;  // an all-zero row
  for (int i = 0; i < 33; ++i) w[33 * 3 + i] *= 100.f;
  for (int qmax : {127, 64, 1}) {
    const k::Int8Weights q = k::quantize_weights_s8(w.data(), 5, 33, qmax);
    EXPECT_EQ(q.scale[2], 1.f);
    for (int64_t o = 0; o < 5; ++o) {
      float amax = 0.f;
      for (int64_t i = 0; i < 33; ++i) amax = std::max(amax, std::fabs(w[o * 33 + i]));
      if (amax > 0.f) {
        EXPECT_FLOAT_EQ(q.scale[o], amax / static_cast<float>(qmax));
      }
      int top = 0;
      for (int64_t i = 0; i < 33; ++i) {
        const int v = q.q[o * 33 + i];
        EXPECT_LE(std::abs(v), qmax);
        top = std::max(top, std::abs(v));
        EXPECT_LE(std::fabs(v * q.scale[o] - w[o * 33 + i]), q.scale[o] * 0.5f + 1e-6f);
      }
      if (amax > 0.f) {
        EXPECT_EQ(top, qmax);
      }
    }
  }
  EXPECT_THROW(k::quantize_weights_s8(w.data(), 5, 33, 128), Error);
  EXPECT_THROW(k::quantize_weights_s8(w.data(), 5, 33, 0), Error);
}

TEST(Int8Quant, WeightRangeFollowsTheLevel) {
  // Full int8 only where the kernels accumulate u8 x s8 products exactly (VNNI; aarch64's
  // reference code); x86 without VNNI sums pairs in saturating int16: 2 * 255 * 64 fits.
  const int qmax = k::int8_weight_max();
#if defined(__x86_64__)
  EXPECT_EQ(qmax, cpu::use_avx512_vnni() ? 127 : 64) << cpu::level_name(cpu::level());
  if (!cpu::use_avx512_vnni()) {
    EXPECT_LE(2 * 255 * qmax, 32767);  // a saturating int16 pair sum cannot overflow
  }
#else
  EXPECT_EQ(qmax, 127);
#endif
  std::mt19937 rng(5);
  const Tensor w = uniform_tensor({3, 20}, rng, -1.f, 1.f);
  const k::Int8Weights a = k::quantize_weights_s8(w.data(), 3, 20);
  const k::Int8Weights b = k::quantize_weights_s8(w.data(), 3, 20, qmax);
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.scale, b.scale);
}

TEST(Int8Linear, MatchesDequantisedAndStaysWithinQuantisationError) {
  for (auto [M, K, N] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {37, 45, 29}, {1, 320, 64}, {300, 64, 80}, {2, 7, 3}}) {
    for (bool with_bias : {true, false}) {
      const std::string what = "linear " + std::to_string(M) + "x" + std::to_string(K) + "x" +
                               std::to_string(N) + (with_bias ? " bias" : "");
      std::mt19937 rng(static_cast<uint32_t>(M * 7 + K * 3 + N));
      const k::ActQuant a = k::ActQuant::from_range(-2.f, 1.f);
      const Tensor x = uniform_tensor({M, K}, rng, -2.f, 1.f);
      const Tensor w = uniform_tensor({N, K}, rng, -0.3f, 0.3f);
      const Tensor b = uniform_tensor({N}, rng, -1.f, 1.f);
      const float* bias = with_bias ? b.data() : nullptr;
      const k::Int8Linear lin(w.data(), bias, K, N, a);
      const Tensor got = lin(x);
      ASSERT_EQ(got.shape(), (Shape{M, N}));
      // A linear layer is a 1x1 convolution of a [1, M, 1, K] image.
      k::Conv2dParams p;
      p.cout = N;
      const Dequantised d = dequantise(x, a, w.data(), N, K);
      expect_matches_dequantised(got, conv_ref(d.x, d.w, bias, {1, M, 1, K}, K, p), what);
      const Tensor fp32 = k::linear(x, w.data(), bias, N);
      Tensor x4 = x;
      x4.reshape_inplace({1, M, 1, K});
      expect_within_quantisation_bound(got, fp32, x4, w.data(), d, a, K, p, what);
    }
  }
}

TEST(Int8Conv2d, MatchesDequantisedAndStaysWithinQuantisationError) {
  const ConvCase cases[] = {
      // 3x3 with padding: the zero point must stand for real zero at the borders.
      {2, 9, 11, 19, 23, 3, 1, 1, 1, 1, 1},
      // stride 2 (UNet downsampler) and the VAE encoder's asymmetric (0, 1, 0, 1) padding
      {1, 12, 10, 16, 16, 3, 2, 1, 1, 1, 1},
      {1, 12, 10, 13, 16, 3, 2, 0, 0, 1, 1},
      // 1x1 (runs as a matmul), channels not multiples of 16
      {2, 7, 5, 21, 35, 1, 1, 0, 0, 0, 0},
      // large enough for oneDNN's brgemm kernels, small enough for its direct ones
      {1, 32, 32, 64, 48, 3, 1, 1, 1, 1, 1},
      {2, 4, 4, 64, 48, 3, 1, 1, 1, 1, 1},
      // many input channels (SD 1.5's up blocks): oneDNN 2.6.3's own zero-point handling got
      // these wrong
      {1, 16, 16, 1920, 64, 3, 1, 1, 1, 1, 1},
      // 4 input channels (the UNet's conv_in), 4 outputs (conv_out)
      {1, 16, 16, 4, 32, 3, 1, 1, 1, 1, 1},
      {1, 16, 16, 32, 4, 3, 1, 1, 1, 1, 1},
  };
  uint32_t seed = 10;
  for (const auto& c : cases) check_conv(c, seed++);
}

TEST(Int8Conv2d, OneLayerServesSeveralImageSizes) {
  // oneDNN picks different kernels (and weight layouts) for small and large images: one layer
  // object must give correct results for both, in any order, keeping one copy per layout.
  std::mt19937 rng(7);
  const k::ActQuant a = k::ActQuant::from_range(-1.f, 1.f);
  const Tensor w = uniform_tensor({64, 64, 3, 3}, rng, -0.2f, 0.2f);
  k::Conv2dParams p;
  p.cout = 64;
  p.kh = p.kw = 3;
  p.pad_t = p.pad_l = p.pad_b = p.pad_r = 1;
  int sources = 0;
  const k::Int8Conv2d conv(
      [&] {
        ++sources;
        return borrowed(w.data());
      },
      nullptr, 64, p, a);
  for (int64_t side : {32, 4, 32, 4, 20}) {
    const Tensor x = uniform_tensor({1, side, side, 64}, rng, -1.f, 1.f);
    const Dequantised d = dequantise(x, a, w.data(), 64, 64 * 9);
    expect_matches_dequantised(conv(x), conv_ref(d.x, d.w, nullptr, x.shape(), 64, p),
                               "side " + std::to_string(side));
  }
  // The source is read for the scales and then once per distinct layout (at most one per size).
  EXPECT_GE(sources, 2);
  EXPECT_LE(sources, 4);
  EXPECT_GE(conv.weight_bytes(), size_t{64 * 64 * 9});
}

TEST(Int8Conv2d, ExtremeValuesDoNotSaturate) {
  // The worst case for pairwise int16 sums: every input at the top of its range (q = 255) and
  // every weight at +-max, so that neighbouring products share their sign; with a few rows of
  // mixed signs and an input that also reaches the bottom (q = 0).
  const k::ActQuant a = k::ActQuant::from_range(-1.f, 3.f);
  for (const ConvCase c :
       {ConvCase{1, 32, 32, 64, 48, 3, 1, 1, 1, 1, 1}, ConvCase{2, 4, 4, 64, 48, 3, 1, 1, 1, 1, 1},
        ConvCase{1, 8, 8, 1920, 32, 3, 1, 1, 1, 1, 1},
        ConvCase{1, 6, 40, 96, 40, 1, 1, 0, 0, 0, 0}}) {
    const int64_t taps = c.k * c.k, cols = c.cin * taps;
    Tensor x({c.n, c.h, c.w, c.cin});
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = (i % 97 == 0) ? -1.f : 3.f;
    Tensor w({c.cout, c.cin, c.k, c.k});
    for (int64_t o = 0; o < c.cout; ++o)
      for (int64_t i = 0; i < cols; ++i)
        w[o * cols + i] = o % 3 == 0 ? 0.25f : o % 3 == 1 ? -0.25f : ((i / 2) % 2 ? 0.25f : -0.25f);
    k::Conv2dParams p;
    p.cout = c.cout;
    p.kh = p.kw = c.k;
    p.pad_t = p.pad_l = p.pad_b = p.pad_r = c.pad_t;
    const k::Int8Conv2d conv([&] { return borrowed(w.data()); }, nullptr, c.cin, p, a);
    const Dequantised d = dequantise(x, a, w.data(), c.cout, cols);
    expect_matches_dequantised(
        conv(x), conv_ref(d.x, d.w, nullptr, x.shape(), c.cin, p),
        "extreme conv " + std::to_string(c.cin) + " k" + std::to_string(c.k));
    if (c.k == 1) {  // and the linear layer directly, with one row (a matmul of M = 1)
      const k::Int8Linear lin(w.data(), nullptr, c.cin, c.cout, a);
      Tensor row({1, c.cin});
      std::copy(x.data(), x.data() + c.cin, row.data());
      Tensor row4 = row;
      row4.reshape_inplace({1, 1, 1, c.cin});
      const Dequantised dr = dequantise(row, a, w.data(), c.cout, cols);
      expect_matches_dequantised(lin(row), conv_ref(dr.x, dr.w, nullptr, row4.shape(), c.cin, p),
                                 "extreme linear");
    }
  }
}

TEST(Int8Speed, LevelsWithoutAFastKernelAreNamedWithTheAlternatives) {
  // x86: oneDNN's JIT int8 beats its fp32 at every level (SSE4.1 too); aarch64: reference code.
  for (cpu::Level l :
       {cpu::Level::baseline, cpu::Level::avx2, cpu::Level::avx512, cpu::Level::avx512vnni}) {
    EXPECT_TRUE(k::int8_is_fast(l)) << cpu::level_name(l);
    EXPECT_EQ(k::int8_speed_warning(l), "");
  }
  for (cpu::Level l : {cpu::Level::neon, cpu::Level::neon_dotprod}) {
    EXPECT_FALSE(k::int8_is_fast(l));
    const std::string w = k::int8_speed_warning(l);
    EXPECT_NE(w.find(std::string("(level ") + cpu::level_name(l) + ")"), std::string::npos) << w;
    EXPECT_NE(w.find("slower than fp32"), std::string::npos) << w;
    EXPECT_NE(w.find("palettized model (`sdpal compress`)"), std::string::npos) << w;
  }
}

// ---- calibration files, int8 models, CLI ----

namespace {

using sdpal::test::model_dir;
using sdpal::test::run_cli;

class Int8Files : public sdpal::test::TempDirTest {};

Int8Calibration small_calibration() {
  Int8Calibration c;
  c.model = "m";
  c.settings["steps"] = 4;
  c.layers.push_back({"conv_in", -1.5f, 2.25f, true, 0.5});
  c.layers.push_back({"down_blocks.0.attentions.0.proj_in", -0.1f, 0.3f, false, 0.001});
  return c;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

CompareOptions tiny_compare() {
  CompareOptions o;
  o.prompts = {"a red apple on a table", "a mountain lake at dawn"};
  o.seeds = {1, 2};
  o.steps = 10;
  return o;
}

}  // namespace

TEST_F(Int8Files, CalibrationRoundTrip) {
  const Int8Calibration c = small_calibration();
  write_int8_calibration(path("cal.json"), c);
  EXPECT_EQ(listing(), std::vector<std::string>{"cal.json"});  // no temp file left behind
  const Int8Calibration r = read_int8_calibration(path("cal.json"));
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.settings["steps"], 4);
  ASSERT_EQ(r.layers.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(r.layers[i].name, c.layers[i].name);
    EXPECT_EQ(r.layers[i].min, c.layers[i].min);
    EXPECT_EQ(r.layers[i].max, c.layers[i].max);
    EXPECT_EQ(r.layers[i].int8, c.layers[i].int8);
    EXPECT_NEAR(r.layers[i].gflops, c.layers[i].gflops, 1e-9);
  }
  EXPECT_EQ(r.int8_count(), 1);
  EXPECT_EQ(r.find("conv_in")->act().zero_point, c.layers[0].act().zero_point);
  EXPECT_EQ(r.find("nope"), nullptr);
}

TEST_F(Int8Files, BadCalibrationFilesAreRefused) {
  EXPECT_NE(error_of([&] {
              read_int8_calibration(path("missing.json"));
            }).find("cannot open int8 calibration file"),
            std::string::npos);
  const std::string good = small_calibration().to_json().dump();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {good.substr(0, good.size() / 2), "not valid JSON"},
      {"[1, 2]", "not a JSON object"},
      {R"({"layers": {}})", "no 'format'"},
      {R"({"format": "sdpal-mixed-bit-analysis/1", "layers": {}})", "expected 'sdpal-int8"},
      {R"({"format": "sdpal-int8-calibration/1", "layers": {}})", "'layers' must be a non-empty"},
      {R"({"format": "sdpal-int8-calibration/1", "layers": {"a": {"min": 1, "max": 0,
        "int8": true}}})",
       "min 1.000000 > max"},
      {R"({"format": "sdpal-int8-calibration/1", "layers": {"a": {"min": "x", "max": 0,
        "int8": true}}})",
       "'min' must be a number"},
      {R"({"format": "sdpal-int8-calibration/1", "layers": {"a": {"min": 0, "max": 1e300,
        "int8": true}}})",
       "not a usable range end"},
      {R"({"format": "sdpal-int8-calibration/1", "layers": {"a": {"min": 0, "max": 1}}})",
       "'int8' must be true or false"},
      {R"({"format": "sdpal-int8-calibration/1", "layers": {"a": [0, 1]}})", "must be an object"},
      {R"({"format": "sdpal-int8-calibration/1", "layers": {"a": {"min": 0, "max": 1,
        "int8": true, "gflops": -1}}})",
       "'gflops' must be a non-negative"},
  };
  for (const auto& [text, want] : cases) {
    write_text(path("bad.json"), text);
    const std::string err = error_of([&] { read_int8_calibration(path("bad.json")); });
    EXPECT_NE(err.find(want), std::string::npos) << text << "\n -> " << err;
    EXPECT_EQ(err.rfind(path("bad.json"), 0), 0u) << err;  // names the file first
  }
}

TEST(Int8CalibrationPath, DefaultsBesideTheUNetWeights) {
  SDPAL_REQUIRE_FIXTURES();
  EXPECT_EQ(default_int8_calibration_path(model_dir("tiny-sd1")),
            (std::filesystem::path(model_dir("tiny-sd1")) / "unet" / "sdpal_int8.json").string());
  EXPECT_EQ(default_int8_calibration_path("/some/dir/model.safetensors"),
            "/some/dir/model.sdpal_int8.json");
}

TEST_F(Int8Files, TinySd1CalibratedInt8StaysCloseToFp32) {
  SDPAL_REQUIRE_FIXTURES();
  auto ref = StableDiffusion::load(model_dir("tiny-sd1"));
  CalibrateOptions co;
  const Int8Calibration c = calibrate_int8(*ref, co);
  const auto layers = ref->unet->weight_layers();
  ASSERT_EQ(c.layers.size(), layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_EQ(c.layers[i].name, layers[i]->name);
    EXPECT_LT(c.layers[i].min, c.layers[i].max) << c.layers[i].name;
    EXPECT_GT(c.layers[i].gflops, 0.0) << c.layers[i].name;
  }
  // GroupNorm + SiLU feeds conv1/conv2: SiLU's minimum is -0.2785.
  EXPECT_NEAR(c.find("down_blocks.0.resnets.0.conv1")->min, -0.2785f, 0.002f);
  EXPECT_FALSE(ref->unet->weight_layers()[0]->int8());  // calibration leaves the model fp32
  write_int8_calibration(path("cal.json"), c);

  LoadOptions o;
  o.int8 = true;
  o.int8_calibration = path("cal.json");
  auto q = StableDiffusion::load(model_dir("tiny-sd1"), o);
  EXPECT_EQ(q->int8_layers, c.int8_count());
  // By default conv_in, conv_out and the layers with under 0.1 % of the work stay fp32.
  EXPECT_FALSE(c.find("conv_in")->int8);
  EXPECT_FALSE(c.find("conv_out")->int8);
  EXPECT_TRUE(c.find("down_blocks.0.resnets.0.conv1")->int8);
  EXPECT_GT(c.int8_count(), static_cast<int64_t>(layers.size()) / 3);
  // The text encoder stays fp32: identical embeddings.
  const Tensor e1 = encode_prompts(*ref, {"a red apple"}, 1, nullptr);
  const Tensor e2 = encode_prompts(*q, {"a red apple"}, 1, nullptr);
  EXPECT_EQ(sdpal::test::max_abs_diff(e1, e2), 0.0);
  // 10 DDIM steps, the default int8 layers: measured 35-37 dB on the latents (RMS error ~1.5 %
  // of the peak). 30 dB leaves room for other CPUs' rounding while still failing for a
  // broken layer (one wrongly quantised layer costs well over 10 dB, see below).
  const CompareResult r = compare_models(*ref, *q, tiny_compare());
  std::printf(
      "[ measured ] tiny-sd1 default int8 layers, 10 steps: latents %.2f dB, image %.2f dB\n",
      r.mean_psnr_latents, r.mean_psnr_image);
  EXPECT_GT(r.mean_psnr_latents, 30.0);
  EXPECT_GT(r.mean_psnr_image, 30.0);
  EXPECT_LT(r.mean_psnr_latents, 80.0);  // int8 did run

  // Ranges 4x too narrow clip most activations: the quality must collapse, and the test notice.
  Int8Calibration narrow = c;
  for (auto& l : narrow.layers) l.min /= 4, l.max /= 4;
  apply_int8_calibration(*q->unet, narrow, "narrow");
  const CompareResult rn = compare_models(*ref, *q, tiny_compare());
  EXPECT_LT(rn.mean_psnr_latents, r.mean_psnr_latents - 10.0);

  // int8: false everywhere is the fp32 model, bit for bit.
  Int8Calibration none = c;
  for (auto& l : none.layers) l.int8 = false;
  EXPECT_EQ(apply_int8_calibration(*q->unet, none, "none"), 0);
  const CompareResult r0 = compare_models(*ref, *q, tiny_compare());
  EXPECT_TRUE(std::isinf(r0.mean_psnr_latents)) << r0.mean_psnr_latents;
}

TEST_F(Int8Files, CalibrationOfAnotherModelIsRefused) {
  SDPAL_REQUIRE_FIXTURES();
  auto sd1 = StableDiffusion::load(model_dir("tiny-sd1"));
  auto sd2 = StableDiffusion::load(model_dir("tiny-sd2"));
  CalibrateOptions co;
  co.prompts = {"x"};
  co.steps = 1;
  const Int8Calibration c = calibrate_int8(*sd1, co);
  const std::string err = error_of([&] { apply_int8_calibration(*sd2->unet, c, "cal.json"); });
  EXPECT_NE(err.find("cal.json"), std::string::npos) << err;
  EXPECT_NE(err.find("another model"), std::string::npos) << err;
  // A layer missing from the file is refused too.
  Int8Calibration partial = c;
  partial.layers.pop_back();
  EXPECT_NE(error_of([&] {
              apply_int8_calibration(*sd1->unet, partial, "p");
            }).find("no range for UNet layer 'conv_out'"),
            std::string::npos);
  // A missing file names the command that makes it.
  LoadOptions o;
  o.int8 = true;
  o.int8_calibration = path("none.json");
  const std::string missing = error_of([&] { StableDiffusion::load(model_dir("tiny-sd1"), o); });
  EXPECT_NE(missing.find("run `sdpal calibrate --model"), std::string::npos) << missing;
}

TEST_F(Int8Files, CliCalibrateThenGenerateInt8) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = model_dir("tiny-sd1"), cal = path("cal.json");
  auto r = run_cli({"calibrate", "-m", m, "-o", cal, "--steps", "2", "-W", "32", "-H", "32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("wrote " + cal), std::string::npos) << r.err;
  const Int8Calibration c = read_int8_calibration(cal);
  EXPECT_EQ(c.settings["steps"], 2);
  EXPECT_EQ(c.settings["width"], 32);
  EXPECT_EQ(c.settings["unet_calls"], 4);  // 2 prompts x 2 steps
  r = run_cli({"generate", "-m", m, "-p", "a cat", "--steps", "3", "-s", "1", "-q", "--int8",
               "--int8-calibration", cal, "-o", path("a.png")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Where int8 has no fast kernel, generate says so (even with -q) and goes on.
  const bool slow_warned = r.err.find("has no fast kernel") != std::string::npos;
  EXPECT_EQ(slow_warned, !k::int8_is_fast(cpu::level())) << r.err;
  const auto text = read_png(path("a.png")).text;
  ASSERT_TRUE(text.count("parameters"));
  EXPECT_NE(text.at("parameters").find("int8: W8A8"), std::string::npos) << text.at("parameters");
  r = run_cli({"generate", "-m", m, "-p", "a cat", "--steps", "1", "-q", "-o", path("b.png")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_png(path("b.png")).text.at("parameters").find("int8"), std::string::npos);
  // Without a calibration: a one-line error naming the command to run, and no output.
  r = run_cli({"generate", "-m", m, "-p", "a cat", "--steps", "1", "-q", "--int8-calibration",
               path("none.json"), "-o", path("c.png")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("sdpal calibrate --model"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(path("c.png")));
  // A corrupted calibration file.
  write_text(path("bad.json"), "{\"format\": ");
  r = run_cli({"generate", "-m", m, "-p", "a cat", "--steps", "1", "-q", "--int8-calibration",
               path("bad.json"), "-o", path("d.png")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not valid JSON"), std::string::npos) << r.err;
  // calibrate refuses a bad size, writing nothing
  r = run_cli({"calibrate", "-m", m, "-o", path("x.json"), "-W", "30"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("multiples of 8"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(path("x.json")));
}
