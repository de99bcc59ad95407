// Compressed weight files (sdpal-compressed/1): write/read round trips that reproduce the
// compressed structs bit for bit, and one clear error (naming the file and the tensor) for every
// kind of corruption the reader must catch.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "compression/palettize.h"
#include "compression/quantize.h"
#include "core/bitpack.h"
#include "core/compressed_weight.h"
#include "core/error.h"
#include "formats/compressed_format.h"
#include "formats/safetensors.h"
#include "kernels/expand.h"

using namespace sdpal;
namespace fs = std::filesystem;

namespace {

class CompressedFormat : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sdpal_cf_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

std::vector<float> random_weights(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, 0.05f);
  std::vector<float> w(n);
  for (auto& x : w) x = d(rng);
  return w;
}

// A palette built by hand: `entries` LUT values per group and the given indices, packed.
PalettizedWeight hand_palette(const Shape& shape, int nbits, int64_t group_size, int64_t entries,
                              const std::vector<uint8_t>& indices) {
  PalettizedWeight p;
  p.shape = shape;
  p.orig_dtype = DType::F16;
  p.nbits = nbits;
  p.group_size = group_size;
  p.entries = entries;
  for (int64_t g = 0; g < p.groups(); ++g)
    for (int64_t e = 0; e < entries; ++e)
      p.lut.push_back(float_to_half(0.01f * static_cast<float>(e - entries / 2) + 0.001f * g));
  p.indices = pack_indices(indices, nbits);
  return p;
}

std::vector<uint8_t> cyclic_indices(int64_t n, int64_t entries) {
  std::vector<uint8_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = static_cast<uint8_t>((i * 7 + i / 3) % entries);
  return idx;
}

