// Exact 1-D k-means by dynamic programming, and Lloyd's algorithm for comparison. The DP's inner
// minimum over split candidates is a Highway kernel; every level computes each candidate's cost
// with the same double operations and keeps the leftmost minimum, so the result is identical.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "compression/kmeans1d.cpp"
#include "compression/kmeans1d.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "compression/kmeans1d.h"
#include "core/dispatch.h"
#include "core/error.h"

#ifndef SDPAL_KMEANS1D_ONCE
#define SDPAL_KMEANS1D_ONCE
namespace sdpal {
// Readable entries past the end of the DP's arrays: the vector minimum reads whole vectors.
constexpr int64_t kPad = 8;
}  // namespace sdpal
#endif

HWY_BEFORE_NAMESPACE();
namespace sdpal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// min over j in [a, b] of prev[j - 1] + cost of the cluster [j, i], where with the prefix sums'
// totals at i + 1 (W, WX, WXX) cost = (WXX - wxx[j]) - (WX - wx[j])^2 / (W - w[j]). Ties go to
// the smallest j (*best_j). a <= b; the arrays hold kPad readable entries past b (the last
// vector step reads them and forces those lanes to +inf).
inline double ArgminSplit(const double* w, const double* wx, const double* wxx, const double* prev,
                          double W, double WX, double WXX, int64_t a, int64_t b, int64_t* best_j) {
  const hn::ScalableTag<double> dd;
  const hn::RebindToSigned<decltype(dd)> di;
  static_assert(hn::MaxLanes(dd) <= kPad, "padding too small for the vector width");
  const int64_t N = static_cast<int64_t>(hn::Lanes(dd));
  const auto vW = hn::Set(dd, W), vWX = hn::Set(dd, WX), vWXX = hn::Set(dd, WXX);
  const auto inf = hn::Set(dd, std::numeric_limits<double>::infinity());
  auto vbest = inf;
  auto varg = hn::Set(di, a);
  auto vj = hn::Iota(di, a);
  const auto step = hn::Set(di, N);
  for (int64_t j = a; j <= b; j += N) {
    const auto sw = hn::Sub(vW, hn::LoadU(dd, w + j));
    const auto swx = hn::Sub(vWX, hn::LoadU(dd, wx + j));
    const auto swxx = hn::Sub(vWXX, hn::LoadU(dd, wxx + j));
    const auto c = hn::Sub(swxx, hn::Div(hn::Mul(swx, swx), sw));
    // Lanes past b may compute 0 / 0; they become +inf.
    const auto v = hn::IfThenElse(hn::FirstN(dd, static_cast<size_t>(b + 1 - j)),
                                  hn::Add(hn::LoadU(dd, prev + j - 1), c), inf);
    const auto better = hn::Lt(v, vbest);  // strict: each lane keeps its leftmost minimum
    vbest = hn::IfThenElse(better, v, vbest);
    varg = hn::IfThenElse(hn::RebindMask(di, better), vj, varg);
    vj = hn::Add(vj, step);
  }
  // The smallest value, and among the lanes holding it the smallest j (lane reductions: a loop
  // over stored lanes measured 2x slower overall on AVX-512).
  const auto vmin = hn::MinOfLanes(dd, vbest);
  const double best = hn::GetLane(vmin);
  const auto at_best = hn::RebindMask(di, hn::Eq(vbest, vmin));
  const int64_t arg = hn::GetLane(
      hn::MinOfLanes(di, hn::IfThenElse(at_best, varg, hn::Set(di, hwy::LimitsMax<int64_t>()))));
  *best_j = best < std::numeric_limits<double>::infinity() ? arg : a;
  return best;
}

