// Compressed weight files (sdpal-compressed/1). The reader's scan of every palette index (the
// largest index against the LUT size) is a Highway kernel; the rest is scalar.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "formats/compressed_format.cpp"
#include "formats/compressed_format.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/bitpack.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/limits.h"

HWY_BEFORE_NAMESPACE();
namespace sdpal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Largest lane of a u8 vector (once per call: through memory).
template <class D>
unsigned MaxLane(D d, hn::Vec<D> v) {
  HWY_ALIGN uint8_t lanes[hn::MaxLanes(d)];
  hn::Store(v, d, lanes);
  unsigned m = 0;
  for (size_t i = 0; i < hn::Lanes(d); ++i) m = std::max<unsigned>(m, lanes[i]);
  return m;
}

// Largest index among the whole bytes p[0, n) of a stream whose indices do not straddle bytes
// (nbits 1, 2, 4 or 8).
unsigned MaxIndexBytes(const uint8_t* p, size_t n, int nbits) {
  const unsigned mask = (1u << nbits) - 1;
  const int fields = 8 / nbits;
  unsigned m = 0;
  size_t b = 0;
#if HWY_TARGET != HWY_SCALAR  // (no 16-bit lanes to shift there)
  const hn::ScalableTag<uint8_t> d8;
  const hn::Repartition<uint16_t, decltype(d8)> d16;
  const size_t N = hn::Lanes(d8);
  const auto vmask = hn::Set(d8, static_cast<uint8_t>(mask));
  auto acc = hn::Zero(d8);
  for (; b + N <= n; b += N) {
    const auto v = hn::LoadU(d8, p + b);
    for (int k = 0; k < fields; ++k) {
      // A 16-bit shift moves the next byte's low bits into this byte's top; the mask drops them.
      const auto f = hn::BitCast(d8, hn::ShiftRightSame(hn::BitCast(d16, v), k * nbits));
      acc = hn::Max(acc, hn::And(f, vmask));
    }
  }
  m = MaxLane(d8, acc);
#endif
  for (; b < n; ++b)
    for (int k = 0; k < fields; ++k)
      m = std::max(m, (static_cast<unsigned>(p[b]) >> (k * nbits)) & mask);
  return m;
}

// Largest 6-bit index among the groups p[0, 3 * groups) of four indices in three bytes.
unsigned MaxIndex6(const uint8_t* p, size_t groups) {
  const hn::ScalableTag<uint8_t> d8;
  const size_t N = hn::Lanes(d8);
  auto acc = hn::Zero(d8);
  size_t g = 0;
  for (; g + N <= groups; g += N) {
    hn::Vec<decltype(d8)> b0, b1, b2;
    hn::LoadInterleaved3(d8, p + 3 * g, b0, b1, b2);
    const auto i0 = hn::And(b0, hn::Set(d8, 63));
    const auto i1 = hn::Or(hn::ShiftRight<6>(b0), hn::ShiftLeft<2>(hn::And(b1, hn::Set(d8, 15))));
    const auto i2 = hn::Or(hn::ShiftRight<4>(b1), hn::ShiftLeft<4>(hn::And(b2, hn::Set(d8, 3))));
    const auto i3 = hn::ShiftRight<2>(b2);
    acc = hn::Max(hn::Max(acc, hn::Max(i0, i1)), hn::Max(i2, i3));
  }
  unsigned m = MaxLane(d8, acc);
  for (; g < groups; ++g) {
    const uint8_t* q = p + 3 * g;
    const uint32_t w = q[0] | (uint32_t(q[1]) << 8) | (uint32_t(q[2]) << 16);
    m = std::max({m, w & 63u, (w >> 6) & 63u, (w >> 12) & 63u, w >> 18});
  }
  return m;
}

}  // namespace HWY_NAMESPACE
}  // namespace sdpal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace sdpal {

HWY_EXPORT(MaxIndexBytes);
HWY_EXPORT(MaxIndex6);

