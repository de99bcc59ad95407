#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "pipeline/rng.h"

using namespace sdpal;

namespace {

// Reference values produced by PyTorch 1.13.1 (CPU), one generator per case:
//   g = torch.Generator("cpu").manual_seed(seed)
//   parts = [torch.randn(shape, generator=g) for shape in shapes]
//   fnv1a64(b"".join(p.numpy().tobytes() for p in parts)), parts[0].flatten()[:4]
// run once with ATEN_CPU_CAPABILITY=avx2 (x86 kernel) and once with =default (portable kernel).
struct TorchReference {
  const char* name;
  uint64_t seed;
  std::vector<Shape> shapes;
  uint64_t fnv1a64;
  float first[4];
};

const std::vector<TorchReference> kX86Avx2 = {
    {"Seed42Latent512",
     42ULL,
     {{1, 4, 64, 64}},
     0xa6f589a085841b88ULL,
     {1.9269152879714966f, 1.4872840642929077f, 0.9007171988487244f, -2.1055209636688232f}},
    {"Seed0FixtureShape",
     0ULL,
     {{2, 4, 8, 16}},
     0x0c7b4c8c366cd943ULL,
     {-1.1258398294448853f, -1.152360200881958f, -0.2505785822868347f, -0.4338788092136383f}},
    {"TailRefill17",
     1234ULL,
     {{17}},
     0x0040866a94abd8d2ULL,
     {-0.1117185652256012f, -0.09228753298521042f, -0.704919695854187f, -1.6023621559143066f}},
    {"TailRefill100",
     7ULL,
     {{100}},
     0x3c97a2b7827d7b09ULL,
     {-0.8201345205307007f, 0.39563116431236267f, 0.8989084959030151f, -1.3884038925170898f}},
    {"SmallDrawsShareCache",
     3ULL,
     {{5}, {3}, {16}, {1}},
     0x5be772be6555bc63ULL,
     {0.8032760620117188f, 0.17483338713645935f, 0.08897809684276581f, -0.6137180328369141f}},
    {"MixedSizes",
     99ULL,
     {{1, 4, 8, 8}, {7}, {1, 4, 8, 8}},
     0xe0a1dcd716821199ULL,
     {0.29946109652519226f, -2.6428585052490234f, 0.7233136296272278f, 0.8390920162200928f}},
    {"SeedAbove32Bits",
     1099511627781ULL,
     {{1, 4, 16, 16}},
     0xa9e52f3efb1c27c9ULL,
     {1.8423298597335815f, 0.5188871622085571f, -1.7119213342666626f, -1.7013792991638184f}},
};

const std::vector<TorchReference> kPortable = {
    {"Seed42Latent512",
     42ULL,
     {{1, 4, 64, 64}},
     0x6df84c3e1ccde7e3ULL,
     {1.9269150495529175f, 1.4872841835021973f, 0.9007171988487244f, -2.1055214405059814f}},
    {"Seed0FixtureShape",
     0ULL,
     {{2, 4, 8, 16}},
     0x0cc02c103e329462ULL,
     {-1.1258398294448853f, -1.152360200881958f, -0.2505785822868347f, -0.4338788390159607f}},
    {"TailRefill17",
     1234ULL,
     {{17}},
     0x8bcd90524ca39f57ULL,
     {-0.1117185652256012f, -0.09228754043579102f, -0.7049196362495422f, -1.6023621559143066f}},
    {"TailRefill100",
     7ULL,
     {{100}},
     0xb01ddcca8cdf8d6bULL,
     {-0.8201345205307007f, 0.39563092589378357f, 0.8989079594612122f, -1.3884040117263794f}},
    {"SmallDrawsShareCache",
     3ULL,
     {{5}, {3}, {16}, {1}},
     0x54eb6702a68c7d54ULL,
     {0.8032760620117188f, 0.17483338713645935f, 0.08897809684276581f, -0.6137180328369141f}},
    {"MixedSizes",
     99ULL,
     {{1, 4, 8, 8}, {7}, {1, 4, 8, 8}},
     0x7e012ae1e19394a9ULL,
     {0.29946091771125793f, -2.6428585052490234f, 0.7233125567436218f, 0.8390918970108032f}},
    {"SeedAbove32Bits",
     1099511627781ULL,
     {{1, 4, 16, 16}},
     0x2c034916ebfa4bafULL,
     {1.8423298597335815f, 0.5188871622085571f, -1.7119216918945312f, -1.701379418373108f}},
};

uint64_t fnv1a64(const std::vector<float>& values) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
  for (size_t i = 0; i < values.size() * sizeof(float); ++i) {
    h ^= bytes[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

void check_against_torch(const std::vector<TorchReference>& refs, TorchRandnKernel kernel) {
  for (const auto& ref : refs) {
    SCOPED_TRACE(ref.name);
    TorchCpuRng rng(ref.seed, kernel);
    std::vector<float> all;
    Tensor first;
    for (const auto& shape : ref.shapes) {
      Tensor t = rng.randn(shape);
      EXPECT_EQ(t.shape(), shape);
      all.insert(all.end(), t.data(), t.data() + t.numel());
      if (first.empty()) first = std::move(t);
    }
    for (int i = 0; i < 4; ++i) EXPECT_EQ(first[i], ref.first[i]) << "element " << i;
    EXPECT_EQ(fnv1a64(all), ref.fnv1a64) << "values differ from torch.randn somewhere";
  }
}

}  // namespace

TEST(TorchCpuRng, MatchesTorchX86Kernel) {
  check_against_torch(kX86Avx2, TorchRandnKernel::kX86Avx2);
}

TEST(TorchCpuRng, MatchesTorchPortableKernel) {
  check_against_torch(kPortable, TorchRandnKernel::kPortable);
}

TEST(TorchCpuRng, EngineIsStandardMt19937) {
  // The C++ standard's check values for mt19937 with the default seed 5489.
  TorchCpuRng rng(5489);
  EXPECT_EQ(rng.next_u32(), 3499211612u);
  for (int i = 1; i < 9999; ++i) rng.next_u32();
  EXPECT_EQ(rng.next_u32(), 4123659995u);
}

TEST(TorchCpuRng, Random64IsHighThenLowWord) {
  TorchCpuRng a(17), b(17);
  const uint64_t hi = a.next_u32(), lo = a.next_u32();
  EXPECT_EQ(b.next_u64(), (hi << 32) | lo);
}

TEST(TorchCpuRng, SameSeedSameNoiseDifferentSeedDifferentNoise) {
  TorchCpuRng a(1234), b(1234), c(1235);
  Tensor ta = a.randn({1, 4, 8, 8}), tb = b.randn({1, 4, 8, 8}), tc = c.randn({1, 4, 8, 8});
  EXPECT_EQ(std::memcmp(ta.data(), tb.data(), ta.numel() * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(ta.data(), tc.data(), ta.numel() * sizeof(float)), 0);
  // The generator advances: a second draw is new noise.
  Tensor ta2 = a.randn({1, 4, 8, 8});
  EXPECT_NE(std::memcmp(ta.data(), ta2.data(), ta.numel() * sizeof(float)), 0);
}

TEST(TorchCpuRng, LargeDrawIsStandardNormal) {
  for (auto kernel : {TorchRandnKernel::kX86Avx2, TorchRandnKernel::kPortable}) {
    TorchCpuRng rng(2024, kernel);
    Tensor t = rng.randn({1 << 20});
    double sum = 0, sum_sq = 0;
    int64_t beyond_2sigma = 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      ASSERT_TRUE(std::isfinite(t[i]));
      sum += t[i];
      sum_sq += double(t[i]) * t[i];
      beyond_2sigma += std::fabs(t[i]) > 2.0f;
    }
    const double n = double(t.numel());
    const double mean = sum / n, var = sum_sq / n - mean * mean;
    EXPECT_NEAR(mean, 0.0, 5.0 / std::sqrt(n));
    EXPECT_NEAR(var, 1.0, 0.01);
    EXPECT_NEAR(beyond_2sigma / n, 0.0455, 0.002);  // two-sided tail of N(0,1)
  }
}

TEST(TorchCpuRng, KernelsAgreeToRounding) {
  TorchCpuRng a(77, TorchRandnKernel::kX86Avx2), b(77, TorchRandnKernel::kPortable);
  Tensor ta = a.randn({4096}), tb = b.randn({4096});
  for (int64_t i = 0; i < ta.numel(); ++i)
    ASSERT_NEAR(ta[i], tb[i], 1e-5f * std::max(1.0f, std::fabs(tb[i]))) << i;
}
