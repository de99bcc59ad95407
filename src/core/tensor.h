// Tensor: a dense, row-major fp32 array with a shape; owns 64-byte aligned storage.
// All compute in sdpal is fp32; weights keep their file dtype and are expanded on use
// (see models/weights.h).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace sdpal {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[2, 4, 64, 64]"

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape);  // uninitialised contents
  static Tensor zeros(Shape shape);
  static Tensor full(Shape shape, float v);
  static Tensor from(Shape shape, const float* data);

  Tensor(const Tensor& o);
  Tensor& operator=(const Tensor& o);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i < 0 ? shape_.size() + i : i]; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return numel_; }
  bool empty() const { return numel_ == 0; }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  float& operator[](int64_t i) { return data_.get()[i]; }
  float operator[](int64_t i) const { return data_.get()[i]; }

  // Same data, new shape (numel must match). Moves the storage.
  Tensor reshaped(Shape s) &&;
  void reshape_inplace(Shape s);
  // Slice along dim 0: rows [begin, end) copied into a new tensor.
  Tensor slice0(int64_t begin, int64_t end) const;

 private:
  struct Free {
    void operator()(float* p) const;
  };
  Shape shape_;
  int64_t numel_ = 0;
  std::unique_ptr<float, Free> data_;
};

// Concatenate along dim 0.
Tensor concat0(const std::vector<const Tensor*>& parts);
// Layout conversions for image tensors.
Tensor nchw_to_nhwc(const Tensor& x);
Tensor nhwc_to_nchw(const Tensor& x);

}  // namespace sdpal
