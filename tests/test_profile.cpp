// Per-op accounting: only the outermost scope on a thread counts, nothing is recorded while
// disabled, and kernels report their FLOPs.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "core/profile.h"
#include "kernels/gemm.h"

using namespace sdpal;

TEST(Profile, OutermostScopeCountsOnce) {
  prof::reset();
  prof::enable(true);
  {
    prof::OpScope outer(prof::Op::conv, 100);
    prof::OpScope inner(prof::Op::gemm, 50);  // e.g. a 1x1 convolution running as a GEMM
    // A sleep lasts at least this long, however busy the machine: a lower bound on the time.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  { prof::OpScope again(prof::Op::gemm, 7); }
  prof::enable(false);
  { prof::OpScope off(prof::Op::norm); }
  const prof::Totals t = prof::totals();
  EXPECT_EQ(t[int(prof::Op::conv)].calls, 1);
  EXPECT_EQ(t[int(prof::Op::conv)].flops, 100);
  EXPECT_EQ(t[int(prof::Op::gemm)].calls, 1);
  EXPECT_EQ(t[int(prof::Op::gemm)].flops, 7);
  EXPECT_EQ(t[int(prof::Op::norm)].calls, 0);
  EXPECT_GE(t[int(prof::Op::conv)].seconds, 0.019);  // the outer scope holds the sleep
  EXPECT_LT(t[int(prof::Op::gemm)].seconds, t[int(prof::Op::conv)].seconds);
}

TEST(Profile, DisabledWhileScopeOpenedIsBalanced) {
  prof::reset();
  { prof::OpScope off(prof::Op::norm); }  // disabled: must not disturb the nesting depth
  prof::enable(true);
  { prof::OpScope on(prof::Op::attention, 3); }
  prof::enable(false);
  EXPECT_EQ(prof::totals()[int(prof::Op::attention)].calls, 1);
}

TEST(Profile, GemmReportsItsFlops) {
  const int64_t M = 5, N = 7, K = 3;
  std::vector<float> a(M * K, 1.f), w(N * K, 2.f), y(M * N);
  prof::reset();
  prof::enable(true);
  k::linear(a.data(), M, K, w.data(), nullptr, N, y.data());
  prof::enable(false);
  EXPECT_EQ(prof::totals()[int(prof::Op::gemm)].flops, 2.0 * M * N * K);
  EXPECT_EQ(y[0], 6.f);
  EXPECT_EQ(prof::op_name(prof::Op::expansion), "weight_expansion");
}