// Expects `fn` to throw an sdpal::Error whose message contains every string in `parts`.
template <class Fn>
void expect_error(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << parts.front() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

void expect_same(const CompressedView& got, const PalettizedWeight& want) {
  ASSERT_EQ(got.kind, CompressedView::Kind::Palette);
  EXPECT_EQ(got.shape, want.shape);
  EXPECT_EQ(got.orig_dtype, want.orig_dtype);
  EXPECT_EQ(got.nbits, want.nbits);
  EXPECT_EQ(got.group_size, want.group_size);
  EXPECT_EQ(got.groups, want.groups());
  EXPECT_EQ(got.entries, want.entries);
  EXPECT_EQ(0, std::memcmp(got.lut, want.lut.data(), want.lut.size() * 2));
  EXPECT_EQ(0, std::memcmp(got.indices, want.indices.data(), want.indices.size()));
  EXPECT_EQ(got.stored_bytes(), static_cast<int64_t>(want.lut.size() * 2 + want.indices.size()));
}

void expect_same(const CompressedView& got, const Linear8Weight& want) {
  ASSERT_EQ(got.kind, CompressedView::Kind::Linear8);
  EXPECT_EQ(got.shape, want.shape);
  EXPECT_EQ(got.orig_dtype, want.orig_dtype);
  EXPECT_EQ(got.symmetric, want.symmetric);
  EXPECT_EQ(0, std::memcmp(got.q, want.q.data(), want.q.size()));
  EXPECT_EQ(0, std::memcmp(got.scale, want.scale.data(), want.scale.size() * 4));
  if (want.symmetric) {
    EXPECT_EQ(got.zero, nullptr);
  } else {
    ASSERT_NE(got.zero, nullptr);
    EXPECT_EQ(0, std::memcmp(got.zero, want.zero.data(), want.zero.size()));
  }
}

// Raw components written with the plain safetensors writer, bypassing the compressed writer's
// checks, so that the reader sees exactly the corruption under test.
struct RawFile {
  std::vector<TensorToWrite> tensors;
  std::map<std::string, std::string> metadata{{kCompressedFormatKey, kCompressedFormatVersion}};
  std::vector<std::shared_ptr<std::vector<uint8_t>>> keep;

  void add(const std::string& name, DType t, const Shape& s, std::vector<uint8_t> bytes) {
    keep.push_back(std::make_shared<std::vector<uint8_t>>(std::move(bytes)));
    tensors.push_back({name, t, s, keep.back()->data()});
  }
  template <class T>
  void add_vec(const std::string& name, DType t, const Shape& s, const std::vector<T>& v) {
    std::vector<uint8_t> b(v.size() * sizeof(T));
    std::memcpy(b.data(), v.data(), b.size());
    add(name, t, s, std::move(b));
  }
  // A palette's components and description, with optional edits to the description.
  void palette(const std::string& name, const PalettizedWeight& p,
               const std::function<void(nlohmann::json&)>& edit = {}) {
    add_vec(lut_tensor_name(name), DType::F16, {p.groups(), p.entries}, p.lut);
    add_vec(indices_tensor_name(name), DType::U8, {static_cast<int64_t>(p.indices.size())},
            p.indices);
    nlohmann::json d = nlohmann::json::parse(describe_compressed(CompressedView::of(p)));
    if (edit) edit(d);
    metadata[kCompressedKeyPrefix + name] = d.dump();
  }
  void write(const std::string& path) const { write_safetensors(path, tensors, metadata); }
};

TEST_F(CompressedFormat, RoundTripReproducesTheStructsBitForBit) {
  std::vector<CompressedEntry> entries;
  std::map<std::string, PalettizedWeight> palettes;
  std::map<std::string, Linear8Weight> linears;
  uint64_t seed = 1;
  // Every bit width, per tensor and per group, on conv and linear shapes (odd sizes included so
  // that the last index byte is partial).
  for (int nbits : {1, 2, 4, 6, 8}) {
    for (int64_t group : {int64_t(0), int64_t(4)}) {
      const Shape shape = nbits % 2 ? Shape{12, 7, 3, 3} : Shape{20, 33};
      const auto w = random_weights(shape_numel(shape), seed++);
      const std::string name =
          "block" + std::to_string(nbits) + "_" + std::to_string(group) + ".proj.weight";
      palettes[name] = palettize(w.data(), shape, DType::F32, nbits, group);
    }
  }
  // A hand-built palette with fewer entries than 2^nbits.
  palettes["hand.weight"] = hand_palette({8, 9}, 4, 2, 11, cyclic_indices(72, 11));
  for (bool sym : {true, false}) {
    const Shape shape{16, 8, 3, 3};
    const auto w = random_weights(shape_numel(shape), seed++);
    linears[sym ? "lin_sym.weight" : "lin_asym.weight"] =
        quantize_linear8(w.data(), shape, DType::F16, sym);
  }
  // Plain tensors stay as they are.
  const std::vector<uint16_t> bias16 = {float_to_half(0.5f), float_to_half(-1.f),
                                        float_to_half(2.f)};
  const std::vector<float> norm32 = {1.f, 2.f, 3.f, 4.f};
  TensorView bias{"", DType::F16, {3}, reinterpret_cast<const uint8_t*>(bias16.data()), 6};
  TensorView norm{"", DType::F32, {4}, reinterpret_cast<const uint8_t*>(norm32.data()), 16};
  entries.push_back({"conv.bias", bias});
  for (const auto& [n, p] : palettes) entries.push_back({n, p});
  entries.push_back({"norm.weight", norm});
  for (const auto& [n, l] : linears) entries.push_back({n, l});
  write_compressed_safetensors(path("m.safetensors"), entries, {{"format", "pt"}});

  SafetensorsFile f(path("m.safetensors"));
  EXPECT_TRUE(is_compressed_file(f));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at(kCompressedFormatKey), kCompressedFormatVersion);
  const CompressedTensors ct = read_compressed(f);
  ASSERT_EQ(ct.weights.size(), palettes.size() + linears.size());
  std::set<std::string> parts;
  for (const auto& [n, p] : palettes) {
    SCOPED_TRACE(n);
    ASSERT_TRUE(ct.weights.count(n));
    expect_same(ct.weights.at(n), p);
    parts.insert({n + ".lut", n + ".indices"});
    // Expanding the view from the file equals expanding the struct.
    std::vector<float> a(shape_numel(p.shape)), b(a.size());
    expand(ct.weights.at(n), a.data());
    expand(CompressedView::of(p), b.data());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4));
  }
  for (const auto& [n, l] : linears) {
    SCOPED_TRACE(n);
    ASSERT_TRUE(ct.weights.count(n));
    expect_same(ct.weights.at(n), l);
    parts.insert({n + ".q", n + ".scale"});
    if (!l.symmetric) parts.insert(n + ".zero");
  }
  EXPECT_EQ(ct.component_tensor_names, parts);
  // Plain tensors: same dtype, same bytes; every stored tensor is a plain one or a component.
  ASSERT_TRUE(f.has("conv.bias") && f.has("norm.weight"));
  EXPECT_EQ(f.get("conv.bias").dtype, DType::F16);
  EXPECT_EQ(0, std::memcmp(f.get("conv.bias").data, bias16.data(), 6));
  EXPECT_EQ(f.get("norm.weight").dtype, DType::F32);
  EXPECT_EQ(0, std::memcmp(f.get("norm.weight").data, norm32.data(), 16));
  EXPECT_EQ(f.tensors().size(), parts.size() + 2);
  // The description in the metadata is the documented JSON.
  const auto d = nlohmann::json::parse(f.metadata().at("sdpal:block4_4.proj.weight"));
  EXPECT_EQ(d["kind"], "palette");
  EXPECT_EQ(d["shape"], nlohmann::json({20, 33}));
  EXPECT_EQ(d["dtype"], "F32");
  EXPECT_EQ(d["nbits"], 4);
  EXPECT_EQ(d["granularity"], "per-grouped-channel");
  EXPECT_EQ(d["group_size"], 4);
  EXPECT_EQ(d["entries"], palettes["block4_4.proj.weight"].entries);
  EXPECT_EQ(d["bit_order"], "lsb-first");
  const auto l = nlohmann::json::parse(f.metadata().at("sdpal:lin_asym.weight"));
  EXPECT_EQ(l["kind"], "linear8");
  EXPECT_EQ(l["symmetric"], false);
}