// One layer of the DP: cur[i] = min over j in [jmin, i] of prev[j - 1] + cost(j, i), for i in
// [ilo, ihi], recording the leftmost minimising j in opt[i]. Two monotonicity properties of the
// Monge cost narrow the search: opt[i] <= opt[i + 1] (divide and conquer over i), and the last
// cluster starts no earlier than with one cluster fewer, opt[i] >= prev_opt[i] (Knuth's bound;
// prev_opt may be null, and covers i <= prev_opt_end only).
class LayerSolver {
 public:
  LayerSolver(const double* w, const double* wx, const double* wxx, const double* prev,
              const int32_t* prev_opt, int64_t prev_opt_end, double* cur, int32_t* opt,
              int64_t jmin)
      : w_(w),
        wx_(wx),
        wxx_(wxx),
        prev_(prev),
        prev_opt_(prev_opt),
        prev_opt_end_(prev_opt_end),
        cur_(cur),
        opt_(opt),
        jmin_(jmin) {}

  // Fills i in [ilo, ihi] with split candidates j in [jlo, jhi]. Divide and conquer visited
  // level by level: at step s every i whose offset + 1 is an odd multiple of s is solved between
  // the already solved i - s and i + s. The solves of one level are independent, so they overlap
  // in the CPU instead of forming one long dependency chain as a depth-first recursion would.
  void solve(int64_t ilo, int64_t ihi, int64_t jlo, int64_t jhi) {
    const int64_t n = ihi - ilo + 1;
    int64_t top = 1;
    while (top * 2 <= n) top *= 2;
    for (int64_t s = top; s >= 1; s /= 2) {
      for (int64_t off = s - 1; off < n; off += 2 * s) {
        const int64_t i = ilo + off;
        int64_t a = std::max(off >= s ? static_cast<int64_t>(opt_[i - s]) : jlo, jmin_);
        const int64_t b = std::min(off + s < n ? static_cast<int64_t>(opt_[i + s]) : jhi, i);
        // Rounding could in principle make the two bounds cross; the first one then wins.
        if (prev_opt_ && i <= prev_opt_end_ && prev_opt_[i] <= b)
          a = std::max<int64_t>(a, prev_opt_[i]);
        int64_t best_j;
        cur_[i] = argmin(i, a, b, &best_j);
        opt_[i] = static_cast<int32_t>(best_j);
      }
    }
  }

 private:
  double argmin(int64_t i, int64_t a, int64_t b, int64_t* best_j) const {
    return ArgminSplit(w_, wx_, wxx_, prev_, w_[i + 1], wx_[i + 1], wxx_[i + 1], a, b, best_j);
  }

  const double *w_, *wx_, *wxx_;
  const double* prev_;
  const int32_t* prev_opt_;
  int64_t prev_opt_end_;
  double* cur_;
  int32_t* opt_;
  int64_t jmin_;
};

// Solves one layer (see LayerSolver); one dispatch per layer keeps the inner minimum inlined.
void SolveLayer(const double* w, const double* wx, const double* wxx, const double* prev,
                const int32_t* prev_opt, int64_t prev_opt_end, double* cur, int32_t* opt,
                int64_t jmin, int64_t ilo, int64_t ihi, int64_t jlo, int64_t jhi) {
  LayerSolver(w, wx, wxx, prev, prev_opt, prev_opt_end, cur, opt, jmin).solve(ilo, ihi, jlo, jhi);
}

}  // namespace HWY_NAMESPACE
}  // namespace sdpal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace sdpal {

HWY_EXPORT(SolveLayer);

namespace {

void check_input(std::span<const double> values, std::span<const double> weights, int k) {
  SDPAL_CHECK(k >= 1, "kmeans1d: k must be at least 1, got " + std::to_string(k));
  SDPAL_CHECK(values.size() == weights.size(), "kmeans1d: " + std::to_string(values.size()) +
                                                   " values but " + std::to_string(weights.size()) +
                                                   " weights");
  for (size_t i = 0; i < values.size(); ++i) {
    SDPAL_CHECK(std::isfinite(values[i]), "kmeans1d: value " + std::to_string(i) + " not finite");
    SDPAL_CHECK(weights[i] > 0 && std::isfinite(weights[i]),
                "kmeans1d: weight " + std::to_string(i) + " must be positive and finite");
  }
}

// Prefix sums of w, w*x and w*x^2 over values centred on their weighted mean: centring keeps
// the cancellation in S2 - S1^2/W small for clusters far from the mean.
struct PrefixSums {
  std::vector<double> w, wx, wxx;  // n + 1 entries ([0] = 0), then kPad zeros