namespace {

// Index checks run in chunks of this many elements (a multiple of 8, so that every chunk starts
// on a byte boundary for every bit width).
constexpr int64_t kIndexChunk = int64_t(1) << 18;

// Largest index among elements [e0, e1); e0 is a multiple of 8.
unsigned max_index(const uint8_t* p, int64_t e0, int64_t e1, int nbits) {
  unsigned m = 0;
  int64_t e = e0;
  if (nbits == 6) {
    const int64_t groups = (e1 - e0) / 4;
    m = SDPAL_DISPATCH(MaxIndex6)(p + e0 / 4 * 3, static_cast<size_t>(groups));
    e += groups * 4;
  } else {
    const int per_byte = 8 / nbits;
    const int64_t whole = (e1 - e0) / per_byte;
    m = SDPAL_DISPATCH(MaxIndexBytes)(p + e0 / per_byte, static_cast<size_t>(whole), nbits);
    e += whole * per_byte;
  }
  for (; e < e1; ++e) m = std::max(m, packed_index_at(p, e, nbits));
  return m;
}

struct IndexCheck {
  const CompressedView* view;
  const std::string* what;
};

// Scans every palette index of every weight (in parallel across all chunks of all weights) and
// reports the first out-of-range one, in the order of `checks`.
void check_indices(const std::vector<IndexCheck>& checks) {
  struct Chunk {
    size_t check;
    int64_t begin, end;
  };
  std::vector<Chunk> chunks;
  for (size_t c = 0; c < checks.size(); ++c) {
    const CompressedView& v = *checks[c].view;
    if (v.kind != CompressedView::Kind::Palette || v.entries >= (int64_t(1) << v.nbits)) continue;
    for (int64_t b = 0; b < v.numel(); b += kIndexChunk)
      chunks.push_back({c, b, std::min(v.numel(), b + kIndexChunk)});
  }
  const int64_t n = static_cast<int64_t>(chunks.size());
  int64_t first_bad_chunk = n;
#pragma omp parallel for schedule(dynamic, 4) reduction(min : first_bad_chunk) if (n > 1)
  for (int64_t i = 0; i < n; ++i) {
    const Chunk& ch = chunks[i];
    const CompressedView& v = *checks[ch.check].view;
    if (max_index(v.indices, ch.begin, ch.end, v.nbits) >= static_cast<unsigned>(v.entries))
      first_bad_chunk = std::min(first_bad_chunk, i);
  }
  if (first_bad_chunk == n) return;
  const Chunk& ch = chunks[first_bad_chunk];
  const CompressedView& v = *checks[ch.check].view;
  for (int64_t e = ch.begin; e < ch.end; ++e) {
    const unsigned idx = packed_index_at(v.indices, e, v.nbits);
    if (idx >= static_cast<unsigned>(v.entries))
      fail(*checks[ch.check].what + ": palette index " + std::to_string(idx) + " at element " +
           std::to_string(e) + " is out of range (the LUT has " + std::to_string(v.entries) +
           " entries)");
  }
}

bool is_finite_half(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

// Structure checks (everything but the index scan).
void validate_structure(const CompressedView& v, const std::string& what) {
  SDPAL_CHECK(!v.shape.empty(), what + ": a compressed weight needs at least one dimension");
  for (int64_t d : v.shape) SDPAL_CHECK(d > 0, what + ": invalid shape " + shape_str(v.shape));
  SDPAL_CHECK(
      v.orig_dtype == DType::F16 || v.orig_dtype == DType::F32 || v.orig_dtype == DType::BF16,
      what + ": original dtype must be F16, F32 or BF16, not " + dtype_name(v.orig_dtype));
  const int64_t rows = v.shape[0];
  if (v.kind == CompressedView::Kind::Palette) {
    SDPAL_CHECK(valid_palette_bits(v.nbits),
                what + ": nbits " + std::to_string(v.nbits) + " is not one of 1, 2, 4, 6, 8");
    SDPAL_CHECK(v.group_size >= 0, what + ": negative group size");
    if (v.group_size > 0) {
      SDPAL_CHECK(rows % v.group_size == 0, what + ": group size " + std::to_string(v.group_size) +
                                                " does not divide the " + std::to_string(rows) +
                                                " output channels");
      SDPAL_CHECK(v.groups == rows / v.group_size,
                  what + ": " + std::to_string(v.groups) + " LUT groups, but " +
                      std::to_string(rows) + " output channels / group size " +
                      std::to_string(v.group_size) + " = " + std::to_string(rows / v.group_size));
    } else {
      SDPAL_CHECK(v.groups == 1, what + ": a per-tensor palette has " + std::to_string(v.groups) +
                                     " LUT groups instead of 1");
    }
    SDPAL_CHECK(v.entries >= 1 && v.entries <= (int64_t(1) << v.nbits),
                what + ": " + std::to_string(v.entries) + " LUT entries do not fit " +
                    std::to_string(v.nbits) + "-bit indices (1.." + std::to_string(1 << v.nbits) +
                    ")");
    SDPAL_CHECK(v.lut && v.indices, what + ": LUT or indices missing");
    for (int64_t i = 0; i < v.groups * v.entries; ++i)
      SDPAL_CHECK(is_finite_half(v.lut[i]),
                  what + ": LUT entry " + std::to_string(i) + " is not finite");
  } else {
    SDPAL_CHECK(v.q && v.scale, what + ": quantized values or scales missing");
    SDPAL_CHECK(v.symmetric == (v.zero == nullptr),
                what + (v.symmetric ? ": a symmetric linear-8 weight has zero points"
                                    : ": an asymmetric linear-8 weight lacks zero points"));
    for (int64_t r = 0; r < rows; ++r)
      SDPAL_CHECK(std::isfinite(v.scale[r]),
                  what + ": scale of row " + std::to_string(r) + " is not finite");
  }
}

// --- metadata JSON ---

const char* granularity_name(const CompressedView& v) {
  return v.group_size > 0 ? "per-grouped-channel" : "per-tensor";
}

int64_t json_int(const nlohmann::json& j, const char* key, const std::string& what) {
  if (!j.contains(key) || !j[key].is_number_integer())
    fail(what + ": metadata field '" + key + "' is missing or not an integer");
  return j[key].get<int64_t>();
}

std::string json_str(const nlohmann::json& j, const char* key, const std::string& what) {
  if (!j.contains(key) || !j[key].is_string())
    fail(what + ": metadata field '" + key + "' is missing or not a string");
  return j[key].get<std::string>();
}

// Parses the description of one weight into a view without data pointers.
CompressedView parse_description(const std::string& text, const std::string& what) {
  nlohmann::json j;
  try {
    check_json_depth(text, "metadata");
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail(what + ": metadata is not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) fail(what + ": metadata is not a JSON object");
  CompressedView v;
  const std::string kind = json_str(j, "kind", what);
  if (kind == "palette")
    v.kind = CompressedView::Kind::Palette;
  else if (kind == "linear8")
    v.kind = CompressedView::Kind::Linear8;
  else
    fail(what + ": unknown compression kind '" + kind + "' (palette, linear8)");
  if (!j.contains("shape") || !j["shape"].is_array() || j["shape"].empty())
    fail(what + ": metadata field 'shape' is missing or not a non-empty array");
  if (j["shape"].size() > limits::kMaxTensorRank)
    fail(what + ": metadata shape has " + std::to_string(j["shape"].size()) +
         " dimensions, more than " + std::to_string(limits::kMaxTensorRank));
  for (const auto& d : j["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() <= 0 || d.get<int64_t>() > limits::kMaxTensorDim)
      fail(what + ": metadata shape " + j["shape"].dump() +
           " has an invalid dimension (each must be 1.." + std::to_string(limits::kMaxTensorDim) +
           ")");
    v.shape.push_back(d.get<int64_t>());
  }
  // Multiplied with checks: [2^32, 2^32] would otherwise wrap around to 0 elements and be accepted
  // with empty components.
  checked_numel(v.shape, limits::kMaxTensorElements, what + ": metadata");
  const std::string dtype = json_str(j, "dtype", what);
  if (!parse_dtype(dtype, &v.orig_dtype) ||
      (v.orig_dtype != DType::F16 && v.orig_dtype != DType::F32 && v.orig_dtype != DType::BF16))
    fail(what + ": original dtype '" + dtype + "' is not F16, F32 or BF16");
  if (v.kind == CompressedView::Kind::Palette) {
    const int64_t nbits = json_int(j, "nbits", what);
    if (!valid_palette_bits(static_cast<int>(nbits)) || nbits != static_cast<int>(nbits))
      fail(what + ": nbits " + std::to_string(nbits) + " is not one of 1, 2, 4, 6, 8");
    v.nbits = static_cast<int>(nbits);
    const std::string gran = json_str(j, "granularity", what);
    if (gran == "per-grouped-channel") {
      v.group_size = json_int(j, "group_size", what);
      if (v.group_size <= 0)
        fail(what + ": group_size " + std::to_string(v.group_size) + " must be positive");
      if (v.shape[0] % v.group_size != 0)
        fail(what + ": group_size " + std::to_string(v.group_size) + " does not divide the " +
             std::to_string(v.shape[0]) + " output channels");
      v.groups = v.shape[0] / v.group_size;
    } else if (gran == "per-tensor") {
      if (j.contains("group_size") && json_int(j, "group_size", what) != 0)
        fail(what + ": a per-tensor palette must have group_size 0");
      v.group_size = 0;
      v.groups = 1;
    } else {
      fail(what + ": unknown granularity '" + gran + "' (per-tensor, per-grouped-channel)");
    }
    v.entries = json_int(j, "entries", what);
    if (v.entries < 1 || v.entries > (int64_t(1) << v.nbits))
      fail(what + ": " + std::to_string(v.entries) + " LUT entries do not fit " +
           std::to_string(v.nbits) + "-bit indices (1.." + std::to_string(1 << v.nbits) + ")");
    const std::string order = json_str(j, "bit_order", what);
    if (order != "lsb-first") fail(what + ": unsupported bit_order '" + order + "' (lsb-first)");
  } else {
    if (!j.contains("symmetric") || !j["symmetric"].is_boolean())
      fail(what + ": metadata field 'symmetric' is missing or not a boolean");
    v.symmetric = j["symmetric"].get<bool>();
    if (j.contains("nbits") && json_int(j, "nbits", what) != 8)
      fail(what + ": linear8 weights have nbits 8, not " + j["nbits"].dump());
    if (j.contains("granularity") && json_str(j, "granularity", what) != "per-channel")
      fail(what + ": linear8 granularity must be per-channel, not " + j["granularity"].dump());
  }
  return v;
}

// The component tensor `name`, checked for dtype, shape and alignment.
const TensorView& component(const SafetensorsFile& f, const std::string& name, DType dtype,
                            const Shape& shape, const std::string& what) {
  const TensorView* t = f.find(name);
  if (!t) fail(what + ": component tensor '" + name + "' is missing");
  if (t->dtype != dtype || t->shape != shape)
    fail(what + ": component tensor '" + name + "' is " + dtype_name(t->dtype) + " " +
         shape_str(t->shape) + ", expected " + dtype_name(dtype) + " " + shape_str(shape));
  if (reinterpret_cast<uintptr_t>(t->data) % dtype_size(dtype) != 0)
    fail(what + ": component tensor '" + name + "' is not aligned to its element size");
  return *t;
}

}  // namespace

std::string describe_compressed(const CompressedView& v) {
  nlohmann::ordered_json j;
  if (v.kind == CompressedView::Kind::Palette) {
    j["kind"] = "palette";
    j["shape"] = v.shape;
    j["dtype"] = dtype_name(v.orig_dtype);
    j["nbits"] = v.nbits;
    j["granularity"] = granularity_name(v);
    j["group_size"] = v.group_size;
    j["entries"] = v.entries;
    j["bit_order"] = "lsb-first";
  } else {
    j["kind"] = "linear8";
    j["shape"] = v.shape;
    j["dtype"] = dtype_name(v.orig_dtype);
    j["nbits"] = 8;
    j["granularity"] = "per-channel";
    j["symmetric"] = v.symmetric;
  }
  return j.dump();
}

void validate_compressed(const CompressedView& v, const std::string& what) {
  validate_structure(v, what);
  check_indices({{&v, &what}});
}

void write_compressed_safetensors(const std::string& path,
                                  const std::vector<CompressedEntry>& entries,
                                  const std::map<std::string, std::string>& metadata) {
  std::map<std::string, std::string> md;
  for (const auto& [k, val] : metadata) {
    if (k.rfind(kCompressedKeyPrefix, 0) == 0)
      fail(path + ": metadata key '" + k + "' is reserved for the compressed format");
    md[k] = val;
  }
  md[kCompressedFormatKey] = kCompressedFormatVersion;

  std::vector<TensorToWrite> tensors;
  std::set<std::string> names;  // stored tensors and compressed weights: no name twice
  std::vector<CompressedView> views;
  std::vector<std::string> whats;
  views.reserve(entries.size());
  whats.reserve(entries.size());
  auto claim = [&](const std::string& name) {
    if (name.empty() || name == "__metadata__") fail(path + ": invalid tensor name '" + name + "'");
    if (!names.insert(name).second)
      fail(path + ": tensor name '" + name +
           "' is used twice (a compressed weight's component "
           "names W.lut, W.indices, W.q, W.scale, W.zero must not be taken)");
  };
  auto add = [&](const std::string& name, DType dtype, Shape shape, const void* data) {
    claim(name);
    tensors.push_back({name, dtype, std::move(shape), data});
  };
  auto claim_compressed = [&](const std::string& name, const std::string& what) {
    if (std::string(kCompressedKeyPrefix) + name == kCompressedFormatKey)
      fail(what + ": the name is reserved by the compressed format and cannot be compressed");
    claim(name);
  };

  for (const auto& e : entries) {
    const std::string what = path + ": tensor '" + e.name + "'";
    if (const auto* t = std::get_if<TensorView>(&e.value)) {
      SDPAL_CHECK(t->data || t->numel() == 0, what + ": no data");
      add(e.name, t->dtype, t->shape, t->data);
    } else if (const auto* p = std::get_if<PalettizedWeight>(&e.value)) {
      claim_compressed(e.name, what);
      // Sizes are checked before CompressedView::of divides by the group size.
      SDPAL_CHECK(!p->shape.empty() && p->shape[0] > 0,
                  what + ": invalid shape " + shape_str(p->shape));
      SDPAL_CHECK(p->group_size >= 0 && (p->group_size == 0 || p->shape[0] % p->group_size == 0),
                  what + ": group size " + std::to_string(p->group_size) + " does not divide the " +
                      std::to_string(p->shape[0]) + " output channels");
      SDPAL_CHECK(valid_palette_bits(p->nbits),
                  what + ": nbits " + std::to_string(p->nbits) + " is not one of 1, 2, 4, 6, 8");
      SDPAL_CHECK(static_cast<int64_t>(p->lut.size()) == p->groups() * p->entries,
                  what + ": LUT holds " + std::to_string(p->lut.size()) + " values, expected " +
                      std::to_string(p->groups()) + " groups x " + std::to_string(p->entries) +
                      " entries");
      const int64_t nbytes = packed_index_bytes(shape_numel(p->shape), p->nbits);
      SDPAL_CHECK(static_cast<int64_t>(p->indices.size()) == nbytes,
                  what + ": " + std::to_string(p->indices.size()) + " index bytes, expected " +
                      std::to_string(nbytes));
      views.push_back(CompressedView::of(*p));
      whats.push_back(what);
      validate_structure(views.back(), what);
      add(lut_tensor_name(e.name), DType::F16, {p->groups(), p->entries}, p->lut.data());
      add(indices_tensor_name(e.name), DType::U8, {nbytes}, p->indices.data());
      md[kCompressedKeyPrefix + e.name] = describe_compressed(views.back());
    } else {
      const auto& l = std::get<Linear8Weight>(e.value);
      claim_compressed(e.name, what);
      SDPAL_CHECK(!l.shape.empty() && l.shape[0] > 0,
                  what + ": invalid shape " + shape_str(l.shape));
      const int64_t rows = l.shape[0];
      SDPAL_CHECK(static_cast<int64_t>(l.q.size()) == shape_numel(l.shape),
                  what + ": " + std::to_string(l.q.size()) + " quantized values for shape " +
                      shape_str(l.shape));
      SDPAL_CHECK(static_cast<int64_t>(l.scale.size()) == rows,
                  what + ": " + std::to_string(l.scale.size()) + " scales for " +
                      std::to_string(rows) + " rows");
      SDPAL_CHECK(static_cast<int64_t>(l.zero.size()) == (l.symmetric ? 0 : rows),
                  what + ": " + std::to_string(l.zero.size()) + " zero points for " +
                      std::to_string(rows) + " rows (" +
                      (l.symmetric ? "symmetric: none expected)" : "asymmetric)"));
      views.push_back(CompressedView::of(l));
      whats.push_back(what);
      validate_structure(views.back(), what);
      add(q_tensor_name(e.name), l.symmetric ? DType::I8 : DType::U8, l.shape, l.q.data());
      add(scale_tensor_name(e.name), DType::F32, {rows}, l.scale.data());
      if (!l.symmetric) add(zero_tensor_name(e.name), DType::U8, {rows}, l.zero.data());
      md[kCompressedKeyPrefix + e.name] = describe_compressed(views.back());
    }
  }
  std::vector<IndexCheck> checks;
  for (size_t i = 0; i < views.size(); ++i) checks.push_back({&views[i], &whats[i]});
  check_indices(checks);
  write_safetensors(path, tensors, md);
}

bool is_compressed_file(const SafetensorsFile& f) {
  return f.metadata().count(kCompressedFormatKey) != 0;
}

CompressedTensors read_compressed(const SafetensorsFile& f) {
  CompressedTensors out;
  const auto& md = f.metadata();
  const std::string prefix = kCompressedKeyPrefix;
  std::vector<std::pair<std::string, const std::string*>> described;  // weight name, JSON
  for (const auto& [k, val] : md)
    if (k.rfind(prefix, 0) == 0 && k != kCompressedFormatKey)
      described.emplace_back(k.substr(prefix.size()), &val);
  const auto fmt = md.find(kCompressedFormatKey);
  if (fmt == md.end()) {
    if (!described.empty())
      fail(f.path() + ": metadata describes compressed tensor '" + described[0].first +
           "' but lacks \"" + kCompressedFormatKey + "\"");
    return out;
  }
  if (fmt->second != kCompressedFormatVersion)
    fail(f.path() + ": compressed format '" + fmt->second +
         "' is not supported (this sdpal reads " + kCompressedFormatVersion + ")");

  std::vector<std::string> whats;
  whats.reserve(described.size());
  for (const auto& [name, json] : described) {
    const std::string what = f.path() + ": tensor '" + name + "'";
    CompressedView v = parse_description(*json, what);
    if (f.has(name)) fail(what + " is stored both uncompressed and compressed");
    std::vector<std::string> parts;
    const int64_t rows = v.shape[0];
    if (v.kind == CompressedView::Kind::Palette) {
      parts = {lut_tensor_name(name), indices_tensor_name(name)};
      const TensorView* lut = f.find(parts[0]);
      if (lut && lut->dtype == DType::F16 && lut->shape.size() == 2 &&
          lut->shape != Shape{v.groups, v.entries})
        fail(what + ": LUT is " + shape_str(lut->shape) + " but the metadata says " +
             std::to_string(v.groups) + " groups x " + std::to_string(v.entries) + " entries");
      v.lut = reinterpret_cast<const uint16_t*>(
          component(f, parts[0], DType::F16, {v.groups, v.entries}, what).data);
      const int64_t nbytes = packed_index_bytes(v.numel(), v.nbits);
      const TensorView* idx = f.find(parts[1]);
      if (idx && idx->dtype == DType::U8 && idx->shape.size() == 1 && idx->shape[0] != nbytes)
        fail(what + ": indices hold " + std::to_string(idx->shape[0]) + " bytes, but " +
             std::to_string(v.numel()) + " elements x " + std::to_string(v.nbits) + " bits need " +
             std::to_string(nbytes) + " (truncated?)");
      v.indices = component(f, parts[1], DType::U8, {nbytes}, what).data;
    } else {
      parts = {q_tensor_name(name), scale_tensor_name(name)};
      v.q = component(f, parts[0], v.symmetric ? DType::I8 : DType::U8, v.shape, what).data;
      const TensorView* sc = f.find(parts[1]);
      if (sc && sc->dtype == DType::F32 && sc->shape.size() == 1 && sc->shape[0] != rows)
        fail(what + ": " + std::to_string(sc->shape[0]) + " scales for " + std::to_string(rows) +
             " rows");
      v.scale =
          reinterpret_cast<const float*>(component(f, parts[1], DType::F32, {rows}, what).data);
      if (!v.symmetric) {
        parts.push_back(zero_tensor_name(name));
        v.zero = component(f, parts[2], DType::U8, {rows}, what).data;
      } else if (f.has(zero_tensor_name(name))) {
        fail(what + ": a symmetric linear-8 weight has a zero-point tensor '" +
             zero_tensor_name(name) + "'");
      }
    }
    for (const auto& p : parts)
      if (!out.component_tensor_names.insert(p).second)
        fail(what + ": component tensor '" + p + "' is claimed by another compressed weight");
    validate_structure(v, what);
    whats.push_back(what);
    out.weights.emplace(name, std::move(v));
  }
  std::vector<IndexCheck> checks;
  size_t i = 0;
  for (const auto& [name, json] : described) checks.push_back({&out.weights.at(name), &whats[i++]});
  check_indices(checks);
  return out;
}

}  // namespace sdpal
#endif  // HWY_ONCE
