#include "kernels/norm.h"

#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "core/profile.h"
#include "kernels/activation.h"

namespace sdpal::k {

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
#pragma omp for schedule(static)
      for (int64_t p = 0; p < S; ++p) {
        const float* r = xn + p * C;
        for (int64_t c = 0; c < C; ++c) s[c] += r[c];
      }
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
      std::fill(s, s + C, 0.0);
#pragma omp for schedule(static)
      for (int64_t p = 0; p < S; ++p) {
        const float* r = xn + p * C;
        for (int64_t c = 0; c < C; ++c) {
          float d = r[c] - meanc[c];
          s[c] += d * d;
        }
      }
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
#pragma omp parallel for schedule(static) if (S * C > kParallelGrain)
    for (int64_t p = 0; p < S; ++p) {
      float* r = xn + p * C;
      for (int64_t c = 0; c < C; ++c) r[c] = r[c] * a[c] + b[c];
      if (silu) silu_(r, C);
    }
  }
}

Tensor group_norm(const Tensor& x, int64_t groups, const float* gamma, const float* beta, float eps,
                  bool silu) {
  Tensor y = x;
  group_norm_(y, groups, gamma, beta, eps, silu);
  return y;
}

namespace {
// Sum over a row of x[c] (or of (x[c] - mean)^2 if squares) in double, 16 lanes wide: a scalar
// double chain would be latency-bound (one add per 4 cycles) on every row.
double row_sum(const float* x, int64_t n, float mean, bool squares) {
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  const __m512 m = _mm512_set1_ps(mean);
  for (int64_t c = 0; c < n; c += 16) {
    const __mmask16 k = n - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - c)) - 1);
    __m512 v = _mm512_maskz_loadu_ps(k, x + c);
    if (squares) {
      v = _mm512_maskz_sub_ps(k, v, m);
      v = _mm512_mul_ps(v, v);
    }
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
  }
  alignas(64) double lanes[8];
  _mm512_store_pd(lanes, _mm512_add_pd(lo, hi));
  double sum = 0;
  for (double l : lanes) sum += l;
  return sum;
}
}  // namespace

Tensor layer_norm(const Tensor& x, const float* gamma, const float* beta, float eps) {
  prof::OpScope scope(prof::Op::norm);
  const int64_t C = x.dim(-1), R = x.numel() / C;
  Tensor y(x.shape());
#pragma omp parallel for schedule(static) if (x.numel() > kParallelGrain)
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x.data() + r * C;
    float* yr = y.data() + r * C;
    const float mean = static_cast<float>(row_sum(xr, C, 0.f, false) / C);
    const double v = row_sum(xr, C, mean, true);
    const float rstd = static_cast<float>(1.0 / std::sqrt(v / C + eps));
    for (int64_t c = 0; c < C; ++c)
      yr[c] = (xr[c] - mean) * rstd * (gamma ? gamma[c] : 1.f) + (beta ? beta[c] : 0.f);
  }
  return y;
}

}  // namespace sdpal::k
