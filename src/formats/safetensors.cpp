#include "formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <tuple>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/limits.h"

namespace sdpal {

namespace {
constexpr uint64_t kMaxHeader = limits::kMaxSafetensorsHeaderBytes;
constexpr int64_t kMaxDim = limits::kMaxTensorDim;

// Checks the header text before nlohmann parses it, so that hostile headers are refused in one
// linear pass, before the parser allocates for them (a 100 MB header that is not an object, or
// one array of millions of numbers, would otherwise take gigabytes):
//  - it must be a JSON object (first non-space byte '{');
//  - it nests at most 3 levels ({name: {"shape": [...]}}, {"__metadata__": {k: v}});
//  - at most limits::kMaxSafetensorsTensors entries and as many metadata pairs;
//  - arrays (shape, data_offsets) of at most limits::kMaxTensorRank elements.
// Returns an empty string when the header may be parsed, else what is wrong.
std::string prescan_header(const uint8_t* p, size_t n) {
  constexpr int kMaxDepth = 3;
  size_t i = 0;
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) ++i;
  if (i == n) return "header is not valid JSON (it is empty)";
  if (p[i] != '{') return "header is not a JSON object";
  int depth = 0;
  int64_t members[kMaxDepth + 1] = {};  // commas in the open object/array at each depth
  bool in_string = false;
  for (; i < n; ++i) {
    const uint8_t c = p[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxDepth)
        return "header nests deeper than the " + std::to_string(kMaxDepth) +
               " levels of a safetensors header";
      if (depth >= 2) members[depth] = 0;  // counted per object / array
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == ',' && depth >= 1) {
      ++members[depth];
      if (depth < kMaxDepth && members[depth] >= limits::kMaxSafetensorsTensors)
        return "header holds more than " + std::to_string(limits::kMaxSafetensorsTensors) +
               (depth == 1 ? " entries" : " metadata or entry fields");
      if (depth == kMaxDepth && members[depth] >= int64_t(limits::kMaxTensorRank))
        return "header holds an array of more than " + std::to_string(limits::kMaxTensorRank) +
               " elements (shapes have at most " + std::to_string(limits::kMaxTensorRank) +
               " dimensions)";
    }
  }
  return "";
}
}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  auto bad = [&](const std::string& why) { fail(path + ": not a valid safetensors file: " + why); };
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("cannot open " + path + ": not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    bad("file is " + std::to_string(size_) + " bytes, too short for a header (truncated?)");
  }
  map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail("cannot map " + path + ": " + std::strerror(errno));
  }
  try {
    const uint8_t* base = static_cast<const uint8_t*>(map_);
    uint64_t hlen = 0;
    std::memcpy(&hlen, base, 8);
    if (hlen > kMaxHeader)
      bad("header length " + std::to_string(hlen) + " exceeds 100 MB (the bound is " +
          std::to_string(kMaxHeader) + " bytes)");
    if (hlen > size_ - 8)
      bad("header length " + std::to_string(hlen) + " runs past end of file (truncated?)");
    if (const std::string why = prescan_header(base + 8, hlen); !why.empty()) bad(why);
    nlohmann::json h;
    try {
      h = nlohmann::json::parse(base + 8, base + 8 + hlen);
    } catch (const std::exception& e) {
      bad(std::string("header is not valid JSON (") + e.what() + ")");
    }
    if (!h.is_object()) bad("header is not a JSON object");
    const uint8_t* data = base + 8 + hlen;
    const size_t data_size = size_ - 8 - hlen;
    std::vector<std::tuple<size_t, size_t, std::string>> ranges;  // [begin, end), name
    for (auto it = h.begin(); it != h.end(); ++it) {
      const std::string& name = it.key();
      if (name == "__metadata__") {
        if (!it->is_object()) bad("__metadata__ is not an object");
        for (auto m = it->begin(); m != it->end(); ++m) {
          if (!m->is_string()) bad("__metadata__ value for '" + m.key() + "' is not a string");
          metadata_[m.key()] = m->get<std::string>();
        }
        continue;
      }
      const auto& e = *it;
      if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
          !e.contains("data_offsets"))
        bad("entry '" + name + "' lacks dtype/shape/data_offsets");
      TensorView v;
      v.name = name;
      if (!e["dtype"].is_string() || !parse_dtype(e["dtype"].get<std::string>(), &v.dtype))
        bad("entry '" + name + "' has unknown dtype " + e["dtype"].dump());
      if (!e["shape"].is_array()) bad("entry '" + name + "' shape is not an array");
      if (e["shape"].size() > limits::kMaxTensorRank)
        bad("entry '" + name + "' has " + std::to_string(e["shape"].size()) +
            " dimensions, more than the bound of " + std::to_string(limits::kMaxTensorRank));
      uint64_t numel = 1;
      for (const auto& d : e["shape"]) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > kMaxDim)
          bad("entry '" + name + "' has an invalid dimension " + d.dump());
        v.shape.push_back(d.get<int64_t>());
        // Checked before multiplying, so that huge dimensions cannot wrap around to a small size.
        const uint64_t dim = static_cast<uint64_t>(v.shape.back());
        if (dim != 0 && numel > uint64_t(limits::kMaxTensorElements) / dim)
          bad("entry '" + name + "' is absurdly large (shape " + e["shape"].dump() + ")");
        numel *= dim;
      }
      const auto& off = e["data_offsets"];
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
          !off[1].is_number_unsigned())
        bad("entry '" + name + "' has malformed data_offsets");
      uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
      if (b > en)
        bad("entry '" + name + "' has data_offsets [" + std::to_string(b) + ", " +
            std::to_string(en) + "] that end before they begin");
      if (en > data_size)
        bad("entry '" + name + "' data [" + std::to_string(b) + ", " + std::to_string(en) +
            ") lies outside the " + std::to_string(data_size) + "-byte data region (truncated?)");
      // Offsets need not be multiples of the element size (tensors packed back to back by other
      // tools): readers copy such data with unaligned-safe loads (convert_to_f32, Param::f32);
      // compressed components, used in place, are checked for alignment where they are read.
      if (en - b != numel * dtype_size(v.dtype))
        bad("entry '" + name + "' has " + std::to_string(en - b) + " bytes but dtype " +
            dtype_name(v.dtype) + " x shape " + shape_str(v.shape) + " needs " +
            std::to_string(numel * dtype_size(v.dtype)));
      v.data = data + b;
      v.nbytes = en - b;
      if (en > b) ranges.emplace_back(b, en, name);
      index_[name] = tensors_.size();
      tensors_.push_back(std::move(v));
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
      if (std::get<0>(ranges[i]) < std::get<1>(ranges[i - 1]))
        bad("tensors '" + std::get<2>(ranges[i - 1]) + "' and '" + std::get<2>(ranges[i]) +
            "' overlap in the data region");
  } catch (...) {
    ::munmap(map_, size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  const TensorView* v = find(name);
  if (!v) fail(path_ + ": tensor '" + name + "' not found");
  return *v;
}

bool SafetensorsFile::release_pages(const void* p, size_t n) const {
  const auto* base = static_cast<const uint8_t*>(map_);
  const auto* b = static_cast<const uint8_t*>(p);
  if (!map_ || b < base || b + n > base + size_) return false;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(b) + page - 1) & ~(page - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(b) + n) & ~(page - 1);
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  return true;
}

