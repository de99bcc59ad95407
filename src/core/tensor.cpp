#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"

namespace sdpal {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    SDPAL_CHECK(d >= 0, "negative dimension in shape " + shape_str(s));
    // Checked: a product that wrapped around (to 0, say) would pass every later size check.
    if (__builtin_mul_overflow(n, d, &n))
      fail("shape " + shape_str(s) + " has more elements than 64 bits can count");
  }
  return n;
}

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void Tensor::Free::operator()(float* p) const { std::free(p); }

Tensor::Tensor(Shape shape) : shape_(std::move(shape)), numel_(shape_numel(shape_)) {
  if (static_cast<uint64_t>(numel_) > (SIZE_MAX - 63) / 4)
    fail("out of memory allocating tensor " + shape_str(shape_) + ": too many elements");
  size_t bytes = ((static_cast<size_t>(numel_) * 4 + 63) / 64) * 64;
  if (bytes == 0) bytes = 64;
  float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p) fail("out of memory allocating tensor " + shape_str(shape_));
  data_.reset(p);
}

Tensor Tensor::zeros(Shape shape) {
  Tensor t(std::move(shape));
  std::memset(t.data(), 0, t.numel() * 4);
  return t;
}

Tensor Tensor::full(Shape shape, float v) {
  Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = v;
  return t;
}

Tensor Tensor::from(Shape shape, const float* data) {
  Tensor t(std::move(shape));
  std::memcpy(t.data(), data, t.numel() * 4);
  return t;
}

Tensor::Tensor(const Tensor& o) : Tensor(o.shape_) {
  if (o.data_) std::memcpy(data(), o.data(), numel_ * 4);
}

Tensor& Tensor::operator=(const Tensor& o) {
  if (this != &o) *this = Tensor(o);
  return *this;
}

Tensor Tensor::reshaped(Shape s) && {
  reshape_inplace(std::move(s));
  return std::move(*this);
}

void Tensor::reshape_inplace(Shape s) {
  SDPAL_CHECK(shape_numel(s) == numel_,
              "cannot reshape " + shape_str(shape_) + " to " + shape_str(s));
  shape_ = std::move(s);
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  SDPAL_CHECK(ndim() >= 1 && begin >= 0 && end <= shape_[0] && begin <= end,
              "slice0 out of range for " + shape_str(shape_));
  Shape s = shape_;
  s[0] = end - begin;
  int64_t row = shape_[0] ? numel_ / shape_[0] : 0;
  return Tensor::from(s, data() + begin * row);
}

Tensor concat0(const std::vector<const Tensor*>& parts) {
  SDPAL_CHECK(!parts.empty(), "concat0 of nothing");
  Shape s = parts[0]->shape();
  int64_t n0 = 0;
  for (const Tensor* p : parts) {
    Shape a = p->shape(), b = s;
    a[0] = b[0] = 0;
    SDPAL_CHECK(a == b, "concat0: shape mismatch " + shape_str(p->shape()) + " vs " + shape_str(s));
    n0 += p->dim(0);
  }
  s[0] = n0;
  Tensor out(s);
  float* d = out.data();
  for (const Tensor* p : parts) {
    std::memcpy(d, p->data(), p->numel() * 4);
    d += p->numel();
  }
  return out;
}

Tensor nchw_to_nhwc(const Tensor& x) {
  SDPAL_CHECK(x.ndim() == 4, "nchw_to_nhwc needs 4-D, got " + shape_str(x.shape()));
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), HW = H * W;
  Tensor y({N, H, W, C});
#pragma omp parallel for collapse(2) if (x.numel() > kParallelGrain)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < HW; ++p)
      for (int64_t c = 0; c < C; ++c) y[(n * HW + p) * C + c] = x[(n * C + c) * HW + p];
  return y;
}

Tensor nhwc_to_nchw(const Tensor& x) {
  SDPAL_CHECK(x.ndim() == 4, "nhwc_to_nchw needs 4-D, got " + shape_str(x.shape()));
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3), HW = H * W;
  Tensor y({N, C, H, W});
#pragma omp parallel for collapse(2) if (x.numel() > kParallelGrain)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = 0; p < HW; ++p) y[(n * C + c) * HW + p] = x[(n * HW + p) * C + c];
  return y;
}

}  // namespace sdpal
