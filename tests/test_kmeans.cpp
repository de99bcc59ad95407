// Exact 1-D k-means: the dynamic programme must reach the true optimum (checked by exhaustive
// enumeration of contiguous partitions and by a plain O(k n^2) DP) and never lose to Lloyd's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <random>

#include "compression/kmeans1d.h"
#include "core/error.h"

using namespace sdpal;

namespace {

struct Data {
  std::vector<double> values, weights;
};

// Sorted distinct values with weights: `n` draws (rounded to `grid` so duplicates occur), each
// draw adding a random weight to its value.
Data random_histogram(std::mt19937_64& rng, int n, double grid, bool integer_weights) {
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> uw(0.1, 3.0);
  std::uniform_int_distribution<int> iw(1, 5);
  std::map<double, double> acc;
  for (int i = 0; i < n; ++i) {
    double v = nd(rng);
    if (grid > 0) v = std::round(v / grid) * grid;
    acc[v] += integer_weights ? iw(rng) : uw(rng);
  }
  Data d;
  for (const auto& [v, w] : acc) {
    d.values.push_back(v);
    d.weights.push_back(w);
  }
  return d;
}

double cluster_cost(const Data& d, size_t b, size_t e) {  // [b, e)
  double sw = 0, swx = 0;
  for (size_t i = b; i < e; ++i) {
    sw += d.weights[i];
    swx += d.weights[i] * d.values[i];
  }
  const double mean = swx / sw;
  double c = 0;
  for (size_t i = b; i < e; ++i) c += d.weights[i] * (d.values[i] - mean) * (d.values[i] - mean);
  return c;
}

// Minimum SSE over every split of the sorted values into exactly k contiguous clusters.
double brute_force(const Data& d, int k) {
  const size_t n = d.values.size();
  double best = std::numeric_limits<double>::infinity();
  std::function<void(size_t, int, double)> rec = [&](size_t start, int left, double acc) {
    if (left == 1) {
      best = std::min(best, acc + cluster_cost(d, start, n));
      return;
    }
    for (size_t end = start + 1; end + (left - 1) <= n; ++end)
      rec(end, left - 1, acc + cluster_cost(d, start, end));
  };
  rec(0, k, 0.0);
  return best;
}

// Textbook O(k n^2) DP without any monotonicity assumption.
double plain_dp(const Data& d, int k) {
  const size_t n = d.values.size();
  std::vector<double> prev(n + 1, std::numeric_limits<double>::infinity()), cur(n + 1);
  prev[0] = 0;
  for (int m = 1; m <= k; ++m) {
    std::fill(cur.begin(), cur.end(), std::numeric_limits<double>::infinity());
    for (size_t i = 1; i <= n; ++i)
      for (size_t j = m - 1; j < i; ++j)
        if (prev[j] < std::numeric_limits<double>::infinity())
          cur[i] = std::min(cur[i], prev[j] + cluster_cost(d, j, i));
    std::swap(prev, cur);
  }
  return prev[n];
}

// The result is self-consistent: contiguous ascending clusters, centroids = weighted means,
// sse matches a recomputation.
void expect_consistent(const Data& d, const KMeansResult& r) {
  ASSERT_EQ(r.assignment.size(), d.values.size());
  for (size_t i = 1; i < r.assignment.size(); ++i) {
    EXPECT_GE(r.assignment[i], r.assignment[i - 1]);
    EXPECT_LE(r.assignment[i], r.assignment[i - 1] + 1);
  }
  if (!r.assignment.empty()) {
    EXPECT_EQ(r.assignment.front(), 0);
    EXPECT_EQ(r.assignment.back() + 1, static_cast<int>(r.centroids.size()));
  }
  for (size_t c = 0; c < r.centroids.size(); ++c) {
    double sw = 0, swx = 0;
    for (size_t i = 0; i < d.values.size(); ++i)
      if (r.assignment[i] == static_cast<int>(c)) {
        sw += d.weights[i];
        swx += d.weights[i] * d.values[i];
      }
    EXPECT_NEAR(r.centroids[c], swx / sw, 1e-12 * (1 + std::abs(swx / sw)));
  }
  EXPECT_DOUBLE_EQ(r.sse, kmeans1d_sse(d.values, d.weights, r.centroids, r.assignment));
}

}  // namespace

