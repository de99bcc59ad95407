#include <gtest/gtest.h>

#include "core/dtype.h"
#include "core/tensor.h"

using namespace sdpal;

TEST(DType, HalfRoundTrip) {
  for (float f : {0.f, 1.f, -2.5f, 65504.f, 1e-4f}) EXPECT_EQ(half_to_float(float_to_half(f)), f);
}