TEST_F(CompressedFormat, PlainFilesHaveNoCompressedWeights) {
  const std::vector<float> v = {1.f, 2.f};
  write_safetensors(path("p.safetensors"), {{"a.weight", DType::F32, {2}, v.data()}},
                    {{"format", "pt"}});
  SafetensorsFile f(path("p.safetensors"));
  EXPECT_FALSE(is_compressed_file(f));
  const CompressedTensors ct = read_compressed(f);
  EXPECT_TRUE(ct.weights.empty());
  EXPECT_TRUE(ct.component_tensor_names.empty());
}

// Every bit width, a bad index at the start, in the vectorised body, in the tail, and the last
// element: the reader reports that exact element. All-valid streams pass.
TEST_F(CompressedFormat, EveryOutOfRangeIndexIsFound) {
  for (int nbits : {1, 2, 4, 6, 8}) {
    const int64_t entries = nbits == 1 ? 1 : (int64_t(1) << nbits) - 1;
    const Shape shape{3, 333};  // 999 elements: not a multiple of 8 or 64
    const int64_t n = shape_numel(shape);
    {
      RawFile raw;
      raw.palette("ok.weight", hand_palette(shape, nbits, 0, entries,
                                            std::vector<uint8_t>(n, uint8_t(entries - 1))));
      raw.write(path("ok.safetensors"));
      SafetensorsFile f(path("ok.safetensors"));
      EXPECT_NO_THROW(read_compressed(f)) << nbits << " bits";
    }
    for (int64_t pos : {int64_t(0), int64_t(517), n - 3, n - 1}) {
      SCOPED_TRACE(std::to_string(nbits) + " bits, bad index at " + std::to_string(pos));
      std::vector<uint8_t> idx = cyclic_indices(n, entries);
      idx[pos] = static_cast<uint8_t>(entries);
      RawFile raw;
      raw.palette("bad.weight", hand_palette(shape, nbits, 0, entries, idx));
      raw.write(path("bad.safetensors"));
      SafetensorsFile f(path("bad.safetensors"));
      expect_error([&] { read_compressed(f); },
                   {path("bad.safetensors"), "'bad.weight'", "element " + std::to_string(pos) + " ",
                    "out of range"});
    }
  }
}

