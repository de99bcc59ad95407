// Compressed weight files (formats/compressed_format.h, docs/compressed-format.md) on arbitrary
// safetensors bytes: the per-weight JSON descriptions in __metadata__ and their component tensors.
// Invariants of an accepted file: every weight passes validate_compressed, its components lie in
// the mapped file (with exactly stored_bytes() between them), it expands to fp32 with every
// palette value one of its LUT's entries, and writing the weights and plain tensors back and
// reading them gives the same descriptions and bytes.
#include <cmath>
#include <cstring>
#include <memory>

#include "core/dtype.h"
#include "formats/compressed_format.h"
#include "fuzz/fuzz_support.h"
#include "kernels/expand.h"

using namespace sdpal;

namespace {

constexpr int64_t kMaxExpand = int64_t(1) << 22;  // elements expanded per weight (time bound)

int64_t index_bytes(const CompressedView& v) { return (v.numel() * v.nbits + 7) / 8; }

void check_weight(const SafetensorsFile& f, const std::string& name, const CompressedView& v) {
  validate_compressed(v, name);  // must agree with the reader: throws (an escape) otherwise
  FUZZ_CHECK(!v.shape.empty() && v.numel() > 0, name + ": empty compressed weight accepted");
  int64_t component_bytes = 0;
  auto in_file = [&](const void* p, int64_t n, const char* what) {
    FUZZ_CHECK(p != nullptr && f.release_pages(p, static_cast<size_t>(n)),
               name + ": " + what + " outside the mapped file");
    component_bytes += n;
  };
  if (v.kind == CompressedView::Kind::Palette) {
    FUZZ_CHECK(valid_palette_bits(v.nbits), name + ": accepted nbits " + std::to_string(v.nbits));
    FUZZ_CHECK(v.entries >= 1 && v.entries <= (int64_t(1) << v.nbits), name + ": LUT size");
    in_file(v.lut, v.groups * v.entries * 2, "LUT");
    in_file(v.indices, index_bytes(v), "indices");
  } else {
    in_file(v.q, v.numel(), "q");
    in_file(v.scale, v.rows() * 4, "scales");
    if (!v.symmetric) in_file(v.zero, v.rows(), "zero points");
  }
  FUZZ_CHECK(component_bytes == v.stored_bytes(), name + ": stored_bytes() differs");
  if (v.numel() > kMaxExpand) return;
  std::vector<float> w(static_cast<size_t>(v.numel()));
  expand(v, w.data());
  if (v.kind == CompressedView::Kind::Palette) {
    const int64_t per_row = v.numel() / v.rows();
    for (int64_t i = 0; i < v.numel(); ++i) {
      const int64_t g = v.group_size ? (i / per_row) / v.group_size : 0;
      bool in_lut = false;
      for (int64_t e = 0; e < v.entries && !in_lut; ++e) {
        const float l = half_to_float(v.lut[g * v.entries + e]);
        in_lut = l == w[i] || (std::isnan(l) && std::isnan(w[i]));
      }
      FUZZ_CHECK(in_lut, name + ": expanded value not in its group's LUT");
    }
  }
}

PalettizedWeight own_palette(const CompressedView& v) {
  PalettizedWeight p;
  p.shape = v.shape;
  p.orig_dtype = v.orig_dtype;
  p.nbits = v.nbits;
  p.group_size = v.group_size;
  p.entries = v.entries;
  p.lut.assign(v.lut, v.lut + v.groups * v.entries);
  p.indices.assign(v.indices, v.indices + index_bytes(v));
  return p;
}

Linear8Weight own_linear8(const CompressedView& v) {
  Linear8Weight l;
  l.shape = v.shape;
  l.orig_dtype = v.orig_dtype;
  l.symmetric = v.symmetric;
  l.q.assign(v.q, v.q + v.numel());
  l.scale.assign(v.scale, v.scale + v.rows());
  if (!v.symmetric) l.zero.assign(v.zero, v.zero + v.rows());
  return l;
}

void check_round_trip(const SafetensorsFile& f, const CompressedTensors& c) {
  std::vector<CompressedEntry> entries;
  for (const TensorView& t : f.tensors())
    if (!c.component_tensor_names.count(t.name)) entries.push_back({t.name, t});
  for (const auto& [name, v] : c.weights) {
    if (v.kind == CompressedView::Kind::Palette)
      entries.push_back({name, own_palette(v)});
    else
      entries.push_back({name, own_linear8(v)});
  }
  std::map<std::string, std::string> md;
  for (const auto& [k, val] : f.metadata())
    if (k.rfind(kCompressedKeyPrefix, 0) != 0) md[k] = val;
  const std::string out = (fuzz::scratch().path() / "round_trip.safetensors").string();
  try {
    write_compressed_safetensors(out, entries, md);
  } catch (const Error&) {
    // The writer refuses names that would be used twice (a plain tensor "w.lut" beside a weight
    // "w"): the reader accepts such files only while the plain tensor is not a component.
    return;
  }
  const auto g = fuzz::must_succeed([&] { return std::make_unique<SafetensorsFile>(out); },
                                    "reading the written file");
  const CompressedTensors d =
      fuzz::must_succeed([&] { return read_compressed(*g); }, "reading its compressed weights");
  FUZZ_CHECK(d.weights.size() == c.weights.size(), "weight count changed in a round trip");
  for (const auto& [name, v] : c.weights) {
    const auto it = d.weights.find(name);
    FUZZ_CHECK(it != d.weights.end(), name + ": lost in a round trip");
    const CompressedView& u = it->second;
    FUZZ_CHECK(describe_compressed(u) == describe_compressed(v),
               name + ": description changed in a round trip");
    if (v.kind == CompressedView::Kind::Palette) {
      FUZZ_CHECK(std::memcmp(u.lut, v.lut, v.groups * v.entries * 2) == 0, name + ": LUT changed");
      FUZZ_CHECK(std::memcmp(u.indices, v.indices, index_bytes(v)) == 0, name + ": indices");
    } else {
      FUZZ_CHECK(std::memcmp(u.q, v.q, v.numel()) == 0, name + ": q changed");
      FUZZ_CHECK(std::memcmp(u.scale, v.scale, v.rows() * 4) == 0, name + ": scales changed");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::scratch().write("input.safetensors", fuzz::as_text(data, size));
  FUZZ_EXPECT_ERRORS({
    const SafetensorsFile f(path);
    const CompressedTensors c = read_compressed(f);
    FUZZ_CHECK(is_compressed_file(f) || c.weights.empty(), "weights in a plain file");
    for (const auto& [name, v] : c.weights) check_weight(f, name, v);
    check_round_trip(f, c);
  });
  return 0;
}
