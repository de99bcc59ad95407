#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "core/tensor.h"
#include "kernels/attention.h"
#include "kernels/flash_attention.h"

using namespace sdpal;

namespace {
Tensor random_tensor(Shape shape, std::mt19937& rng, float stddev) {
  Tensor t(std::move(shape));
  std::normal_distribution<float> dist(0.f, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = dist(rng);
  return t;
}

struct AttentionShape {
  int64_t batch, tq, tk, heads, head_dim;
};

// Flash attention must equal the double-precision reference up to fp32 rounding.
void expect_matches_naive(const AttentionShape& s, bool causal, float stddev) {
  std::mt19937 rng(static_cast<uint32_t>(s.tq * 131 + s.tk * 17 + s.heads * 7 + s.head_dim));
  const int64_t C = s.heads * s.head_dim;
  const Tensor q = random_tensor({s.batch, s.tq, C}, rng, stddev);
  const Tensor k = random_tensor({s.batch, s.tk, C}, rng, stddev);
  const Tensor v = random_tensor({s.batch, s.tk, C}, rng, 1.f);
  const Tensor want = k::attention_naive(q, k, v, s.heads, causal);
  const Tensor got = k::flash_attention(q, k, v, s.heads, causal);
  ASSERT_EQ(got.shape(), want.shape());
  float magnitude = 0.f, worst = 0.f;
  for (int64_t i = 0; i < want.numel(); ++i) {
    magnitude = std::max(magnitude, std::fabs(want[i]));
    worst = std::max(worst, std::fabs(got[i] - want[i]));
  }
  EXPECT_LE(worst, 1e-5f * magnitude)
      << "B=" << s.batch << " Tq=" << s.tq << " Tk=" << s.tk << " heads=" << s.heads
      << " D=" << s.head_dim << " causal=" << causal << " stddev=" << stddev;
}
}  // namespace

TEST(FlashAttention, MatchesNaiveAcrossShapes) {
  const AttentionShape shapes[] = {
      {1, 1, 1, 1, 8},     {1, 5, 3, 1, 8},     {2, 77, 77, 8, 64},  {1, 100, 77, 2, 40},
      {2, 73, 77, 1, 40},  {1, 64, 64, 4, 80},  {1, 65, 129, 3, 80}, {1, 150, 200, 2, 160},
      {1, 37, 77, 1, 160}, {2, 200, 130, 5, 8}, {1, 145, 66, 6, 64}, {1, 300, 300, 1, 40},
  };
  for (const auto& s : shapes)
    for (bool causal : {false, true}) expect_matches_naive(s, causal, 1.f);
}

TEST(FlashAttention, MatchesNaiveAcrossBlockBoundaries) {
  // Query blocks of 64, key blocks of 128 and micro-tiles of 6 keys / head dims: counts just off
  // every multiple, several key blocks per query block, and 77-key cross attention.
  const AttentionShape shapes[] = {
      {1, 129, 257, 2, 40}, {1, 64, 128, 1, 8},   {2, 63, 127, 2, 64},  {1, 200, 77, 2, 40},
      {1, 257, 131, 1, 80}, {1, 70, 385, 1, 160}, {1, 191, 190, 1, 13}, {1, 128, 129, 1, 6},
  };
  for (const auto& s : shapes)
    for (bool causal : {false, true}) expect_matches_naive(s, causal, 1.f);
}

TEST(FlashAttention, MatchesNaiveWithPeakedScores) {
  // Large logits make the running max jump between key blocks, exercising the rescaling.
  for (bool causal : {false, true}) {
    expect_matches_naive({1, 90, 250, 2, 40}, causal, 3.f);
    expect_matches_naive({1, 77, 77, 8, 64}, causal, 3.f);
    expect_matches_naive({1, 140, 400, 1, 80}, causal, 4.f);
  }
}

TEST(FlashAttention, CausalWithMoreQueriesThanKeys) {
  expect_matches_naive({1, 130, 70, 2, 40}, true, 1.f);
}

TEST(FlashAttention, RejectsMismatchedShapes) {
  const Tensor q({1, 4, 16}), k({1, 5, 16}), v({1, 5, 8});
  EXPECT_ANY_THROW(k::flash_attention(q, k, v, 2, false));
  EXPECT_ANY_THROW(k::flash_attention(q, k, k, 3, false));
}