// A bad index in every field and lane position of one vector step (64 consecutive elements in
// the vectorised body): the scan of the active level (SDPAL_ISA) catches each one.
TEST_F(CompressedFormat, OutOfRangeIndexFoundAtEveryLanePosition) {
  for (int nbits : {1, 2, 4, 6, 8}) {
    const int64_t entries = nbits == 1 ? 1 : (int64_t(1) << nbits) - 1;
    const Shape shape{3, 333};
    for (int64_t pos = 256; pos < 320; ++pos) {
      SCOPED_TRACE(std::to_string(nbits) + " bits, bad index at " + std::to_string(pos));
      std::vector<uint8_t> idx = cyclic_indices(shape_numel(shape), entries);
      idx[pos] = static_cast<uint8_t>(entries);
      RawFile raw;
      raw.palette("bad.weight", hand_palette(shape, nbits, 0, entries, idx));
      raw.write(path("bad.safetensors"));
      SafetensorsFile f(path("bad.safetensors"));
      expect_error([&] { read_compressed(f); }, {"element " + std::to_string(pos) + " "});
    }
  }
}

// Large weights are scanned in parallel chunks: the first bad element is the one reported.
TEST_F(CompressedFormat, ParallelIndexScanReportsTheFirstBadElement) {
  const Shape shape{64, 40000};
  const int64_t n = shape_numel(shape);
  std::vector<uint8_t> idx = cyclic_indices(n, 12);
  idx[n - 5] = 13;
  idx[1500001] = 14;
  RawFile raw;
  raw.palette("big.weight", hand_palette(shape, 4, 16, 12, idx));
  raw.write(path("big.safetensors"));
  SafetensorsFile f(path("big.safetensors"));
  expect_error([&] { read_compressed(f); }, {"'big.weight'", "index 14 at element 1500001 "});
}

TEST_F(CompressedFormat, WriterRefusesInvalidWeights) {
  // Out-of-range index.
  std::vector<uint8_t> idx = cyclic_indices(40, 5);
  idx[17] = 7;
  expect_error(
      [&] {
        write_compressed_safetensors(path("w.safetensors"),
                                     {{"x.weight", hand_palette({4, 10}, 4, 0, 5, idx)}});
      },
      {path("w.safetensors"), "'x.weight'", "element 17"});
  // LUT of the wrong size.
  PalettizedWeight p = hand_palette({4, 10}, 4, 2, 5, cyclic_indices(40, 5));
  p.lut.pop_back();
  expect_error(
      [&] {
        write_compressed_safetensors(path("w.safetensors"), {{"x.weight", p}});
      },
      {"'x.weight'", "LUT"});
  // Group size not dividing the rows.
  p = hand_palette({4, 10}, 4, 0, 5, cyclic_indices(40, 5));
  p.group_size = 3;
  expect_error(
      [&] {
        write_compressed_safetensors(path("w.safetensors"), {{"x.weight", p}});
      },
      {"'x.weight'", "group size 3"});
  // Linear-8 scale length.
  const auto w = random_weights(24, 3);
  Linear8Weight l = quantize_linear8(w.data(), {6, 4}, DType::F16, true);
  l.scale.pop_back();
  expect_error(
      [&] {
        write_compressed_safetensors(path("w.safetensors"), {{"y.weight", l}});
      },
      {"'y.weight'", "5 scales for 6 rows"});
  // A plain tensor that takes a component's name.
  const std::vector<uint16_t> h(2);
  TensorView v{"", DType::F16, {2}, reinterpret_cast<const uint8_t*>(h.data()), 4};
  expect_error(
      [&] {
        write_compressed_safetensors(
            path("w.safetensors"),
            {{"x.weight", hand_palette({4, 10}, 4, 0, 5, cyclic_indices(40, 5))},
             {"x.weight.lut", v}});
      },
      {"'x.weight.lut'", "used twice"});
  // Reserved metadata keys.
  expect_error(
      [&] {
        write_compressed_safetensors(path("w.safetensors"), {}, {{"sdpal:x", "1"}});
      },
      {"reserved"});
  EXPECT_FALSE(fs::exists(path("w.safetensors")));
}

