// The vectorised activations against double-precision definitions, over a dense range, extremes
// and lengths that leave a masked tail.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/activation.h"

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
