#include "models/tome.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "core/parallel.h"
#include "core/profile.h"
#include "kernels/gemm.h"

namespace sdpal {

namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// out[i] = x[pos[i]] / |x[pos[i]]| (a zero row stays zero instead of tomesd's NaN).
void gather_normalized(const float* x, int64_t C, const std::vector<int32_t>& pos, float* out) {
  const int64_t n = pos.size();
#pragma omp parallel for if (n * C > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = x + pos[i] * C;
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += double(row[c]) * row[c];
    const float inv = ss > 0 ? static_cast<float>(1.0 / std::sqrt(ss)) : 0.f;
    float* o = out + i * C;
    for (int64_t c = 0; c < C; ++c) o[c] = row[c] * inv;
  }
}

}  // namespace

void check_tome_options(const ToMeOptions& o) {
  SDPAL_CHECK(
      std::isfinite(o.ratio) && o.ratio >= 0 && o.ratio <= 0.9,
      "ToMe ratio must be from 0 to 0.9 (the fraction of tokens merged away), got " + num(o.ratio));
  SDPAL_CHECK(o.max_downsample == 1 || o.max_downsample == 2 || o.max_downsample == 4 ||
                  o.max_downsample == 8,
              "ToMe max downsample must be 1, 2, 4 or 8, got " + std::to_string(o.max_downsample));
}

TokenMerge TokenMerge::match(const Tensor& metric, int64_t h, int64_t w, int64_t r,
                             const std::vector<uint8_t>& dst_in_cell) {
  SDPAL_CHECK(metric.ndim() == 3 && h > 0 && w > 0 && metric.dim(1) == h * w,
              "tome: metric " + shape_str(metric.shape()) + " does not hold a " +
                  std::to_string(h) + "x" + std::to_string(w) + " token grid");
  const int64_t B = metric.dim(0), N = h * w, C = metric.dim(2);
  const int64_t cells_w = w / 2, D = (h / 2) * cells_w;
  SDPAL_CHECK(static_cast<int64_t>(dst_in_cell.size()) == D,
              "tome: " + std::to_string(dst_in_cell.size()) + " destination choices for " +
                  std::to_string(D) + " cells");
  std::vector<char> is_dst(N, 0);
  for (int64_t c = 0; c < D; ++c) {
    const int k = dst_in_cell[c];
    SDPAL_CHECK(k < 4, "tome: destination place in a 2x2 cell must be 0..3");
    is_dst[(2 * (c / cells_w) + k / 2) * w + 2 * (c % cells_w) + k % 2] = 1;
  }
  TokenMerge m;
  m.B_ = B;
  m.N_ = N;
  std::vector<int32_t> src;
  for (int64_t p = 0; p < N; ++p) (is_dst[p] ? m.dst_ : src).push_back(static_cast<int32_t>(p));
  const int64_t S = src.size();
  r = D == 0 ? 0 : std::clamp<int64_t>(r, 0, S);  // tomesd: r = min(r, number of sources)
  m.r_ = r;
  const int64_t U = S - r;
  m.unm_.resize(B * U);
  m.off_.assign(B * (D + 1), 0);
  m.merged_.resize(B * r);
  if (r == 0) {
    for (int64_t b = 0; b < B; ++b) std::copy(src.begin(), src.end(), m.unm_.begin() + b * U);
    return m;
  }

  prof::OpScope scope(prof::Op::tome, 2.0 * B * S * D * C);
  Tensor a({S, C}), d({D, C});
  // Scores are computed in row blocks of at most ~16 MB and reduced to a row argmax at once.
  const int64_t rows = std::clamp<int64_t>((int64_t(1) << 22) / D, 1, S);
  Tensor scores({rows, D});
  std::vector<float> best(S);
  std::vector<int32_t> arg(S), order(S), cursor(D);
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = metric.data() + b * N * C;
    gather_normalized(xb, C, src, a.data());
    gather_normalized(xb, C, m.dst_, d.data());
    for (int64_t i0 = 0; i0 < S; i0 += rows) {
      const int64_t n = std::min(rows, S - i0);
      k::sgemm(false, true, n, D, C, 1.f, a.data() + i0 * C, C, d.data(), C, 0.f, scores.data(), D);
#pragma omp parallel for if (n * D > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) {
        const float* row = scores.data() + i * D;
        float bv = -std::numeric_limits<float>::infinity();
        int32_t bj = 0;
        for (int64_t j = 0; j < D; ++j)  // first maximum, as torch's max; NaN never wins
          if (row[j] > bv) {
            bv = row[j];
            bj = static_cast<int32_t>(j);
          }
        best[i0 + i] = bv;
        arg[i0 + i] = bj;
      }
    }
    // Most similar first; equal scores keep source order (what a stable argsort gives).
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t p, int32_t q) {
      return best[p] > best[q] || (best[p] == best[q] && p < q);
    });
    for (int64_t k = 0; k < U; ++k) m.unm_[b * U + k] = src[order[r + k]];
    // Group the merged sources by destination (counting sort keeps score order within a group).
    int32_t* off = m.off_.data() + b * (D + 1);
    for (int64_t k = 0; k < r; ++k) ++off[arg[order[k]] + 1];
    for (int64_t j = 0; j < D; ++j) off[j + 1] += off[j];
    std::copy(off, off + D, cursor.begin());
    for (int64_t k = 0; k < r; ++k) m.merged_[b * r + cursor[arg[order[k]]]++] = src[order[k]];
  }
  return m;
}

