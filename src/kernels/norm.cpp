// GroupNorm and LayerNorm as Highway kernels, dispatched at the kernel level. Sums are taken in
// double (fp32 sums over 64x64x320 values would lose digits), vectorised over channels.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/norm.cpp"
#include "kernels/norm.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/profile.h"
#include "kernels/simd_math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace sdpal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// s[c] += x[p][c] (or (x[p][c] - mean[c])^2, squared in fp32, if mean) over `rows` rows of C.
void ChannelSums(const float* x, int64_t rows, int64_t C, const float* mean, double* s) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(dd));
  for (int64_t p = 0; p < rows; ++p) {
    const float* r = x + p * C;
    int64_t c = 0;
    for (; c + N <= C; c += N) {
      auto v = hn::LoadU(df, r + c);
      if (mean) {
        v = hn::Sub(v, hn::LoadU(df, mean + c));
        v = hn::Mul(v, v);
      }
      hn::StoreU(hn::Add(hn::LoadU(dd, s + c), hn::PromoteTo(dd, v)), dd, s + c);
    }
    for (; c < C; ++c) {
      float v = r[c];
      if (mean) {
        v -= mean[c];
        v *= v;
      }
      s[c] += v;
    }
  }
}

// x[p][c] = x[p][c] * a[c] + b[c] over `rows` rows of C, then x * sigmoid(x) if silu.
void ScaleShiftRows(float* x, int64_t rows, int64_t C, const float* a, const float* b, bool silu) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t p = 0; p < rows; ++p) {
    float* r = x + p * C;
    int64_t c = 0;
    for (; c + N <= C; c += N) {
      auto v = hn::MulAdd(hn::LoadU(d, r + c), hn::LoadU(d, a + c), hn::LoadU(d, b + c));
      if (silu) v = XSigmoid(d, v, 1.f);
      hn::StoreU(v, d, r + c);
    }
    if (c < C) {
      HWY_ALIGN float t[hn::MaxLanes(d)] = {};
      for (int64_t i = c; i < C; ++i) t[i - c] = std::fma(r[i], a[i], b[i]);
      auto v = hn::Load(d, t);
      if (silu) v = XSigmoid(d, v, 1.f);
      hn::Store(v, d, t);
      std::memcpy(r + c, t, static_cast<size_t>(C - c) * sizeof(float));
    }
  }
}

// Sum over a row of x[c] (or of (x[c] - mean)^2 if squares) in double, with two accumulators: a
// single double chain would be latency-bound on every row.
HWY_INLINE double RowSum(const float* x, int64_t n, float mean, bool squares) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(dd));
  const auto m = hn::Set(df, mean);
  auto lo = hn::Zero(dd), hi = hn::Zero(dd);
  auto load = [&](const float* p) {
    auto v = hn::LoadU(df, p);
    if (squares) {
      v = hn::Sub(v, m);
      v = hn::Mul(v, v);
    }
    return hn::PromoteTo(dd, v);
  };
  int64_t c = 0;
  for (; c + 2 * N <= n; c += 2 * N) {
    lo = hn::Add(lo, load(x + c));
    hi = hn::Add(hi, load(x + c + N));
  }
  double sum = hn::GetLane(hn::SumOfLanes(dd, hn::Add(lo, hi)));
  for (; c < n; ++c) {
    const float v = squares ? (x[c] - mean) * (x[c] - mean) : x[c];
    sum += v;
  }
  return sum;
}

