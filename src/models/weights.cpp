#include "models/weights.h"

#include <cstdlib>

#include "core/error.h"
#include "core/parallel.h"
#include "core/profile.h"
#include "formats/compressed_format.h"
#include "kernels/expand.h"

namespace sdpal {

namespace {
constexpr int64_t kSmallParam = 1 << 16;  // fp32 copies kept for tensors up to this many elements
}  // namespace

Param::Param(const WeightStore* store, const TensorView* view) : store_(store), view_(view) {
  if (view->dtype != DType::F32 && view->numel() <= kSmallParam) {
    copy_ = std::make_shared<std::vector<float>>(view->numel());
    convert_to_f32(view->dtype, view->data, copy_->data(), view->numel());
  }
}

Param::Param(const WeightStore* store, const CompressedView* cview) : store_(store), cview_(cview) {
  if (cview->numel() <= kSmallParam) {
    copy_ = std::make_shared<std::vector<float>>(cview->numel());
    expand(*cview, copy_->data());
  }
}

Param Param::owned(Tensor t) {
  Param p;
  p.owned_ = std::make_shared<const Tensor>(std::move(t));
  return p;
}

F32Data Param::f32() const {
  SDPAL_CHECK(valid(), "internal: use of an unloaded parameter");
  if (owned_) return F32Data(owned_->data());
  if (copy_) return F32Data(copy_->data());
  // Used in place only when aligned (a file whose header length is not a multiple of 4 puts
  // its tensors at odd addresses; those are copied like other dtypes).
  if (view_ && view_->dtype == DType::F32 &&
      reinterpret_cast<uintptr_t>(view_->data) % alignof(float) == 0)
    return F32Data(reinterpret_cast<const float*>(view_->data));
  prof::OpScope scope(prof::Op::expansion);
  ScratchLease lease(static_cast<size_t>(numel()));
  float* s = lease.data();
  if (cview_) {
    expand(*cview_, s);
    return F32Data(std::move(lease));
  }
  const int64_t n = view_->numel(), block = 1 << 16;
  const size_t es = dtype_size(view_->dtype);
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t b = 0; b < (n + block - 1) / block; ++b) {
    const int64_t s0 = b * block;
    convert_to_f32(view_->dtype, view_->data + s0 * es, s + s0, std::min(block, n - s0));
  }
  return F32Data(std::move(lease));
}

void Param::release_pages() const {
  if (store_ && view_ && !copy_) store_->release_pages(*view_);
}

void WeightStore::release_pages(const TensorView& v) const {
  for (const auto& f : files_)
    if (f->release_pages(v.data, v.nbytes)) return;
}

void WeightStore::add_file(
    const std::string& path,
    const std::function<std::optional<std::string>(const std::string&)>& rename) {
  auto f = std::make_shared<SafetensorsFile>(path);
  std::set<std::string> parts;  // tensors that are pieces of compressed weights
  if (f->metadata().count("sdpal:format")) {
    CompressedTensors c = read_compressed(*f);
    parts = c.component_tensor_names;
    for (auto& [n, cv] : c.weights) {
      std::optional<std::string> name = rename ? rename(n) : std::optional<std::string>(n);
      if (name) compressed_[*name] = cv;
    }
  }
  for (const TensorView& v : f->tensors()) {
    if (parts.count(v.name)) continue;
    std::optional<std::string> name = rename ? rename(v.name) : std::optional<std::string>(v.name);
    if (!name) continue;
    views_[*name] = v;
  }
  files_.push_back(std::move(f));
}

void WeightStore::add_view(const std::string& name, TensorView v) { views_[name] = std::move(v); }

void WeightStore::add_compressed(const std::string& name, CompressedView v) {
  views_.erase(name);
  compressed_[name] = std::move(v);
}

const TensorView* WeightStore::find(const std::string& name) const {
  auto it = views_.find(name);
  return it == views_.end() ? nullptr : &it->second;
}

std::string WeightStore::source() const {
  std::string s;
  for (const auto& f : files_) s += (s.empty() ? "" : ", ") + f->path();
  return s.empty() ? label_ : s;
}

const TensorView& WeightStore::get(const std::string& name, const Shape& expect) const {
  if (compressed_.count(name))
    fail(label_ + ": tensor '" + name + "' in " + source() +
         " is compressed, but this layer needs it uncompressed (it must not be compressed)");
  const TensorView* v = find(name);
  if (!v && synth_ && !expect.empty()) {
    views_[name] = synth_(name, expect);
    v = find(name);
  }
  if (!v)
    fail(label_ + ": missing tensor '" + name + "' in " + source() +
         " (the weights do not match the config's architecture)");
  if (!expect.empty() && v->shape != expect)
    fail(label_ + ": tensor '" + name + "' in " + source() + " has shape " + shape_str(v->shape) +
         " but the config implies " + shape_str(expect));
  used_.insert(name);
  return *v;
}

Param WeightStore::param(const std::string& name, const Shape& expect) const {
  auto it = compressed_.find(name);
  if (it != compressed_.end()) {
    if (!expect.empty() && it->second.shape != expect)
      fail(label_ + ": compressed tensor '" + name + "' in " + source() + " has shape " +
           shape_str(it->second.shape) + " but the config implies " + shape_str(expect));
    used_.insert(name);
    return Param(this, &it->second);
  }
  return Param(this, &get(name, expect));
}

const Shape& WeightStore::shape_of(const std::string& name) const {
  auto it = compressed_.find(name);
  if (it != compressed_.end()) return it->second.shape;
  const TensorView* v = find(name);
  if (!v) fail(label_ + ": missing tensor '" + name + "' in " + source());
  return v->shape;
}

std::optional<Param> WeightStore::optional_param(const std::string& name,
                                                 const Shape& expect) const {
  if (!has(name)) return std::nullopt;
  return param(name, expect);
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> r;
  for (const auto& [k, v] : views_) r.push_back(k);
  for (const auto& [k, v] : compressed_) r.push_back(k);
  return r;
}

std::vector<std::string> WeightStore::unused() const {
  std::vector<std::string> r;
  for (const auto& k : names())
    if (!used_.count(k)) r.push_back(k);
  return r;
}

int64_t WeightStore::total_bytes() const {
  int64_t n = 0;
  for (const auto& [k, v] : views_) n += v.nbytes;
  for (const auto& [k, v] : compressed_) n += v.stored_bytes();
  return n;
}

int64_t WeightStore::count_dtype(DType t) const {
  int64_t n = 0;
  for (const auto& [k, v] : views_) n += v.dtype == t;
  return n;
}

}  // namespace sdpal
