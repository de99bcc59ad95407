// The vectorised activations, their exp/erf and the norms against double-precision definitions,
// over a dense range, extremes and lengths that leave a tail. Run at every kernel level
// (SDPAL_ISA).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cpu.h"
#include "kernels/activation.h"
#include "kernels/norm.h"

using namespace sdpal;

namespace {

std::vector<float> inputs() {
  std::vector<float> x;
  for (float v = -12.f; v <= 12.f; v += 0.00371f) x.push_back(v);
  for (float v : {0.f, -0.f, 1e-30f, -1e-30f, 1e-7f, 50.f, -50.f, 87.f, -87.f, 100.f, -100.f, 1e4f,
                  -1e4f, 3e38f, -3e38f})
    x.push_back(v);
  x.push_back(0.5f);  // odd length: a masked tail
  return x;
}

double gelu_ref(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double sigmoid_ref(double x) { return 1 / (1 + std::exp(-x)); }

template <class Kernel, class Ref>
void check(Kernel kernel, Ref ref, const char* name) {
  std::vector<float> x = inputs(), y = x;
  kernel(y.data(), static_cast<int64_t>(y.size()));
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = ref(double(x[i]));
    // erf is approximated to 1.5e-7 absolute; the rest is fp32 rounding.
    const double tol =
        2e-7 * std::min(std::abs(double(x[i])), 10.0) + 4e-7 * std::abs(want) + 1e-37;
    const double err = std::abs(double(y[i]) - want);
    ASSERT_TRUE(std::isfinite(y[i])) << name << "(" << x[i] << ")";
    EXPECT_LE(err, tol) << name << "(" << x[i] << ") = " << y[i] << ", want " << want;
    worst = std::max(worst, err / (tol + 1e-30));
  }
  EXPECT_LE(worst, 1.0) << name;
}

}  // namespace

TEST(Activation, GeluMatchesErfDefinition) {
  check(static_cast<void (*)(float*, int64_t)>(k::gelu_), gelu_ref, "gelu");
}

TEST(Activation, SiluAndQuickGelu) {
  check(
      static_cast<void (*)(float*, int64_t)>(k::silu_), [](double x) { return x * sigmoid_ref(x); },
      "silu");
  check(
      static_cast<void (*)(float*, int64_t)>(k::quick_gelu_),
      [](double x) { return x * sigmoid_ref(1.702 * x); }, "quick_gelu");
}

TEST(Activation, GegluHalvesAndTails) {
  for (int64_t D : {1, 15, 16, 17, 40, 1280}) {
    const int64_t M = 3;
    Tensor h({M, 2 * D});
    for (int64_t i = 0; i < h.numel(); ++i) h[i] = std::sin(0.37f * i) * 4.f;
    const Tensor y = k::geglu(h);
    ASSERT_EQ(y.shape(), (Shape{M, D}));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < D; ++j) {
        const double a = h[m * 2 * D + j], g = h[m * 2 * D + D + j];
        const double want = a * gelu_ref(g);
        EXPECT_NEAR(y[m * D + j], want, 1e-6 * (1 + std::abs(a) * (1 + std::abs(g)))) << "D=" << D;
      }
  }
}

TEST(Activation, ExpWithinFewUlpAndClamped) {
  std::vector<float> x;
  for (float v = -87.3f; v <= 88.7f; v += 0.000917f) x.push_back(v);
  for (float v : {0.f, -0.f, 1e-30f, -1e-30f, 0.34657359f, -0.34657359f, 88.72f}) x.push_back(v);
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(17), static_cast<int64_t>(x.size())}) {
    std::vector<float> y(x.begin(), x.begin() + n);
    k::exp_(y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double want = std::exp(double(x[i]));
      ASSERT_LE(std::abs(y[i] - want), 3e-7 * want)
          << "exp(" << x[i] << ") = " << y[i] << " at " << cpu::level_name(cpu::level());
    }
  }
  // Clamped ends: below -87.3 the value at -87.3 (still a normal float), above 89 +inf.
  std::vector<float> ends = {-88.f, -100.f, -1e30f, 89.5f, 1e30f, 89.f};
  k::exp_(ends.data(), static_cast<int64_t>(ends.size()));
  for (int i = 0; i < 3; ++i) {
    EXPECT_GE(ends[i], std::numeric_limits<float>::min());
    EXPECT_LE(std::abs(ends[i] - std::exp(double(-87.3f))), 3e-7 * std::exp(double(-87.3f)));
  }
  for (int i = 3; i < 6; ++i) EXPECT_EQ(ends[i], std::numeric_limits<float>::infinity()) << i;
}

