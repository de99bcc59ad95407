// safetensors reader (formats/safetensors.h) on arbitrary file bytes. Invariants of an accepted
// file: every tensor's bytes lie inside the data region, match dtype x shape, and do not overlap;
// every tensor converts to fp32; writing the parsed tensors and metadata back and reading that
// file gives the same names, dtypes, shapes, bytes and metadata.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "formats/safetensors.h"
#include "fuzz/fuzz_support.h"

using namespace sdpal;

namespace {

uint64_t header_length(const uint8_t* data) {
  uint64_t h = 0;
  std::memcpy(&h, data, 8);
  return h;
}

// The harness's own reading of the header (the oracle): name -> data_offsets.
std::map<std::string, std::pair<uint64_t, uint64_t>> offsets_in_header(const uint8_t* file,
                                                                       uint64_t hlen) {
  std::map<std::string, std::pair<uint64_t, uint64_t>> r;
  const auto h = nlohmann::json::parse(file + 8, file + 8 + hlen);
  for (auto it = h.begin(); it != h.end(); ++it)
    if (it.key() != "__metadata__")
      r[it.key()] = {(*it)["data_offsets"][0].get<uint64_t>(),
                     (*it)["data_offsets"][1].get<uint64_t>()};
  return r;
}

void check_file(const SafetensorsFile& f, const uint8_t* file, size_t size) {
  FUZZ_CHECK(size >= 8, "accepted a file shorter than its header length");
  const uint64_t hlen = header_length(file);
  FUZZ_CHECK(hlen <= size - 8, "header runs past the end of the file");
  const uint64_t data_size = size - 8 - hlen;
  const auto offsets = offsets_in_header(file, hlen);
  FUZZ_CHECK(offsets.size() == f.tensors().size(), "tensor count differs from the header's");
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const TensorView& v : f.tensors()) {
    FUZZ_CHECK(f.find(v.name) == &v, v.name + ": not found by its own name");
    const int64_t n = v.numel();
    FUZZ_CHECK(n >= 0, v.name + ": negative element count");
    FUZZ_CHECK(v.nbytes == static_cast<size_t>(n) * dtype_size(v.dtype),
               v.name + ": byte count differs from dtype x shape");
    const auto [b, e] = offsets.at(v.name);
    FUZZ_CHECK(b <= e && e <= data_size, v.name + ": extent outside the data region");
    FUZZ_CHECK(e - b == v.nbytes, v.name + ": extent differs from the byte count");
    FUZZ_CHECK(v.nbytes == 0 || f.release_pages(v.data, v.nbytes),
               v.name + ": view outside the mapped file");
    FUZZ_CHECK(v.nbytes == 0 || std::memcmp(v.data, file + 8 + hlen + b, v.nbytes) == 0,
               v.name + ": view does not hold the file's bytes at its offsets");
    if (v.nbytes) ranges.emplace_back(b, e);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    FUZZ_CHECK(ranges[i].first >= ranges[i - 1].second, "two tensors overlap");
  for (const TensorView& v : f.tensors()) {
    Tensor t = f.to_f32(v.name);  // bounded: the bytes are in the file
    FUZZ_CHECK(t.numel() == v.numel(), v.name + ": fp32 copy has another size");
  }
}

void check_round_trip(const SafetensorsFile& f) {
  std::vector<TensorToWrite> w;
  for (const TensorView& v : f.tensors()) {
    if (v.name.empty()) return;  // the writer refuses empty names (documented)
    w.push_back({v.name, v.dtype, v.shape, v.data});
  }
  const std::string out = fuzz::scratch().write("round_trip.safetensors", "");
  fuzz::must_succeed([&] { write_safetensors(out, w, f.metadata()); }, "writing it back");
  const auto g_ptr = fuzz::must_succeed([&] { return std::make_unique<SafetensorsFile>(out); },
                                        "reading the written file");
  const SafetensorsFile& g = *g_ptr;
  FUZZ_CHECK(g.metadata() == f.metadata(), "metadata changed in a write/read round trip");
  FUZZ_CHECK(g.tensors().size() == f.tensors().size(), "tensor count changed in a round trip");
  for (const TensorView& v : f.tensors()) {
    const TensorView* u = g.find(v.name);
    FUZZ_CHECK(u != nullptr, v.name + ": lost in a round trip");
    FUZZ_CHECK(u->dtype == v.dtype && u->shape == v.shape && u->nbytes == v.nbytes,
               v.name + ": dtype/shape changed in a round trip");
    FUZZ_CHECK(v.nbytes == 0 || std::memcmp(u->data, v.data, v.nbytes) == 0,
               v.name + ": bytes changed in a round trip");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::scratch().write("input.safetensors", fuzz::as_text(data, size));
  FUZZ_EXPECT_ERRORS({
    const SafetensorsFile f(path);
    check_file(f, data, size);
    check_round_trip(f);
  });
  return 0;
}
