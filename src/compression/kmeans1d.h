// Weighted k-means in one dimension.
//
// kmeans1d_optimal finds the globally optimal clustering (minimum sum of weighted squared
// errors) by dynamic programming over the sorted values: in 1-D every optimal cluster is a
// contiguous run of the sorted values, so the problem is a k-way partition of a sequence, and
// the cost of a run is O(1) from prefix sums of w, w*x and w*x^2 (in double, centred on the
// mean). The split points are monotone (the cost is Monge), which bounds the work to
// O(k n log n) evaluations (divide and conquer over each DP layer), further narrowed by Knuth's
// bound that a split never moves left when a cluster is added.
//
// kmeans1d_lloyd is the classic heuristic (k-means++ seeding, then Lloyd iterations); the tests
// use it as the comparison the exact solver must never lose to.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace sdpal {

struct KMeansResult {
  std::vector<double> centroids;  // ascending, one per non-empty cluster
  std::vector<int> assignment;    // cluster of each input value
  double sse = 0;                 // sum of weight * (value - centroid)^2
};

// values: strictly ascending and finite; weights: positive, one per value; k >= 1.
// With k >= values.size() every value is its own centroid (so fewer than k centroids).
// Throws sdpal::Error on invalid input.
KMeansResult kmeans1d_optimal(std::span<const double> values, std::span<const double> weights,
                              int k);

// Lloyd's algorithm from a seeded k-means++ start; values need not be sorted or distinct.
// Centroids come back ascending; clusters that end up empty are dropped.
KMeansResult kmeans1d_lloyd(std::span<const double> values, std::span<const double> weights, int k,
                            uint64_t seed, int max_iterations = 1000);

// Sum of weight * (value - centroid[assignment])^2, accumulated in double.
double kmeans1d_sse(std::span<const double> values, std::span<const double> weights,
                    std::span<const double> centroids, std::span<const int> assignment);

}  // namespace sdpal
