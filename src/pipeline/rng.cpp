#include "pipeline/rng.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numbers>

namespace sdpal {

// The x86 kernel's float math must round exactly as torch's compiled code does: every
// multiply that feeds an add there was fused into an FMA by the compiler, so the fused
// steps below are spelled out with std::fma and nothing else may be contracted.
#if defined(__GNUC__) && !defined(__clang__)
#define SDPAL_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define SDPAL_NO_FP_CONTRACT
#endif

namespace {

float from_bits(uint32_t b) { return std::bit_cast<float>(b); }
uint32_t to_bits(float f) { return std::bit_cast<uint32_t>(f); }

// Cephes logf as vectorised in avx_mathfun (log256_ps), one lane. Input: u in (0, 1].
SDPAL_NO_FP_CONTRACT float cephes_log(float x) {
  const bool invalid = x <= 0.f;
  x = std::max(x, from_bits(0x00800000u));  // flush denormals to the smallest normal
  const int32_t exponent = static_cast<int32_t>(to_bits(x) >> 23) - 0x7f;
  x = from_bits((to_bits(x) & ~0x7f800000u) | to_bits(0.5f));  // mantissa in [0.5, 1)
  float e = static_cast<float>(exponent);
  e = e + 1.0f;
  const bool below_sqrt_half = x < 0.707106781186547524f;
  const float extra = below_sqrt_half ? x : 0.f;
  x = x - 1.0f;
  e = e - (below_sqrt_half ? 1.0f : 0.f);
  x = x + extra;
  const float z = x * x;
  constexpr float kP[9] = {7.0376836292E-2f,  -1.1514610310E-1f, 1.1676998740E-1f,
                           -1.2420140846E-1f, 1.4249322787E-1f,  -1.6668057665E-1f,
                           2.0000714765E-1f,  -2.4999993993E-1f, 3.3333331174E-1f};
  float y = kP[0];
  for (int i = 1; i < 9; ++i) y = std::fma(y, x, kP[i]);
  y = y * x;
  const float e_q1 = e * -2.12194440e-4f;
  y = std::fma(y, z, e_q1);
  y = std::fma(z, -0.5f, y);
  x = x + y;
  x = std::fma(e, 0.693359375f, x);
  return invalid ? std::numeric_limits<float>::quiet_NaN() : x;
}

// Cephes sinf/cosf as vectorised in avx_mathfun (sincos256_ps), one lane.
SDPAL_NO_FP_CONTRACT void cephes_sincos(float x, float* sin_out, float* cos_out) {
  uint32_t sign_sin = to_bits(x) & 0x80000000u;
  x = std::fabs(x);
  // Octant j (made even) and reduction x - j*pi/4 in three parts for extra precision.
  int32_t j = static_cast<int32_t>(x * 1.27323954473516f);
  j = (j + 1) & ~1;
  const float y = static_cast<float>(j);
  const uint32_t swap_sign_sin = static_cast<uint32_t>(j & 4) << 29;
  const bool use_sin_poly_for_sin = (j & 2) == 0;
  x = std::fma(y, -0.78515625f, x);
  x = std::fma(y, -2.4187564849853515625e-4f, x);
  x = std::fma(y, -3.77489497744594108e-8f, x);
  const uint32_t sign_cos = static_cast<uint32_t>(~(j - 2) & 4) << 29;
  sign_sin ^= swap_sign_sin;

  const float z = x * x;
  float cos_poly = 2.443315711809948E-005f;
  cos_poly = std::fma(cos_poly, z, -1.388731625493765E-003f);
  cos_poly = std::fma(cos_poly, z, 4.166664568298827E-002f);
  cos_poly = cos_poly * z;
  const float half_z = z * 0.5f;
  cos_poly = std::fma(cos_poly, z, -half_z);
  cos_poly = cos_poly + 1.0f;

  float sin_poly = -1.9515295891E-4f;
  sin_poly = std::fma(sin_poly, z, 8.3321608736E-3f);
  sin_poly = std::fma(sin_poly, z, -1.6666654611E-1f);
  sin_poly = sin_poly * z;
  sin_poly = std::fma(sin_poly, x, x);

  // Select with the same adds of +0 as the vector code (matters only for signed zeros).
  const float sin_part2 = use_sin_poly_for_sin ? sin_poly : 0.f;
  const float sin_part1 = use_sin_poly_for_sin ? 0.f : cos_poly;
  const float cos_part2 = sin_poly - sin_part2;
  const float cos_part1 = cos_poly - sin_part1;
  const float s = sin_part1 + sin_part2;
  const float c = cos_part1 + cos_part2;
  *sin_out = from_bits(to_bits(s) ^ sign_sin);
  *cos_out = from_bits(to_bits(c) ^ sign_cos);
}

}  // namespace

TorchCpuRng::TorchCpuRng(uint64_t seed, TorchRandnKernel kernel)
    : seed_(seed), kernel_(kernel), engine_(static_cast<uint32_t>(seed)) {}

uint64_t TorchCpuRng::next_u64() {
  const uint64_t hi = engine_();
  const uint64_t lo = engine_();
  return (hi << 32) | lo;
}

float TorchCpuRng::next_uniform_float() {
  return static_cast<float>(engine_() & 0xFFFFFFu) * (1.0f / 16777216.0f);
}

double TorchCpuRng::next_uniform_double() {
  return static_cast<double>(next_u64() & ((uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
}

SDPAL_NO_FP_CONTRACT double TorchCpuRng::next_normal_double() {
  if (cached_normal_) {
    const double v = *cached_normal_;
    cached_normal_.reset();
    return v;
  }
  const double u1 = next_uniform_double();
  const double u2 = next_uniform_double();
  const double r = std::sqrt(-2.0 * std::log1p(-u2));
  const double theta = 2.0 * std::numbers::pi * u1;
  cached_normal_ = r * std::sin(theta);
  return r * std::cos(theta);
}

SDPAL_NO_FP_CONTRACT void TorchCpuRng::box_muller_block16(float* d) const {
  if (kernel_ == TorchRandnKernel::kX86Avx2) {
    const float two_pi = static_cast<float>(2.0 * std::numbers::pi);
    for (int j = 0; j < 8; ++j) {
      const float log_u = cephes_log(1.0f - d[j]);
      const float radius = std::sqrt(-2.0f * log_u);
      const float theta = two_pi * d[j + 8];
      float s, c;
      cephes_sincos(theta, &s, &c);
      d[j] = radius * c + 0.0f;  // torch adds mean 0 (turns -0 into +0)
      d[j + 8] = radius * s + 0.0f;
    }
  } else {
    for (int j = 0; j < 8; ++j) {
      const float radius = std::sqrt(-2.0f * std::log(1.0f - d[j]));
      // torch forms theta in double (2.0f * pi<double> * u) and rounds it to float.
      const float theta = static_cast<float>(2.0 * std::numbers::pi * d[j + 8]);
      d[j] = radius * std::cos(theta) + 0.0f;
      d[j + 8] = radius * std::sin(theta) + 0.0f;
    }
  }
}

void TorchCpuRng::fill_randn(float* data, int64_t n) {
  if (n < 16) {
    for (int64_t i = 0; i < n; ++i) data[i] = static_cast<float>(next_normal_double() + 0.0);
    return;
  }
  for (int64_t i = 0; i < n; ++i) data[i] = next_uniform_float();
  for (int64_t i = 0; i + 16 <= n; i += 16) box_muller_block16(data + i);
  if (n % 16 != 0) {
    float* tail = data + n - 16;
    for (int i = 0; i < 16; ++i) tail[i] = next_uniform_float();
    box_muller_block16(tail);
  }
}

Tensor TorchCpuRng::randn(const Shape& shape) {
  Tensor t(shape);
  fill_randn(t.data(), t.numel());
  return t;
}

}  // namespace sdpal