void LayerNormRows(const float* x, float* y, int64_t r0, int64_t r1, int64_t C, const float* gamma,
                   const float* beta, float eps) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    const float mean = static_cast<float>(RowSum(xr, C, 0.f, false) / C);
    const double v = RowSum(xr, C, mean, true);
    const float rstd = static_cast<float>(1.0 / std::sqrt(v / C + eps));
    const auto vm = hn::Set(d, mean), vr = hn::Set(d, rstd);
    int64_t c = 0;
    for (; c + N <= C; c += N) {
      const auto g = gamma ? hn::LoadU(d, gamma + c) : hn::Set(d, 1.f);
      const auto b = beta ? hn::LoadU(d, beta + c) : hn::Zero(d);
      hn::StoreU(hn::MulAdd(hn::Mul(hn::Sub(hn::LoadU(d, xr + c), vm), vr), g, b), d, yr + c);
    }
    for (; c < C; ++c)
      yr[c] = std::fma((xr[c] - mean) * rstd, gamma ? gamma[c] : 1.f, beta ? beta[c] : 0.f);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace sdpal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace sdpal::k {

HWY_EXPORT(ChannelSums);
HWY_EXPORT(ScaleShiftRows);
HWY_EXPORT(LayerNormRows);

namespace {
// Rows [p0, p1) of S that thread t of T takes.
std::pair<int64_t, int64_t> thread_rows(int64_t S) {
  const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
  return {S * t / T, S * (t + 1) / T};
}
}  // namespace

void group_norm_(Tensor& x, int64_t G, const float* gamma, const float* beta, float eps,
                 bool silu) {
  prof::OpScope scope(prof::Op::norm);
  const int64_t N = x.dim(0), C = x.dim(-1);
  SDPAL_CHECK(C % G == 0, "group_norm: " + std::to_string(C) + " channels not divisible by " +
                              std::to_string(G) + " groups");
  const int64_t S = x.numel() / (N * C), Cg = C / G;
  const int nt = omp_get_max_threads();
  std::vector<double> part(static_cast<size_t>(nt) * 2 * C);
  std::vector<float> a(C), b(C);
  for (int64_t n = 0; n < N; ++n) {
    float* xn = x.data() + n * S * C;
    std::fill(part.begin(), part.end(), 0.0);
    // Per-channel sums, accumulated per thread then reduced; the mean is taken first and the
    // variance around it in a second pass for accuracy.
#pragma omp parallel if (S * C > kParallelGrain)
    {
      double* s = part.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * C;
      const auto [p0, p1] = thread_rows(S);
      SDPAL_DISPATCH(ChannelSums)(xn + p0 * C, p1 - p0, C, nullptr, s);
    }
    std::vector<double> mean(G, 0.0), var(G, 0.0);
    for (int t = 0; t < nt; ++t)
      for (int64_t c = 0; c < C; ++c) mean[c / Cg] += part[static_cast<size_t>(t) * 2 * C + c];
    for (int64_t g = 0; g < G; ++g) mean[g] /= double(S * Cg);
    std::vector<float> meanc(C);
    for (int64_t c = 0; c < C; ++c) meanc[c] = static_cast<float>(mean[c / Cg]);
#pragma omp parallel if (S * C > kParallelGrain)
    {
      double* s = part.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * C + C;
      const auto [p0, p1] = thread_rows(S);
      SDPAL_DISPATCH(ChannelSums)(xn + p0 * C, p1 - p0, C, meanc.data(), s);
    }
    for (int t = 0; t < nt; ++t)
      for (int64_t c = 0; c < C; ++c) var[c / Cg] += part[static_cast<size_t>(t) * 2 * C + C + c];
    for (int64_t c = 0; c < C; ++c) {
      const int64_t g = c / Cg;
      const double rstd = 1.0 / std::sqrt(var[g] / double(S * Cg) + eps);
      const double gm = gamma ? gamma[c] : 1.0;
      a[c] = static_cast<float>(rstd * gm);
      b[c] = static_cast<float>((beta ? beta[c] : 0.0) - mean[g] * rstd * gm);
    }
#pragma omp parallel if (S * C > kParallelGrain)
    {
      const auto [p0, p1] = thread_rows(S);
      SDPAL_DISPATCH(ScaleShiftRows)(xn + p0 * C, p1 - p0, C, a.data(), b.data(), silu);
    }
  }
}

Tensor group_norm(const Tensor& x, int64_t groups, const float* gamma, const float* beta, float eps,
                  bool silu) {
  Tensor y = x;
  group_norm_(y, groups, gamma, beta, eps, silu);
  return y;
}

Tensor layer_norm(const Tensor& x, const float* gamma, const float* beta, float eps) {
  prof::OpScope scope(prof::Op::norm);
  const int64_t C = x.dim(-1), R = x.numel() / C;
  Tensor y(x.shape());
#pragma omp parallel if (x.numel() > kParallelGrain)
  {
    const auto [r0, r1] = thread_rows(R);
    SDPAL_DISPATCH(LayerNormRows)(x.data(), y.data(), r0, r1, C, gamma, beta, eps);
  }
  return y;
}

}  // namespace sdpal::k
#endif  // HWY_ONCE