class Corruption : public CompressedFormat {
 protected:
  // Writes `raw`, then expects reading it to fail naming the file, the tensor and `words`.
  void expect_read_error(const RawFile& raw, const std::string& tensor,
                         const std::vector<std::string>& words) {
    raw.write(path("c.safetensors"));
    SafetensorsFile f(path("c.safetensors"));
    std::vector<std::string> parts = {path("c.safetensors"), "'" + tensor + "'"};
    parts.insert(parts.end(), words.begin(), words.end());
    expect_error([&] { read_compressed(f); }, parts);
  }
  PalettizedWeight good_ = hand_palette({32, 6}, 4, 8, 16, cyclic_indices(192, 16));
};

TEST_F(Corruption, LutOfTheWrongSize) {
  RawFile raw;
  PalettizedWeight p = good_;
  p.entries = 15;  // the LUT tensor will be [4, 15]; the metadata says 16 entries
  p.lut.resize(4 * 15);
  raw.add_vec(lut_tensor_name("w.weight"), DType::F16, {4, 15}, p.lut);
  raw.add_vec(indices_tensor_name("w.weight"), DType::U8, {96}, good_.indices);
  raw.metadata["sdpal:w.weight"] = describe_compressed(CompressedView::of(good_));
  expect_read_error(raw, "w.weight", {"LUT is [4, 15]", "4 groups x 16 entries"});
}

TEST_F(Corruption, GroupsInconsistentWithRows) {
  RawFile raw;
  raw.palette("w.weight", good_, [](nlohmann::json& d) { d["group_size"] = 16; });
  expect_read_error(raw, "w.weight", {"LUT is [4, 16]", "2 groups x 16 entries"});
  RawFile raw2;
  raw2.palette("w.weight", good_, [](nlohmann::json& d) { d["group_size"] = 5; });
  expect_read_error(raw2, "w.weight", {"group_size 5 does not divide the 32 output channels"});
}

TEST_F(Corruption, TooManyEntriesForTheBits) {
  RawFile raw;
  raw.palette("w.weight", good_, [](nlohmann::json& d) {
    d["nbits"] = 2;
    d["entries"] = 16;
  });
  expect_read_error(raw, "w.weight", {"16 LUT entries do not fit 2-bit indices"});
}

TEST_F(Corruption, TruncatedIndices) {
  RawFile raw;
  raw.add_vec(lut_tensor_name("w.weight"), DType::F16, {4, 16}, good_.lut);
  std::vector<uint8_t> short_idx(good_.indices.begin(), good_.indices.end() - 1);
  raw.add_vec(indices_tensor_name("w.weight"), DType::U8, {95}, short_idx);
  raw.metadata["sdpal:w.weight"] = describe_compressed(CompressedView::of(good_));
  expect_read_error(raw, "w.weight", {"indices hold 95 bytes", "need 96", "truncated"});
}

TEST_F(Corruption, BadNbitsInMetadata) {
  for (int bad : {0, 3, 5, 7, 16}) {
    RawFile raw;
    raw.palette("w.weight", good_, [&](nlohmann::json& d) { d["nbits"] = bad; });
    expect_read_error(raw, "w.weight", {"nbits " + std::to_string(bad) + " is not one of"});
  }
}

TEST_F(Corruption, MalformedMetadataJson) {
  RawFile raw;
  raw.palette("w.weight", good_);
  raw.metadata["sdpal:w.weight"] = "{\"kind\": \"palette\", \"shape\": [32, 6";
  expect_read_error(raw, "w.weight", {"metadata is not valid JSON"});
  RawFile raw2;
  raw2.palette("w.weight", good_);
  raw2.metadata["sdpal:w.weight"] = "[1, 2]";
  expect_read_error(raw2, "w.weight", {"not a JSON object"});
  RawFile raw3;
  raw3.palette("w.weight", good_, [](nlohmann::json& d) { d.erase("entries"); });
  expect_read_error(raw3, "w.weight", {"'entries' is missing"});
  RawFile raw4;
  raw4.palette("w.weight", good_, [](nlohmann::json& d) { d["shape"] = {32, -6}; });
  expect_read_error(raw4, "w.weight", {"invalid dimension"});
  RawFile raw5;
  raw5.palette("w.weight", good_, [](nlohmann::json& d) { d["bit_order"] = "msb-first"; });
  expect_read_error(raw5, "w.weight", {"bit_order 'msb-first'"});
}

TEST_F(Corruption, UnknownKind) {
  RawFile raw;
  raw.palette("w.weight", good_, [](nlohmann::json& d) { d["kind"] = "sparse"; });
  expect_read_error(raw, "w.weight", {"unknown compression kind 'sparse'"});
}

