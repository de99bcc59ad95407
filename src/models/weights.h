// WeightStore: the named tensors of one model component (unet, vae, text_encoder, ...), backed by
// mmap'd safetensors files. Weights stay in their file dtype, or compressed (palettized / linear
// 8-bit, see core/compressed_weight.h); a Param hands out fp32 data on use: F32 tensors
// directly from the mapping, small tensors from a one-time fp32 copy, large F16/BF16 or compressed
// ones expanded just before use into a scratch buffer that the returned F32Data holds (see
// core/scratch.h), so resident weight memory stays at the file's size. A store is not changed by
// running a model: any number of callers may use one at once.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/compressed_weight.h"
#include "core/scratch.h"
#include "formats/safetensors.h"

namespace sdpal {

class WeightStore;

// A weight as fp32: a pointer into the file mapping or a kept copy, or a scratch buffer holding
// its expansion, owned by this object (valid while it lives).
class F32Data {
 public:
  F32Data() = default;  // no data: get() is null
  explicit F32Data(const float* p) : p_(p) {}
  explicit F32Data(ScratchLease lease) : p_(lease.data()), lease_(std::move(lease)) {}
  const float* get() const { return p_; }

 private:
  const float* p_ = nullptr;
  ScratchLease lease_;
};

class Param {
 public:
  Param() = default;
  Param(const WeightStore* store, const TensorView* view);
  Param(const WeightStore* store, const CompressedView* cview);
  // A weight computed in memory (e.g. a LoRA merged into it), owned by the Param and its copies.
  static Param owned(Tensor t);
  bool valid() const { return view_ != nullptr || cview_ != nullptr || owned_ != nullptr; }
  bool compressed() const { return cview_ != nullptr; }
  // The compressed weight itself (null unless compressed()), for kernels that expand on the fly.
  const CompressedView* compressed_view() const { return cview_; }
  const Shape& shape() const {
    return owned_ ? owned_->shape() : cview_ ? cview_->shape : view_->shape;
  }
  int64_t numel() const { return shape_numel(shape()); }
  // See WeightStore::release_pages (uncompressed tensors from files only).
  void release_pages() const;
  // fp32 data, valid while the returned object lives: keep it for as long as the data is read
  // (`k::linear(x, w.f32().get(), ...)` keeps it to the end of the call).
  F32Data f32() const;
  F32Data f32_or_null() const { return valid() ? f32() : F32Data(); }  // e.g. an optional bias

 private:
  const WeightStore* store_ = nullptr;
  const TensorView* view_ = nullptr;
  const CompressedView* cview_ = nullptr;
  std::shared_ptr<std::vector<float>> copy_;
  std::shared_ptr<const Tensor> owned_;
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
  // Registers a compressed weight (its LUT/indices or q/scales must outlive the store). Replaces a
  // plain tensor of the same name: e.g. to try a palettized layer in memory, without files.
  void add_compressed(const std::string& name, CompressedView v);
  bool has(const std::string& name) const {
    return views_.count(name) != 0 || compressed_.count(name) != 0;
  }
  // Compressed weights by name (empty for ordinary files).
  const std::map<std::string, CompressedView>& compressed() const { return compressed_; }
  const TensorView* find(const std::string& name) const;
  // Throws "<label>: missing tensor 'name'" or a shape mismatch error naming both shapes.
  const TensorView& get(const std::string& name, const Shape& expect = {}) const;
  Param param(const std::string& name, const Shape& expect = {}) const;
  // Shape of a stored tensor, compressed or not (throws if absent).
  const Shape& shape_of(const std::string& name) const;
  std::optional<Param> optional_param(const std::string& name, const Shape& expect = {}) const;
  std::vector<std::string> names() const;
  // Names never fetched through get()/param(): unknown keys after a model is built.
  std::vector<std::string> unused() const;
  std::string source() const;  // the files, for error messages
  // Throws naming the file if one of the mapped files was truncated or changed in place since it
  // was mapped (SafetensorsFile::check_intact): results computed from this store are void.
  void check_files() const;
  int64_t total_bytes() const;
  int64_t count_dtype(DType t) const;

  // Shape discovery: when set, a tensor that get() cannot find is created by `make(name, shape)`
  // (the shape the architecture expects) instead of failing. Building a model on such a store
  // yields its complete tensor list, e.g. to write random-weight models of a given config.
  using Synthesizer = std::function<TensorView(const std::string& name, const Shape& shape)>;
  void set_synthesizer(Synthesizer make) { synth_ = std::move(make); }

  // Drops the file pages of a mapped tensor from the resident set (e.g. once int8 copies of it are
  // made); they come back from the file if read again. Tensors not from a file are left alone.
  void release_pages(const TensorView& v) const;

 private:
  std::string label_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  mutable std::map<std::string, TensorView> views_;  // mutable: shape discovery adds entries
  std::map<std::string, CompressedView> compressed_;
  mutable std::set<std::string> used_;
  Synthesizer synth_;
};

}  // namespace sdpal
