#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/profile.h"
#include "kernels/flash_attention.h"

namespace sdpal::k {

namespace {
void check_shapes(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads) {
  SDPAL_CHECK(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3 && q.dim(0) == k.dim(0) &&
                  k.shape() == v.shape() && q.dim(2) == k.dim(2) && q.dim(2) % heads == 0,
              "attention: incompatible shapes q " + shape_str(q.shape()) + " k " +
                  shape_str(k.shape()) + " v " + shape_str(v.shape()));
}
}  // namespace

// The fused kernel: blocked scores, online softmax, no score rows in memory.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads, bool causal) {
  check_shapes(q, k, v, heads);
  // QK^T and PV: 2 * 2 * B * Tq * Tk * C multiply-adds' FLOPs (causal counted in full)
  prof::OpScope scope(prof::Op::attention, 4.0 * q.dim(0) * q.dim(1) * k.dim(1) * q.dim(2));
  return flash_attention(q, k, v, heads, causal);
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