TEST(KMeans1D, EqualsBruteForceOnSmallInputs) {
  std::mt19937_64 rng(7);
  int cases = 0;
  for (int trial = 0; trial < 60; ++trial) {
    // Coarse grids give duplicates (merged into weights), fine ones mostly distinct values.
    const double grid = trial % 3 == 0 ? 0.25 : trial % 3 == 1 ? 0.01 : 0.0;
    const Data d = random_histogram(rng, 2 + trial % 11, grid, trial % 2 == 0);
    const int n = static_cast<int>(d.values.size());
    for (int k = 1; k <= n; ++k) {
      const KMeansResult r = kmeans1d_optimal(d.values, d.weights, k);
      expect_consistent(d, r);
      EXPECT_EQ(static_cast<int>(r.centroids.size()), k);
      const double best = brute_force(d, k);
      EXPECT_NEAR(r.sse, best, 1e-10 * (1 + best)) << "n=" << n << " k=" << k;
      ++cases;
    }
  }
  EXPECT_GT(cases, 200);
}

TEST(KMeans1D, EqualsPlainDynamicProgramme) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 6; ++trial) {
    const Data d = random_histogram(rng, 150 + 40 * trial, trial % 2 ? 0.02 : 0.0, trial % 3 == 0);
    for (int k : {2, 3, 7, 16, 40}) {
      const KMeansResult r = kmeans1d_optimal(d.values, d.weights, k);
      expect_consistent(d, r);
      const double best = plain_dp(d, k);
      EXPECT_NEAR(r.sse, best, 1e-10 * (1 + best)) << "trial " << trial << " k=" << k;
    }
  }
}

TEST(KMeans1D, KAtLeastDistinctGivesEveryValueItsOwnCentroid) {
  std::mt19937_64 rng(3);
  const Data d = random_histogram(rng, 9, 0.0, true);
  for (int k : {static_cast<int>(d.values.size()), static_cast<int>(d.values.size()) + 1, 256}) {
    const KMeansResult r = kmeans1d_optimal(d.values, d.weights, k);
    ASSERT_EQ(r.centroids.size(), d.values.size());
    for (size_t i = 0; i < d.values.size(); ++i) {
      EXPECT_EQ(r.centroids[i], d.values[i]);
      EXPECT_EQ(r.assignment[i], static_cast<int>(i));
    }
    EXPECT_EQ(r.sse, 0.0);
  }
}

TEST(KMeans1D, NeverWorseThanLloyd) {
  int compared = 0, strictly_better = 0;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    std::mt19937_64 rng(seed);
    for (int n : {60, 600, 6000}) {
      const Data d = random_histogram(rng, n, seed % 2 ? 1e-3 : 0.0, seed % 2 == 0);
      for (int k : {2, 3, 5, 16, 64}) {
        if (k > static_cast<int>(d.values.size())) continue;
        const KMeansResult opt = kmeans1d_optimal(d.values, d.weights, k);
        for (uint64_t s = 0; s < 3; ++s) {
          const KMeansResult lloyd = kmeans1d_lloyd(d.values, d.weights, k, seed * 100 + s);
          EXPECT_LE(opt.sse, lloyd.sse * (1 + 1e-12) + 1e-15)
              << "n=" << n << " k=" << k << " seed " << seed;
          ++compared;
          strictly_better += opt.sse < lloyd.sse * (1 - 1e-9);
        }
      }
    }
  }
  EXPECT_GT(compared, 100);
  EXPECT_GT(strictly_better, 0);  // Lloyd's does get stuck in local optima
}

TEST(KMeans1D, WeightsActLikeRepetition) {
  // A value of weight 3 clusters exactly like three copies of it would.
  const std::vector<double> v = {0.0, 1.0, 1.5, 4.0, 9.0};
  const std::vector<double> w = {3.0, 1.0, 1.0, 2.0, 1.0};
  std::vector<double> rv, rw;
  for (size_t i = 0; i < v.size(); ++i)
    for (int c = 0; c < static_cast<int>(w[i]); ++c) {
      rv.push_back(v[i]);
      rw.push_back(1.0);
    }
  for (int k = 1; k <= 4; ++k) {
    const KMeansResult a = kmeans1d_optimal(v, w, k);
    const KMeansResult b = kmeans1d_lloyd(rv, rw, k, 5);
    EXPECT_LE(a.sse, b.sse + 1e-12);
  }
}

