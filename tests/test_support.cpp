// The test helpers themselves: a comparison must fail on NaN and on shape mismatches.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cmath>

#include "support/fixtures.h"

namespace sdpal {
namespace {

TEST(TestSupport, MaxAbsDiffTreatsNanAsInfinitelyFar) {
  Tensor a({4}), b({4});
  for (int i = 0; i < 4; ++i) a.data()[i] = b.data()[i] = float(i);
  EXPECT_EQ(test::max_abs_diff(a, b), 0.0);
  a.data()[2] = NAN;
  EXPECT_TRUE(std::isinf(test::max_abs_diff(a, b)));
  b.data()[2] = NAN;  // NaN on both sides is no match either
  EXPECT_TRUE(std::isinf(test::max_abs_diff(a, b)));
  a.data()[2] = b.data()[2] = 2.f;
  b.data()[3] = 3.5f;
  EXPECT_DOUBLE_EQ(test::max_abs_diff(a, b), 0.5);
}

TEST(TestSupport, MaxAbsDiffFailsOnShapeMismatch) {
  Tensor a({4}), b({2, 2});
  double d = 0;
  EXPECT_NONFATAL_FAILURE(d = test::max_abs_diff(a, b), "shape");
  EXPECT_TRUE(std::isinf(d));
}

TEST(TestSupport, ExpectCloseFailsOnNan) {
  Tensor a({3}), b({3});
  for (int i = 0; i < 3; ++i) a.data()[i] = b.data()[i] = 1.f;
  a.data()[1] = NAN;
  EXPECT_NONFATAL_FAILURE(test::expect_close(a, b, 1e-3), "out of tolerance");
}

}  // namespace
}  // namespace sdpal
