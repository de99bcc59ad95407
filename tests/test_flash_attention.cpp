#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "core/cpu.h"
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

using Kernel = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, int64_t, bool);

// Largest |got - want| over the largest |want|; NaN where got or want has a NaN, so that a NaN
// fails any bound.
float relative_error(const Tensor& got, const Tensor& want) {
  float magnitude = 0.f, worst = 0.f;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const float diff = std::fabs(got[i] - want[i]);
    if (std::isnan(diff)) return std::numeric_limits<float>::quiet_NaN();
    magnitude = std::max(magnitude, std::fabs(want[i]));
    worst = std::max(worst, diff);
  }
  return worst / std::max(magnitude, std::numeric_limits<float>::min());
}

// Both kernels of the level (the hand-written AVX-512 one where it runs, and the portable one)
// must equal the double-precision reference up to fp32 rounding.
void expect_matches_naive(const AttentionShape& s, bool causal, float stddev) {
  std::mt19937 rng(static_cast<uint32_t>(s.tq * 131 + s.tk * 17 + s.heads * 7 + s.head_dim));
  const int64_t C = s.heads * s.head_dim;
  const Tensor q = random_tensor({s.batch, s.tq, C}, rng, stddev);
  const Tensor k = random_tensor({s.batch, s.tk, C}, rng, stddev);
  const Tensor v = random_tensor({s.batch, s.tk, C}, rng, 1.f);
  const Tensor want = k::attention_naive(q, k, v, s.heads, causal);
  for (const Kernel kernel : {&k::flash_attention, &k::flash_attention_portable}) {
    const Tensor got = kernel(q, k, v, s.heads, causal);
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LE(relative_error(got, want), 1e-5f)
        << (kernel == &k::flash_attention ? "flash_attention" : "flash_attention_portable")
        << " at " << cpu::level_name(cpu::level()) << ": B=" << s.batch << " Tq=" << s.tq
        << " Tk=" << s.tk << " heads=" << s.heads << " D=" << s.head_dim << " causal=" << causal
        << " stddev=" << stddev;
  }
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

TEST(FlashAttention, MatchesNaiveAcrossVectorWidths) {
  // Query blocks are 4 vectors (64 queries on AVX-512, 16 on NEON) or 2 (16 on AVX2, 8 on SSE4),
  // micro-tiles 6 or 4 rows: query counts off each of them, odd head dims for the transposes'
  // 4 x 4 blocks and their edges.
  const AttentionShape shapes[] = {
      {1, 7, 9, 1, 7},    {1, 8, 8, 2, 12},   {1, 9, 17, 1, 9},  {1, 15, 33, 3, 11},
      {1, 17, 77, 2, 40}, {1, 23, 77, 1, 5},  {1, 25, 41, 2, 3}, {2, 33, 65, 1, 19},
      {1, 47, 130, 1, 4}, {1, 49, 129, 2, 1}, {1, 12, 5, 1, 2},  {1, 3, 200, 1, 41},
  };
  for (const auto& s : shapes)
    for (bool causal : {false, true}) expect_matches_naive(s, causal, 1.f);
}

TEST(FlashAttention, NaNInputsReachTheOutput) {
  // A NaN must not be clamped away in the softmax (the exp2 polynomial's range reduction) nor
  // hidden by the running max: the outputs of the queries that see it are NaN, as in the
  // reference; the other outputs stay finite.
  const int64_t B = 1, Tq = 70, Tk = 140, H = 2, D = 40, C = H * D;
  std::mt19937 rng(7);
  const Tensor q0 = random_tensor({B, Tq, C}, rng, 1.f);
  const Tensor k0 = random_tensor({B, Tk, C}, rng, 1.f);
  const Tensor v0 = random_tensor({B, Tk, C}, rng, 1.f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const auto query_nan = [&](const Tensor& out, int64_t i, int64_t h) {
    bool any = false;
    for (int64_t e = 0; e < D; ++e) any |= std::isnan(out[i * C + h * D + e]);
    return any;
  };
  for (const Kernel kernel : {&k::flash_attention, &k::flash_attention_portable})
    for (bool causal : {false, true}) {
      Tensor q = q0, k = k0, v = v0;
      q[37 * C + 3] = nan;       // query 37, head 0
      k[100 * C + D + 5] = nan;  // key 100, head 1: every query that sees it
      v[130 * C + 2] = nan;      // key 130, head 0: dim 2 of every query that sees it
      const Tensor out = kernel(q, k, v, H, causal);
      const Tensor want = k::attention_naive(q, k, v, H, causal);
      for (int64_t i = 0; i < Tq; ++i) {
        EXPECT_EQ(query_nan(out, i, 0), i == 37 || !causal) << "head 0 query " << i;
        EXPECT_EQ(query_nan(out, i, 1), !causal) << "head 1 query " << i;
        EXPECT_EQ(query_nan(want, i, 0), i == 37 || !causal);
      }
    }
}

TEST(FlashAttention, RejectsMismatchedShapes) {
  const Tensor q({1, 4, 16}), k({1, 5, 16}), v({1, 5, 8});
  EXPECT_ANY_THROW(k::flash_attention(q, k, v, 2, false));
  EXPECT_ANY_THROW(k::flash_attention(q, k, k, 3, false));
  EXPECT_ANY_THROW(k::flash_attention_portable(q, k, v, 2, false));
}