TEST(Activation, ErfWithinBoundAndOdd) {
  std::vector<float> x;
  for (float v = -6.f; v <= 6.f; v += 0.000613f) x.push_back(v);
  for (float v : {0.f, 1e-30f, 1e-7f, 10.f, 1e4f, 3e38f}) {
    x.push_back(v);
    x.push_back(-v);
  }
  x.push_back(0.25f);  // odd length
  std::vector<float> y = x;
  k::erf_(y.data(), static_cast<int64_t>(y.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    // Abramowitz & Stegun's 1.5e-7 plus the fp32 rounding of 1 - p(t) e^{-x^2}, which cancels
    // near 0 (up to 4 ulp of 1; the worst seen is 5.2e-7 at |x| = 0.034, on SSE4).
    ASSERT_LE(std::abs(y[i] - std::erf(double(x[i]))), 6.5e-7)
        << "erf(" << x[i] << ") = " << y[i] << " at " << cpu::level_name(cpu::level());
    ASSERT_LE(std::abs(y[i]), 1.f + 1e-7f);
  }
  // Odd to the bit: erf(-x) = -erf(x).
  for (size_t i = 0; i + 1 < x.size(); ++i)
    if (x[i + 1] == -x[i]) {
      EXPECT_EQ(y[i + 1], -y[i]) << x[i];
    }
}

TEST(Activation, ReluZeroesNegativesAndNaN) {
  std::vector<float> x = {-1.f,  2.f,    -0.f,   0.f,     std::numeric_limits<float>::quiet_NaN(),
                          3e38f, -3e38f, 1e-40f, -1e-40f, 5.f,
                          -5.f,  7.f,    8.f,    -9.f,    10.f,
                          11.f,  -12.f};
  std::vector<float> y = x;
  k::relu_(y.data(), static_cast<int64_t>(y.size()));
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], x[i] > 0.f ? x[i] : 0.f) << x[i];
}

namespace {

// GroupNorm of x [N, S, C] (channel-last) in double.
std::vector<double> group_norm_ref(const Tensor& x, int64_t G, const float* gamma,
                                   const float* beta, double eps, bool silu) {
  const int64_t N = x.dim(0), C = x.dim(-1), S = x.numel() / (N * C), Cg = C / G;
  std::vector<double> y(x.numel());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) {
      double sum = 0, sq = 0;
      for (int64_t p = 0; p < S; ++p)
        for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) sum += x[(n * S + p) * C + c];
      const double mean = sum / double(S * Cg);
      for (int64_t p = 0; p < S; ++p)
        for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
          const double d = x[(n * S + p) * C + c] - mean;
          sq += d * d;
        }
      const double rstd = 1 / std::sqrt(sq / double(S * Cg) + eps);
      for (int64_t p = 0; p < S; ++p)
        for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
          const int64_t i = (n * S + p) * C + c;
          double v = (x[i] - mean) * rstd * (gamma ? gamma[c] : 1.0) + (beta ? beta[c] : 0.0);
          if (silu) v = v / (1 + std::exp(-v));
          y[i] = v;
        }
    }
  return y;
}

Tensor wavy(Shape shape, float offset, float amplitude) {
  Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i)
    t[i] = offset + amplitude * std::sin(0.731f * float(i)) + 0.1f * std::cos(0.017f * float(i));
  return t;
}

}  // namespace

TEST(Norm, GroupNormMatchesDoubleDefinition) {
  // Odd channel counts leave tails; 2x1000x40 and 2x64x320 are above the parallel grain.
  for (auto [S, C, G] : std::vector<std::array<int64_t, 3>>{
           {37, 40, 4}, {5, 6, 3}, {1, 17, 1}, {1000, 40, 8}, {64, 320, 32}}) {
    for (bool silu : {false, true})
      for (bool affine : {false, true}) {
        const Tensor x = wavy({2, S, C}, 3.f, 2.f);
        std::vector<float> gamma(C), beta(C);
        for (int64_t c = 0; c < C; ++c) {
          gamma[c] = 0.5f + 0.01f * float(c);
          beta[c] = -0.3f + 0.02f * float(c);
        }
        const float* g = affine ? gamma.data() : nullptr;
        const float* b = affine ? beta.data() : nullptr;
        const Tensor y = k::group_norm(x, G, g, b, 1e-5f, silu);
        const std::vector<double> want = group_norm_ref(x, G, g, b, 1e-5, silu);
        for (int64_t i = 0; i < x.numel(); ++i)
          ASSERT_NEAR(y[i], want[i], 2e-5 * (1 + std::abs(want[i])))
              << "S=" << S << " C=" << C << " G=" << G << " silu=" << silu << " i=" << i;
      }
  }
}

TEST(Norm, LayerNormMatchesDoubleDefinition) {
  for (int64_t C : {1, 3, 7, 16, 33, 320, 1281}) {
    for (bool affine : {false, true}) {
      const int64_t R = C > 100 ? 41 : 7;         // 41x1281 is above the parallel grain
      const Tensor x = wavy({R, C}, 100.f, 1.f);  // a large mean: the variance needs care
      std::vector<float> gamma(C), beta(C);
      for (int64_t c = 0; c < C; ++c) {
        gamma[c] = 1.5f - 0.001f * float(c);
        beta[c] = 0.25f * float(c % 5);
      }
      const Tensor y =
          k::layer_norm(x, affine ? gamma.data() : nullptr, affine ? beta.data() : nullptr, 1e-5f);
      for (int64_t r = 0; r < R; ++r) {
        double sum = 0, sq = 0;
        for (int64_t c = 0; c < C; ++c) sum += x[r * C + c];
        const double mean = sum / C;
        for (int64_t c = 0; c < C; ++c) sq += (x[r * C + c] - mean) * (x[r * C + c] - mean);
        const double rstd = 1 / std::sqrt(sq / C + 1e-5);
        for (int64_t c = 0; c < C; ++c) {
          const double want =
              (x[r * C + c] - mean) * rstd * (affine ? gamma[c] : 1.0) + (affine ? beta[c] : 0.0);
          // The fp32 mean of values near 100 is off by up to 4e-6: 6e-6 after the scaling.
          ASSERT_NEAR(y[r * C + c], want, 1e-4 * (1 + std::abs(want)))
              << "C=" << C << " r=" << r << " c=" << c;
        }
      }
    }
  }
}
