// WeightStore: the named tensors of one model component (unet, vae, text_encoder, ...), backed by
// mmap'd safetensors files. Weights stay in their file dtype; a Param hands out fp32 data on use:
// F32 tensors directly from the mapping, small F16/BF16 tensors from a one-time fp32 copy, large
// ones expanded into a reused scratch buffer just before use (valid until the next expansion).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "formats/safetensors.h"

namespace sdpal {

class WeightStore;

class Param {
 public:
  Param() = default;
  Param(const WeightStore* store, const TensorView* view);
  bool valid() const { return view_ != nullptr; }
  const Shape& shape() const { return view_->shape; }
  int64_t numel() const { return view_->numel(); }
  const TensorView& view() const { return *view_; }
  // fp32 data. For large non-F32 tensors the pointer is valid until the next large expansion.
  const float* f32() const;

 private:
  const WeightStore* store_ = nullptr;
  const TensorView* view_ = nullptr;
  std::shared_ptr<std::vector<float>> copy_;
};

class WeightStore {
 public:
  explicit WeightStore(std::string label = "model") : label_(std::move(label)) {}
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  const std::string& label() const { return label_; }
  // Maps `path`; each tensor is registered under rename(name) (skipped when it returns nullopt).
  void add_file(const std::string& path,
                const std::function<std::optional<std::string>(const std::string&)>& rename = {});
  void add_view(const std::string& name, TensorView v);
  bool has(const std::string& name) const { return views_.count(name) != 0; }
  const TensorView* find(const std::string& name) const;
  // Throws "<label>: missing tensor 'name'" or a shape mismatch error naming both shapes.
  const TensorView& get(const std::string& name, const Shape& expect = {}) const;
  Param param(const std::string& name, const Shape& expect = {}) const;
  std::optional<Param> optional_param(const std::string& name, const Shape& expect = {}) const;
  std::vector<std::string> names() const;
  // Names never fetched through get()/param(): unknown keys after a model is built.
  std::vector<std::string> unused() const;
  std::string source() const;  // the files, for error messages
  int64_t total_bytes() const;
  int64_t count_dtype(DType t) const;

  // Shape discovery: when set, a tensor that get() cannot find is created by `make(name, shape)`
  // (the shape the architecture expects) instead of failing. Building a model on such a store
  // yields its complete tensor list, e.g. to write random-weight models of a given config.
  using Synthesizer = std::function<TensorView(const std::string& name, const Shape& shape)>;
  void set_synthesizer(Synthesizer make) { synth_ = std::move(make); }

  // Scratch for expanding large weights to fp32 (see Param::f32).
  float* scratch(size_t n) const;

 private:
  std::string label_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  mutable std::map<std::string, TensorView> views_;  // mutable: shape discovery adds entries
  mutable std::set<std::string> used_;
  Synthesizer synth_;
  struct AlignedFree {
    void operator()(float* p) const;
  };
  mutable std::unique_ptr<float, AlignedFree> scratch_;
  mutable size_t scratch_n_ = 0;
};

}  // namespace sdpal