TEST(KMeans1D, DegenerateInputs) {
  const std::vector<double> one = {0.5}, w1 = {7.0};
  for (int k : {1, 2, 16}) {
    const KMeansResult r = kmeans1d_optimal(one, w1, k);
    ASSERT_EQ(r.centroids.size(), 1u);
    EXPECT_EQ(r.centroids[0], 0.5);
    EXPECT_EQ(r.assignment, std::vector<int>{0});
    EXPECT_EQ(r.sse, 0.0);
    const KMeansResult l = kmeans1d_lloyd(one, w1, k, 1);
    ASSERT_EQ(l.centroids.size(), 1u);
    EXPECT_EQ(l.centroids[0], 0.5);
  }
  // All values equal (Lloyd's accepts repeats): one cluster, zero error.
  const std::vector<double> same(50, -2.0), ws(50, 1.0);
  const KMeansResult l = kmeans1d_lloyd(same, ws, 4, 9);
  ASSERT_EQ(l.centroids.size(), 1u);
  EXPECT_EQ(l.centroids[0], -2.0);
  EXPECT_EQ(l.sse, 0.0);
  // Empty input.
  EXPECT_TRUE(kmeans1d_optimal({}, {}, 3).centroids.empty());
  // k = 1: the weighted mean.
  const std::vector<double> v = {1.0, 2.0, 4.0}, w = {1.0, 1.0, 2.0};
  const KMeansResult r = kmeans1d_optimal(v, w, 1);
  EXPECT_DOUBLE_EQ(r.centroids[0], 11.0 / 4.0);
  // Two well separated blobs with k = 2 split between them.
  const std::vector<double> blobs = {-10.0, -9.9, -9.8, 9.8, 9.9, 10.0}, bw(6, 1.0);
  const KMeansResult b = kmeans1d_optimal(blobs, bw, 2);
  EXPECT_EQ(b.assignment, (std::vector<int>{0, 0, 0, 1, 1, 1}));
}

TEST(KMeans1D, RejectsInvalidInput) {
  const std::vector<double> v = {1.0, 2.0}, w = {1.0, 1.0};
  EXPECT_THROW(kmeans1d_optimal(v, w, 0), Error);
  EXPECT_THROW(kmeans1d_optimal(std::vector<double>{2.0, 1.0}, w, 1), Error);  // not ascending
  EXPECT_THROW(kmeans1d_optimal(std::vector<double>{1.0, 1.0}, w, 1), Error);  // not distinct
  EXPECT_THROW(kmeans1d_optimal(v, std::vector<double>{1.0, 0.0}, 1), Error);  // zero weight
  EXPECT_THROW(kmeans1d_optimal(v, std::vector<double>{1.0}, 1), Error);       // size mismatch
  EXPECT_THROW(kmeans1d_optimal(std::vector<double>{1.0, NAN}, w, 1), Error);
}

// A large fp16-sized histogram (60k distinct values, 256 clusters; too large for the plain DP):
// the result is self-consistent, more clusters lower the error, and Lloyd's does no better.
// (Its speed is a benchmark's business, not a test's.)
TEST(KMeans1D, LargeInputIsConsistentAndNoWorseThanLloyd) {
  std::mt19937_64 rng(5);
  Data d;
  d.values.resize(60000);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (auto& x : d.values) x = nd(rng);
  std::sort(d.values.begin(), d.values.end());
  d.values.erase(std::unique(d.values.begin(), d.values.end()), d.values.end());
  d.weights.resize(d.values.size());
  std::uniform_int_distribution<int> iw(1, 1000);
  for (auto& x : d.weights) x = iw(rng);
  const KMeansResult r = kmeans1d_optimal(d.values, d.weights, 256);
  ASSERT_EQ(r.centroids.size(), 256u);
  EXPECT_TRUE(std::is_sorted(r.centroids.begin(), r.centroids.end()));
  expect_consistent(d, r);
  const KMeansResult half = kmeans1d_optimal(d.values, d.weights, 128);
  expect_consistent(d, half);
  EXPECT_LT(r.sse, half.sse);
  const KMeansResult l = kmeans1d_lloyd(d.values, d.weights, 256, 1, 50);
  EXPECT_LE(r.sse, l.sse * (1 + 1e-12));
}