Tensor TokenMerge::merge(const Tensor& x) const {
  SDPAL_CHECK(x.ndim() == 3 && x.dim(0) == B_ && x.dim(1) == N_,
              "tome: merge input " + shape_str(x.shape()) + " does not match the matching's [" +
                  std::to_string(B_) + ", " + std::to_string(N_) + ", C]");
  const int64_t C = x.dim(2), D = dst_.size(), T = N_ - r_, U = T - D;
  prof::OpScope scope(prof::Op::tome);
  Tensor y({B_, T, C});
#pragma omp parallel for collapse(2) if (B_ * T * C > kParallelGrain)
  for (int64_t b = 0; b < B_; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const float* xb = x.data() + b * N_ * C;
      float* o = y.data() + (b * T + t) * C;
      if (t < U) {
        std::copy_n(xb + int64_t(unm_[b * U + t]) * C, C, o);
        continue;
      }
      const int64_t j = t - U;
      std::copy_n(xb + int64_t(dst_[j]) * C, C, o);
      const int32_t* off = off_.data() + b * (D + 1);
      const int32_t* ms = merged_.data() + b * r_;
      if (off[j] == off[j + 1]) continue;
      for (int32_t k = off[j]; k < off[j + 1]; ++k) {
        const float* s = xb + int64_t(ms[k]) * C;
        for (int64_t c = 0; c < C; ++c) o[c] += s[c];
      }
      const float n = static_cast<float>(1 + off[j + 1] - off[j]);  // the mean includes dst
      for (int64_t c = 0; c < C; ++c) o[c] /= n;
    }
  return y;
}

void TokenMerge::unmerge_add(const Tensor& y, Tensor& x) const {
  const int64_t T = N_ - r_;
  SDPAL_CHECK(y.ndim() == 3 && y.dim(0) == B_ && y.dim(1) == T && x.ndim() == 3 && x.dim(0) == B_ &&
                  x.dim(1) == N_ && x.dim(2) == y.dim(2),
              "tome: unmerge of " + shape_str(y.shape()) + " into " + shape_str(x.shape()) +
                  " does not match the matching of " + std::to_string(N_) +
                  " tokens, r = " + std::to_string(r_));
  const int64_t C = y.dim(2), D = dst_.size(), U = T - D;
  prof::OpScope scope(prof::Op::tome);
  auto add = [C](float* o, const float* s) {
    for (int64_t c = 0; c < C; ++c) o[c] += s[c];
  };
  // Every token of x is written by exactly one (b, t): the loop is race-free.
#pragma omp parallel for collapse(2) if (B_ * T * C > kParallelGrain)
  for (int64_t b = 0; b < B_; ++b)
    for (int64_t t = 0; t < T; ++t) {
      float* xb = x.data() + b * N_ * C;
      const float* s = y.data() + (b * T + t) * C;
      if (t < U) {
        add(xb + int64_t(unm_[b * U + t]) * C, s);
        continue;
      }
      const int64_t j = t - U;
      add(xb + int64_t(dst_[j]) * C, s);
      const int32_t* off = off_.data() + b * (D + 1);
      const int32_t* ms = merged_.data() + b * r_;
      for (int32_t k = off[j]; k < off[j + 1]; ++k) add(xb + int64_t(ms[k]) * C, s);
    }
}

Tensor TokenMerge::unmerge(const Tensor& y) const {
  Tensor x = Tensor::zeros({B_, N_, y.ndim() == 3 ? y.dim(2) : 0});
  unmerge_add(y, x);  // 0 + v == v: an exact copy
  return x;
}

void ToMe::set(const ToMeOptions& o) {
  check_tome_options(o);
  o_ = o;
  rng_.seed(o.seed);
}

std::optional<TokenMerge> ToMe::plan(const Tensor& x, int64_t h, int64_t w,
                                     int64_t full_tokens) const {
  const int64_t N = h * w;
  if (!on() || N <= 0) return std::nullopt;
  // tomesd: downsample = ceil(sqrt(full_tokens // tokens)), in integers.
  const int64_t q = full_tokens / N;
  int64_t down = 1;
  while (down * down < q) ++down;
  if (down > o_.max_downsample) return std::nullopt;
  const int64_t r = static_cast<int64_t>(static_cast<double>(N) * o_.ratio);
  const int64_t D = (h / 2) * (w / 2);
  if (r <= 0 || D == 0) return std::nullopt;
  std::vector<uint8_t> cells(D, 0);  // 0: the cell's top-left token (tomesd's no_rand)
  if (o_.random && x.dim(0) % 2 == 0)
    for (auto& c : cells) c = static_cast<uint8_t>(rng_() >> 62);  // uniform over 0..3
  return TokenMerge::match(x, h, w, r, cells);
}

}  // namespace sdpal