  PrefixSums(std::span<const double> x, std::span<const double> weights) {
    const size_t n = x.size();
    double sw = 0, swx = 0;
    for (size_t i = 0; i < n; ++i) {
      sw += weights[i];
      swx += weights[i] * x[i];
    }
    const double mean = swx / sw;
    w.assign(n + 1 + kPad, 0);
    wx.assign(n + 1 + kPad, 0);
    wxx.assign(n + 1 + kPad, 0);
    for (size_t i = 0; i < n; ++i) {
      const double d = x[i] - mean;
      w[i + 1] = w[i] + weights[i];
      wx[i + 1] = wx[i] + weights[i] * d;
      wxx[i + 1] = wxx[i] + weights[i] * d * d;
    }
  }
  // Within-cluster SSE of the values with indices [j, i] (inclusive).
  double cost(int64_t j, int64_t i) const {
    const double sw = w[i + 1] - w[j], swx = wx[i + 1] - wx[j];
    return (wxx[i + 1] - wxx[j]) - swx * swx / sw;
  }
};

// Centroids (weighted means) and SSE of the clusters given by their first indices.
KMeansResult finish(std::span<const double> x, std::span<const double> w,
                    const std::vector<int64_t>& starts) {
  KMeansResult r;
  const int64_t n = static_cast<int64_t>(x.size()), k = static_cast<int64_t>(starts.size());
  r.centroids.resize(k);
  r.assignment.resize(n);
  for (int64_t c = 0; c < k; ++c) {
    const int64_t b = starts[c], e = c + 1 < k ? starts[c + 1] : n;
    double sw = 0, swx = 0;
    for (int64_t i = b; i < e; ++i) {
      sw += w[i];
      swx += w[i] * x[i];
      r.assignment[i] = static_cast<int>(c);
    }
    // The mean of values in [x[b], x[e-1]] lies in that range; clamp away rounding.
    r.centroids[c] = std::clamp(swx / sw, x[b], x[e - 1]);
  }
  r.sse = kmeans1d_sse(x, w, r.centroids, r.assignment);
  return r;
}

}  // namespace

double kmeans1d_sse(std::span<const double> values, std::span<const double> weights,
                    std::span<const double> centroids, std::span<const int> assignment) {
  double sse = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    const double d = values[i] - centroids[assignment[i]];
    sse += weights[i] * d * d;
  }
  return sse;
}

KMeansResult kmeans1d_optimal(std::span<const double> values, std::span<const double> weights,
                              int k) {
  check_input(values, weights, k);
  for (size_t i = 1; i < values.size(); ++i)
    SDPAL_CHECK(values[i - 1] < values[i],
                "kmeans1d: values must be strictly ascending (index " + std::to_string(i) + ")");
  const int64_t n = static_cast<int64_t>(values.size());
  if (n == 0) return {};
  if (k >= n) {
    std::vector<int64_t> starts(n);
    for (int64_t i = 0; i < n; ++i) starts[i] = i;
    return finish(values, weights, starts);
  }

  const PrefixSums p(values, weights);
  // Layer m (0-based) = best cost of the first i+1 values in m+1 clusters. Only
  // i in [m, n - k + m] can lie on a path to the full solution.
  std::vector<double> prev(n + kPad, 0.0), cur(n + kPad, 0.0);
  for (int64_t i = 0; i < n; ++i) prev[i] = p.cost(0, i);
  // opt[m * width + i - m]: first index of the last cluster of layer m's solution for i.
  const int64_t width = n - k + 1;
  std::vector<int32_t> opt(static_cast<size_t>(k) * width);
  auto opt_row = [&](int m) { return opt.data() + static_cast<size_t>(m) * (width - 1); };
  for (int m = 1; m < k; ++m) {
    const int64_t ilo = m == k - 1 ? n - 1 : m, ihi = n - k + m;
    // Layer m - 1 computed i in [m - 1, n - k + m - 1]; layer 0 has no split to bound by.
    SDPAL_DISPATCH(SolveLayer)(p.w.data(), p.wx.data(), p.wxx.data(), prev.data(),
                               m >= 2 ? opt_row(m - 1) : nullptr, n - k + m - 1, cur.data(),
                               opt_row(m), m, ilo, ihi, m, ihi);
    std::swap(prev, cur);
  }
  std::vector<int64_t> starts(k);
  int64_t i = n - 1;
  for (int m = k - 1; m >= 1; --m) {
    starts[m] = opt_row(m)[i];
    i = starts[m] - 1;
  }
  starts[0] = 0;
  return finish(values, weights, starts);
}