TEST_F(Corruption, MissingComponentTensor) {
  RawFile raw;
  raw.add_vec(lut_tensor_name("w.weight"), DType::F16, {4, 16}, good_.lut);
  raw.metadata["sdpal:w.weight"] = describe_compressed(CompressedView::of(good_));
  expect_read_error(raw, "w.weight", {"'w.weight.indices' is missing"});
}

TEST_F(Corruption, NonFiniteLutEntry) {
  RawFile raw;
  PalettizedWeight p = good_;
  p.lut[5] = 0x7e00;  // NaN
  raw.palette("w.weight", p);
  expect_read_error(raw, "w.weight", {"LUT entry 5 is not finite"});
}

TEST_F(Corruption, Linear8ScaleLength) {
  const auto w = random_weights(48, 9);
  const Linear8Weight l = quantize_linear8(w.data(), {8, 6}, DType::F16, false);
  auto describe = [&] { return describe_compressed(CompressedView::of(l)); };
  RawFile raw;
  raw.add_vec(q_tensor_name("l.weight"), DType::U8, {8, 6}, l.q);
  raw.add_vec(scale_tensor_name("l.weight"), DType::F32, {7},
              std::vector<float>(l.scale.begin(), l.scale.end() - 1));
  raw.add_vec(zero_tensor_name("l.weight"), DType::U8, {8}, l.zero);
  raw.metadata["sdpal:l.weight"] = describe();
  expect_read_error(raw, "l.weight", {"7 scales for 8 rows"});
  // q of the wrong shape, and of the wrong signedness.
  RawFile raw2;
  raw2.add_vec(q_tensor_name("l.weight"), DType::U8, {6, 8}, l.q);
  raw2.add_vec(scale_tensor_name("l.weight"), DType::F32, {8}, l.scale);
  raw2.add_vec(zero_tensor_name("l.weight"), DType::U8, {8}, l.zero);
  raw2.metadata["sdpal:l.weight"] = describe();
  expect_read_error(raw2, "l.weight", {"'l.weight.q' is U8 [6, 8], expected U8 [8, 6]"});
  RawFile raw3;
  raw3.add_vec(q_tensor_name("l.weight"), DType::I8, {8, 6}, l.q);
  raw3.add_vec(scale_tensor_name("l.weight"), DType::F32, {8}, l.scale);
  raw3.add_vec(zero_tensor_name("l.weight"), DType::U8, {8}, l.zero);
  raw3.metadata["sdpal:l.weight"] = describe();
  expect_read_error(raw3, "l.weight", {"expected U8"});
  // Asymmetric without zero points.
  RawFile raw4;
  raw4.add_vec(q_tensor_name("l.weight"), DType::U8, {8, 6}, l.q);
  raw4.add_vec(scale_tensor_name("l.weight"), DType::F32, {8}, l.scale);
  raw4.metadata["sdpal:l.weight"] = describe();
  expect_read_error(raw4, "l.weight", {"'l.weight.zero' is missing"});
}

TEST_F(Corruption, WeightStoredTwice) {
  RawFile raw;
  raw.palette("w.weight", good_);
  raw.add_vec("w.weight", DType::F16, {32, 6}, std::vector<uint16_t>(192));
  expect_read_error(raw, "w.weight", {"both uncompressed and compressed"});
}

TEST_F(Corruption, FormatVersion) {
  RawFile raw;
  raw.palette("w.weight", good_);
  raw.metadata[kCompressedFormatKey] = "sdpal-compressed/2";
  raw.write(path("v.safetensors"));
  SafetensorsFile f(path("v.safetensors"));
  expect_error([&] { read_compressed(f); },
               {path("v.safetensors"), "'sdpal-compressed/2' is not supported"});
  RawFile raw2;
  raw2.palette("w.weight", good_);
  raw2.metadata.erase(kCompressedFormatKey);
  raw2.write(path("v2.safetensors"));
  SafetensorsFile f2(path("v2.safetensors"));
  expect_error([&] { read_compressed(f2); }, {path("v2.safetensors"), "'w.weight'", "lacks"});
}

}  // namespace
