#include "models/weights.h"

#include <cstdlib>

#include "core/error.h"
#include "core/parallel.h"

namespace sdpal {

namespace {
constexpr int64_t kSmallParam = 1 << 16;  // fp32 copies kept for tensors up to this many elements
}

Param::Param(const WeightStore* store, const TensorView* view) : store_(store), view_(view) {
  if (view->dtype != DType::F32 && view->numel() <= kSmallParam) {
    copy_ = std::make_shared<std::vector<float>>(view->numel());
    convert_to_f32(view->dtype, view->data, copy_->data(), view->numel());
  }
}

const float* Param::f32() const {
  SDPAL_CHECK(view_, "internal: use of an unloaded parameter");
  if (copy_) return copy_->data();
  if (view_->dtype == DType::F32) return reinterpret_cast<const float*>(view_->data);
  float* s = store_->scratch(view_->numel());
  const int64_t n = view_->numel(), block = 1 << 16;
  const size_t es = dtype_size(view_->dtype);
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t b = 0; b < (n + block - 1) / block; ++b) {
    const int64_t s0 = b * block;
    convert_to_f32(view_->dtype, view_->data + s0 * es, s + s0, std::min(block, n - s0));
  }
  return s;
}

void WeightStore::AlignedFree::operator()(float* p) const { std::free(p); }

float* WeightStore::scratch(size_t n) const {
  if (n > scratch_n_) {
    size_t bytes = (n * 4 + 63) / 64 * 64;
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!p) fail(label_ + ": out of memory expanding weights");
    scratch_.reset(p);
    scratch_n_ = n;
  }
  return scratch_.get();
}

void WeightStore::add_file(
    const std::string& path,
    const std::function<std::optional<std::string>(const std::string&)>& rename) {
  auto f = std::make_shared<SafetensorsFile>(path);
  for (const TensorView& v : f->tensors()) {
    std::optional<std::string> name = rename ? rename(v.name) : std::optional<std::string>(v.name);
    if (!name) continue;
    views_[*name] = v;
  }
  files_.push_back(std::move(f));
}

void WeightStore::add_view(const std::string& name, TensorView v) { views_[name] = std::move(v); }

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
  return Param(this, &get(name, expect));
}

std::optional<Param> WeightStore::optional_param(const std::string& name,
                                                 const Shape& expect) const {
  if (!has(name)) return std::nullopt;
  return param(name, expect);
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> r;
  for (const auto& [k, v] : views_) r.push_back(k);
  return r;
}

std::vector<std::string> WeightStore::unused() const {
  std::vector<std::string> r;
  for (const auto& [k, v] : views_)
    if (!used_.count(k)) r.push_back(k);
  return r;
}

int64_t WeightStore::total_bytes() const {
  int64_t n = 0;
  for (const auto& [k, v] : views_) n += v.nbytes;
  return n;
}

int64_t WeightStore::count_dtype(DType t) const {
  int64_t n = 0;
  for (const auto& [k, v] : views_) n += v.dtype == t;
  return n;
}

}  // namespace sdpal