KMeansResult kmeans1d_lloyd(std::span<const double> values, std::span<const double> weights, int k,
                            uint64_t seed, int max_iterations) {
  check_input(values, weights, k);
  const size_t n = values.size();
  if (n == 0) return {};
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  // Picks index i with probability proportional to score[i].
  auto pick = [&](const std::vector<double>& score) {
    double total = 0;
    for (double s : score) total += s;
    double t = uni(rng) * total;
    for (size_t i = 0; i < n; ++i) {
      t -= score[i];
      if (t < 0) return i;
    }
    return n - 1;
  };
  std::vector<double> centers;
  std::vector<double> score(weights.begin(), weights.end());
  centers.push_back(values[pick(score)]);
  std::vector<double> d2(n, std::numeric_limits<double>::infinity());
  while (static_cast<int>(centers.size()) < k) {
    double total = 0;
    for (size_t i = 0; i < n; ++i) {
      const double d = values[i] - centers.back();
      d2[i] = std::min(d2[i], d * d);
      score[i] = weights[i] * d2[i];
      total += score[i];
    }
    if (total == 0) break;  // every value already is a centre
    centers.push_back(values[pick(score)]);
  }

  std::vector<int> assign(n, -1);
  for (int it = 0; it < max_iterations; ++it) {
    std::sort(centers.begin(), centers.end());
    bool changed = false;
    for (size_t i = 0; i < n; ++i) {
      // Nearest centre by binary search on the sorted centres.
      const auto up = std::upper_bound(centers.begin(), centers.end(), values[i]);
      int c = static_cast<int>(up - centers.begin());
      if (c == static_cast<int>(centers.size()) ||
          (c > 0 && values[i] - centers[c - 1] <= centers[c] - values[i]))
        --c;
      if (assign[i] != c) {
        assign[i] = c;
        changed = true;
      }
    }
    if (!changed) break;
    std::vector<double> sw(centers.size(), 0), swx(centers.size(), 0);
    for (size_t i = 0; i < n; ++i) {
      sw[assign[i]] += weights[i];
      swx[assign[i]] += weights[i] * values[i];
    }
    for (size_t c = 0; c < centers.size(); ++c)
      if (sw[c] > 0) centers[c] = swx[c] / sw[c];
  }
  // Drop empty clusters and renumber.
  std::vector<double> sw(centers.size(), 0);
  for (size_t i = 0; i < n; ++i) sw[assign[i]] += weights[i];
  std::vector<int> remap(centers.size(), -1);
  KMeansResult r;
  for (size_t c = 0; c < centers.size(); ++c)
    if (sw[c] > 0) {
      remap[c] = static_cast<int>(r.centroids.size());
      r.centroids.push_back(centers[c]);
    }
  r.assignment.resize(n);
  for (size_t i = 0; i < n; ++i) r.assignment[i] = remap[assign[i]];
  r.sse = kmeans1d_sse(values, weights, r.centroids, r.assignment);
  return r;
}

}  // namespace sdpal
#endif  // HWY_ONCE
