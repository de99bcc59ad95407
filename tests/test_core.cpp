#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

using namespace sdpal;

TEST(DType, HalfRoundTripOfRepresentableValues) {
  for (float f : {0.f, 1.f, -2.5f, 65504.f, 0.000099897385f, -0.5f})
    EXPECT_EQ(half_to_float(float_to_half(f)), f);
  EXPECT_EQ(half_to_float(float_to_half(1e-4f)),
            1678.f / 16777216.f);  // nearest fp16: 1678 * 2^-24
}

TEST(DType, VectorConversionsMatchScalar) {
  std::vector<uint16_t> h(37), b(37);
  std::vector<float> f(37), out(37);
  for (int i = 0; i < 37; ++i) {
    f[i] = std::sin(i * 0.7f) * (i + 1);
    h[i] = float_to_half(f[i]);
    b[i] = float_to_bf16(f[i]);
  }
  convert_to_f32(DType::F16, h.data(), out.data(), 37);
  for (int i = 0; i < 37; ++i) EXPECT_EQ(out[i], half_to_float(h[i]));
  convert_to_f32(DType::BF16, b.data(), out.data(), 37);
  for (int i = 0; i < 37; ++i) EXPECT_EQ(out[i], bf16_to_float(b[i]));
  std::vector<uint16_t> h2(37);
  convert_f32_to_f16(f.data(), h2.data(), 37);
  EXPECT_EQ(h, h2);
}

TEST(TensorLayout, NchwNhwcRoundTrip) {
  Tensor x({2, 3, 4, 5});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i);
  Tensor y = nchw_to_nhwc(x);
  EXPECT_EQ(y[1], x[20]);  // (n0, h0, w0, c1) == (n0, c1, h0, w0)
  Tensor z = nhwc_to_nchw(y);
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(z[i], x[i]);
}