Tensor SafetensorsFile::to_f32(const std::string& name) const {
  const TensorView& v = get(name);
  Tensor t(v.shape);
  convert_to_f32(v.dtype, v.data, t.data(), v.numel());
  return t;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  size_t off = 0;
  std::vector<size_t> offsets;
  for (const auto& t : tensors) {
    SDPAL_CHECK(t.name != "__metadata__" && !t.name.empty(),
                "invalid tensor name '" + t.name + "'");
    size_t n = static_cast<size_t>(shape_numel(t.shape)) * dtype_size(t.dtype);
    off = (off + 7) / 8 * 8;
    offsets.push_back(off);
    h[t.name] = {
        {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string hs = h.dump();
  while ((hs.size() + 8) % 8) hs.push_back(' ');
  write_file_atomic(path, [&](std::FILE* f) {
    uint64_t hl = hs.size();
    bool ok =
        std::fwrite(&hl, 8, 1, f) == 1 && std::fwrite(hs.data(), 1, hs.size(), f) == hs.size();
    size_t pos = 0;
    static const char zeros[8] = {};
    for (size_t i = 0; ok && i < tensors.size(); ++i) {
      if (offsets[i] > pos) ok = std::fwrite(zeros, 1, offsets[i] - pos, f) == offsets[i] - pos;
      size_t n = static_cast<size_t>(shape_numel(tensors[i].shape)) * dtype_size(tensors[i].dtype);
      if (ok && n) ok = std::fwrite(tensors[i].data, 1, n, f) == n;
      pos = offsets[i] + n;
    }
    if (!ok) fail("cannot write " + path + ": " + std::strerror(errno));
  });
}

void write_safetensors_f32(const std::string& path,
                           const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                           const std::map<std::string, std::string>& metadata) {
  std::vector<TensorToWrite> w;
  for (const auto& [name, t] : tensors) w.push_back({name, DType::F32, t->shape(), t->data()});
  write_safetensors(path, w, metadata);
}

}  // namespace sdpal
