#include "kernels/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "kernels/gemm.h"

namespace sdpal::k {

namespace {
constexpr int64_t kQueryChunk = 128;

void softmax_rows(float* s, int64_t rows, int64_t cols, int64_t ld, int64_t causal_q0) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = s + r * ld;
    const int64_t n = causal_q0 >= 0 ? std::min(cols, causal_q0 + r + 1) : cols;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j]);
    float sum = 0.f;
    for (int64_t j = 0; j < n; ++j) {
      row[j] = std::exp(row[j] - mx);
      sum += row[j];
    }
    const float inv = 1.f / sum;
    for (int64_t j = 0; j < n; ++j) row[j] *= inv;
    for (int64_t j = n; j < cols; ++j) row[j] = 0.f;
  }
}

void check_shapes(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads) {
  SDPAL_CHECK(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3 && q.dim(0) == k.dim(0) &&
                  k.shape() == v.shape() && q.dim(2) == k.dim(2) && q.dim(2) % heads == 0,
              "attention: incompatible shapes q " + shape_str(q.shape()) + " k " +
                  shape_str(k.shape()) + " v " + shape_str(v.shape()));
}
}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads, bool causal) {
  check_shapes(q, k, v, heads);
  const int64_t B = q.dim(0), Tq = q.dim(1), Tk = k.dim(1), C = q.dim(2), D = C / heads;
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  Tensor out({B, Tq, C});
  const int64_t nchunks = (Tq + kQueryChunk - 1) / kQueryChunk;
  const int64_t tasks = B * heads * nchunks;
  std::vector<std::vector<float>> scratch(omp_get_max_threads());
#pragma omp parallel for schedule(dynamic) if (B * heads * Tq * Tk * D > kParallelGrain)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t b = t / (heads * nchunks), h = (t / nchunks) % heads, c = t % nchunks;
    const int64_t q0 = c * kQueryChunk, nq = std::min(kQueryChunk, Tq - q0);
    auto& s = scratch[omp_get_thread_num()];
    if (s.size() < static_cast<size_t>(kQueryChunk * Tk)) s.resize(kQueryChunk * Tk);
    const float* qp = q.data() + (b * Tq + q0) * C + h * D;
    const float* kp = k.data() + b * Tk * C + h * D;
    const float* vp = v.data() + b * Tk * C + h * D;
    float* op = out.data() + (b * Tq + q0) * C + h * D;
    sgemm(false, true, nq, Tk, D, scale, qp, C, kp, C, 0.f, s.data(), Tk);
    softmax_rows(s.data(), nq, Tk, Tk, causal ? q0 : -1);
    sgemm(false, false, nq, D, Tk, 1.f, s.data(), Tk, vp, C, 0.f, op, C);
  }
  return out;
}

Tensor attention_naive(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                       bool causal) {
  check_shapes(q, k, v, heads);
  const int64_t B = q.dim(0), Tq = q.dim(1), Tk = k.dim(1), C = q.dim(2), D = C / heads;
  Tensor out = Tensor::zeros({B, Tq, C});
  std::vector<double> s(Tk);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < Tq; ++i) {
        double mx = -1e300;
        const int64_t n = causal ? std::min(Tk, i + 1) : Tk;
        for (int64_t j = 0; j < n; ++j) {
          double d = 0;
          for (int64_t e = 0; e < D; ++e)
            d += double(q[(b * Tq + i) * C + h * D + e]) * k[(b * Tk + j) * C + h * D + e];
          s[j] = d / std::sqrt(double(D));
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - mx));
        for (int64_t e = 0; e < D; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < n; ++j) acc += s[j] * v[(b * Tk + j) * C + h * D + e];
          out[(b * Tq + i) * C + h * D + e] = static_cast<float>(acc / sum);
        }
      }
  return out;
}

}  // namespace sdpal::k
