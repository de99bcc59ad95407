// safetensors: round trips through write_safetensors, mmap'd reading, atomic writes, and one clear
// error (naming the file) for every kind of malformed file.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/safetensors.h"
#include "support/temp_dir.h"

using namespace sdpal;
namespace fs = std::filesystem;

namespace {

class Safetensors : public sdpal::test::TempDirTest {};

std::vector<uint8_t> file_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& p, const std::vector<uint8_t>& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file from raw parts: the u64 length prefix (normally header.size()), the header
// text and the data region.
std::vector<uint8_t> raw_file(const std::string& header, const std::vector<uint8_t>& data,
                              uint64_t header_len) {
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(header_len >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}
std::vector<uint8_t> raw_file(const std::string& header, const std::vector<uint8_t>& data = {}) {
  return raw_file(header, data, header.size());
}

// Opening `file` must throw one line that names the file and contains `why`.
void expect_invalid(const std::string& file, const std::string& why) {
  try {
    SafetensorsFile f(file);
    ADD_FAILURE() << file << " was accepted; expected an error about: " << why;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(why), std::string::npos) << "expected '" << why << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message spans lines: " << msg;
  }
}

// Deterministic bytes for a tensor of `n` bytes, different per seed.
std::vector<uint8_t> pattern(size_t n, int seed) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i)
    b[i] = static_cast<uint8_t>((i * 37 + seed * 101 + (i >> 3)) & 255);
  return b;
}

// The data offsets [begin, end) of every tensor and the header length, read straight from a file.
struct RawLayout {
  uint64_t header_len = 0;
  nlohmann::json header;
};
RawLayout raw_layout(const std::string& file) {
  const auto bytes = file_bytes(file);
  RawLayout r;
  std::memcpy(&r.header_len, bytes.data(), 8);
  r.header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + r.header_len);
  return r;
}

TEST_F(Safetensors, RoundTripEveryDtypeWithMetadata) {
  struct Spec {
    std::string name;
    DType dtype;
    Shape shape;
  };
  // Odd sizes so that alignment padding is needed between tensors; a scalar and an empty tensor.
  const std::vector<Spec> specs = {
      {"f32", DType::F32, {3, 5}},    {"f16", DType::F16, {7}},   {"bf16", DType::BF16, {1, 3}},
      {"f64", DType::F64, {2, 2, 1}}, {"i8", DType::I8, {5}},     {"u8", DType::U8, {3, 1}},
      {"i16", DType::I16, {3}},       {"i32", DType::I32, {1}},   {"i64", DType::I64, {2}},
      {"bool", DType::BOOL, {9}},     {"scalar", DType::F32, {}}, {"empty", DType::F16, {0, 4}},
  };
  std::vector<std::vector<uint8_t>> payloads;
  std::vector<TensorToWrite> tensors;
  for (size_t i = 0; i < specs.size(); ++i) {
    const size_t n = static_cast<size_t>(shape_numel(specs[i].shape)) * dtype_size(specs[i].dtype);
    payloads.push_back(pattern(n, static_cast<int>(i)));
    if (specs[i].dtype == DType::BOOL)
      for (auto& b : payloads.back()) b &= 1;
  }
  for (size_t i = 0; i < specs.size(); ++i)
    tensors.push_back({specs[i].name, specs[i].dtype, specs[i].shape, payloads[i].data()});
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"note", "h\xc3\xa9llo \"quoted\"\nsecond line"}, {"empty", ""}};
  const std::string file = path("all.safetensors");
  write_safetensors(file, tensors, meta);

  SafetensorsFile f(file);
  EXPECT_EQ(f.path(), file);
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].name);
    ASSERT_TRUE(f.has(specs[i].name));
    const TensorView& v = f.get(specs[i].name);
    EXPECT_EQ(v.name, specs[i].name);
    EXPECT_EQ(v.dtype, specs[i].dtype);
    EXPECT_EQ(v.shape, specs[i].shape);
    ASSERT_EQ(v.nbytes, payloads[i].size());
    // An empty tensor's payload has no data pointer: memcmp may not be given null.
    if (v.nbytes > 0) {
      EXPECT_EQ(std::memcmp(v.data, payloads[i].data(), v.nbytes), 0);
    }
  }
  EXPECT_FALSE(f.has("missing"));
  EXPECT_EQ(f.find("missing"), nullptr);
  try {
    f.get("missing");
    ADD_FAILURE() << "get() of an absent tensor did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'missing'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
  }
}

TEST_F(Safetensors, ToF32ConvertsFloatAndIntegerDtypes) {
  const std::vector<float> f32 = {1.5f, -2.25f, 0.f, 1e-3f};
  const std::vector<uint16_t> f16 = {float_to_half(1.5f), float_to_half(-2.25f),
                                     float_to_half(65504.f)};
  const std::vector<uint16_t> bf16 = {float_to_bf16(3.f), float_to_bf16(-0.5f)};
  const std::vector<double> f64 = {0.125, -1e10};
  const std::vector<int8_t> i8 = {-128, 0, 127};
  const std::vector<uint8_t> u8 = {0, 200, 255};
  const std::vector<int32_t> i32 = {-7, 1 << 20};
  const std::vector<int64_t> i64 = {-3, int64_t(1) << 40};
  const std::string file = path("conv.safetensors");
  write_safetensors(file, {{"f32", DType::F32, {4}, f32.data()},
                           {"f16", DType::F16, {3}, f16.data()},
                           {"bf16", DType::BF16, {2}, bf16.data()},
                           {"f64", DType::F64, {2}, f64.data()},
                           {"i8", DType::I8, {3}, i8.data()},
                           {"u8", DType::U8, {3}, u8.data()},
                           {"i32", DType::I32, {2}, i32.data()},
                           {"i64", DType::I64, {1, 2}, i64.data()}});
  SafetensorsFile f(file);
  auto values = [&](const std::string& name) {
    Tensor t = f.to_f32(name);
    EXPECT_EQ(t.shape(), f.get(name).shape);
    return std::vector<float>(t.data(), t.data() + t.numel());
  };
  EXPECT_EQ(values("f32"), f32);
  EXPECT_EQ(values("f16"), (std::vector<float>{1.5f, -2.25f, 65504.f}));
  EXPECT_EQ(values("bf16"), (std::vector<float>{3.f, -0.5f}));
  EXPECT_EQ(values("f64"), (std::vector<float>{0.125f, -1e10f}));
  EXPECT_EQ(values("i8"), (std::vector<float>{-128.f, 0.f, 127.f}));
  EXPECT_EQ(values("u8"), (std::vector<float>{0.f, 200.f, 255.f}));
  EXPECT_EQ(values("i32"), (std::vector<float>{-7.f, 1048576.f}));
  EXPECT_EQ(values("i64"), (std::vector<float>{-3.f, 1099511627776.f}));
}

TEST_F(Safetensors, WriterAlignsHeaderAndEveryTensorTo8Bytes) {
  const auto a = pattern(3, 1), b = pattern(10, 2), c = pattern(4, 3);
  const std::string file = path("align.safetensors");
  write_safetensors(file,
                    {{"a", DType::U8, {3}, a.data()},
                     {"b", DType::F16, {5}, b.data()},
                     {"c", DType::F32, {1}, c.data()}},
                    {{"k", "v"}});
  const RawLayout r = raw_layout(file);
  EXPECT_EQ(r.header_len % 8, 0u);
  uint64_t prev_end = 0;
  for (const char* name : {"a", "b", "c"}) {
    SCOPED_TRACE(name);
    const auto& off = r.header[name]["data_offsets"];
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    EXPECT_EQ(begin % 8, 0u);
    EXPECT_GE(begin, prev_end);
    EXPECT_LT(begin - prev_end, 8u);  // only the padding needed, no gaps
    prev_end = end;
  }
  EXPECT_EQ(r.header["__metadata__"], (nlohmann::json{{"k", "v"}}));
  // The data pointers of the mapping are aligned too, so fp32 data can be used in place.
  SafetensorsFile f(file);
  for (const auto& v : f.tensors())
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data) % 8, 0u) << v.name;
}

// Files written by other tools need not be aligned: tensors packed back to back, any key order,
// a header padded with spaces.
TEST_F(Safetensors, ReadsUnalignedHandWrittenFile) {
  std::vector<uint8_t> data;
  const uint16_t h[3] = {float_to_half(1.f), float_to_half(2.f), float_to_half(-4.f)};
  const float g[2] = {0.5f, 7.f};
  data.insert(data.end(), reinterpret_cast<const uint8_t*>(h),
              reinterpret_cast<const uint8_t*>(h) + 6);
  data.insert(data.end(), reinterpret_cast<const uint8_t*>(g),
              reinterpret_cast<const uint8_t*>(g) + 8);
  const std::string header = R"({"z":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},)"
                             R"("a":{"shape":[2,1],"data_offsets":[6,14],"dtype":"F32"}}   )";
  const std::string file = path("hand.safetensors");
  write_bytes(file, raw_file(header, data));
  SafetensorsFile f(file);
  EXPECT_TRUE(f.metadata().empty());
  Tensor z = f.to_f32("z"), a = f.to_f32("a");
  EXPECT_EQ(std::vector<float>(z.data(), z.data() + 3), (std::vector<float>{1.f, 2.f, -4.f}));
  EXPECT_EQ(a.shape(), (Shape{2, 1}));
  EXPECT_EQ(std::vector<float>(a.data(), a.data() + 2), (std::vector<float>{0.5f, 7.f}));
}

// The file is mapped, not read: tensor data points into one mapping of the whole file, which is
// visible in /proc/self/maps while the file is open and gone after it is closed.
TEST_F(Safetensors, DataIsMappedFromTheFile) {
  std::vector<float> big(1 << 16);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i);
  const std::vector<float> small = {1.f, 2.f};
  const std::string file = path("mapped.safetensors");
  write_safetensors(file, {{"big", DType::F32, {256, 256}, big.data()},
                           {"small", DType::F32, {2}, small.data()}});
  auto mapped = [&] {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line))
      if (line.find(file) != std::string::npos) return true;
    return false;
  };
  {
    SafetensorsFile f(file);
    EXPECT_EQ(f.file_size(), fs::file_size(file));
    EXPECT_TRUE(mapped());
    const RawLayout r = raw_layout(file);
    const TensorView& b = f.get("big");
    const TensorView& s = f.get("small");
    // Both views point into the same mapping at their offsets in the data region.
    EXPECT_EQ(s.data - b.data, r.header["small"]["data_offsets"][0].get<int64_t>() -
                                   r.header["big"]["data_offsets"][0].get<int64_t>());
    EXPECT_EQ(std::memcmp(b.data, big.data(), b.nbytes), 0);
  }
  EXPECT_FALSE(mapped());
}

// ---- malformed files: every one is refused with a message naming the file and the problem ----

TEST_F(Safetensors, RefusesMissingFileAndDirectory) {
  expect_invalid(path("nope.safetensors"), "cannot open");
  fs::create_directories(path("dir.safetensors"));
  expect_invalid(path("dir.safetensors"), "not a regular file");
}

TEST_F(Safetensors, RefusesFileShorterThan8Bytes) {
  write_bytes(path("empty.safetensors"), {});
  expect_invalid(path("empty.safetensors"), "0 bytes, too short");
  write_bytes(path("short.safetensors"), {1, 0, 0, 0, 0});
  expect_invalid(path("short.safetensors"), "5 bytes, too short");
}

TEST_F(Safetensors, RefusesHeaderLengthBeyondFileOr100MB) {
  write_bytes(path("beyond.safetensors"), raw_file("{}", {}, 1000));
  expect_invalid(path("beyond.safetensors"), "header length 1000 runs past end of file");
  write_bytes(path("huge.safetensors"), raw_file("{}", {}, 200ull << 20));
  expect_invalid(path("huge.safetensors"), "exceeds 100 MB");
  write_bytes(path("max.safetensors"), raw_file("{}", {}, ~0ull));
  expect_invalid(path("max.safetensors"), "exceeds 100 MB");
}

TEST_F(Safetensors, RefusesHeaderThatIsNotAJsonObject) {
  write_bytes(path("text.safetensors"), raw_file("{not json"));
  expect_invalid(path("text.safetensors"), "header is not valid JSON");
  write_bytes(path("zero.safetensors"), raw_file(""));
  expect_invalid(path("zero.safetensors"), "header is not valid JSON");
  write_bytes(path("array.safetensors"), raw_file("[1, 2, 3]"));
  expect_invalid(path("array.safetensors"), "header is not a JSON object");
  write_bytes(path("string.safetensors"), raw_file("\"x\""));
  expect_invalid(path("string.safetensors"), "header is not a JSON object");
}

TEST_F(Safetensors, RefusesEntryLackingDtypeShapeOrOffsets) {
  const std::vector<uint8_t> data(8);
  write_bytes(path("a.safetensors"), raw_file(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", data));
  expect_invalid(path("a.safetensors"), "entry 'w' lacks dtype/shape/data_offsets");
  write_bytes(path("b.safetensors"),
              raw_file(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", data));
  expect_invalid(path("b.safetensors"), "entry 'w' lacks dtype/shape/data_offsets");
  write_bytes(path("c.safetensors"), raw_file(R"({"w":{"dtype":"F32","shape":[2]}})", data));
  expect_invalid(path("c.safetensors"), "entry 'w' lacks dtype/shape/data_offsets");
  write_bytes(path("d.safetensors"), raw_file(R"({"w":[1,2]})", data));
  expect_invalid(path("d.safetensors"), "entry 'w' lacks dtype/shape/data_offsets");
}

TEST_F(Safetensors, RefusesUnknownDtype) {
  const std::vector<uint8_t> data(8);
  write_bytes(path("a.safetensors"),
              raw_file(R"({"w":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]}})", data));
  expect_invalid(path("a.safetensors"), "entry 'w' has unknown dtype \"Q4_K\"");
  write_bytes(path("b.safetensors"),
              raw_file(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", data));
  expect_invalid(path("b.safetensors"), "entry 'w' has unknown dtype 4");
}

TEST_F(Safetensors, RefusesNegativeOrNonIntegerDims) {
  const std::vector<uint8_t> data(8);
  for (const std::string dim : {"-2", "2.5", "\"2\"", "null", "18446744073709551615"}) {
    SCOPED_TRACE(dim);
    write_bytes(
        path("d.safetensors"),
        raw_file(R"({"w":{"dtype":"F32","shape":[1,)" + dim + R"(],"data_offsets":[0,8]}})", data));
    expect_invalid(path("d.safetensors"), "entry 'w' has an invalid dimension");
  }
  write_bytes(path("s.safetensors"),
              raw_file(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", data));
  expect_invalid(path("s.safetensors"), "entry 'w' shape is not an array");
  // Dimensions whose product overflows 64 bits are refused, not wrapped around to 0 elements.
  write_bytes(path("big.safetensors"),
              raw_file(R"({"w":{"dtype":"F32","shape":[1099511627776,16777216],)"
                       R"("data_offsets":[0,0]}})",
                       data));
  expect_invalid(path("big.safetensors"), "entry 'w' is absurdly large");
  write_bytes(
      path("big2.safetensors"),
      raw_file(R"({"w":{"dtype":"F32","shape":[65536,65536,65536],"data_offsets":[0,8]}})", data));
  expect_invalid(path("big2.safetensors"), "entry 'w' is absurdly large");
}

TEST_F(Safetensors, RefusesMalformedDataOffsets) {
  const std::vector<uint8_t> data(8);
  for (const std::string off : {"[0]", "[0,8,8]", "[-8,0]", "[0,8.0]", "\"0-8\""}) {
    SCOPED_TRACE(off);
    write_bytes(path("o.safetensors"),
                raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":)" + off + "}}", data));
    expect_invalid(path("o.safetensors"), "entry 'w' has malformed data_offsets");
  }
}

TEST_F(Safetensors, RefusesTruncatedFile) {
  const std::vector<float> a(64, 1.f), b(64, 2.f);
  const std::string good = path("good.safetensors");
  write_safetensors(good, {{"a", DType::F32, {64}, a.data()}, {"b", DType::F32, {8, 8}, b.data()}});
  const auto bytes = file_bytes(good);
  // Cut inside the last tensor: its end lies past the data region.
  std::vector<uint8_t> cut(bytes.begin(), bytes.end() - 100);
  write_bytes(path("cut.safetensors"), cut);
  expect_invalid(path("cut.safetensors"), "entry 'b' data [");
  expect_invalid(path("cut.safetensors"), "(truncated?)");
  // Cut inside the header.
  std::vector<uint8_t> head(bytes.begin(), bytes.begin() + 20);
  write_bytes(path("head.safetensors"), head);
  expect_invalid(path("head.safetensors"), "runs past end of file (truncated?)");
}

TEST_F(Safetensors, RefusesBeginAfterEnd) {
  const std::vector<uint8_t> data(16);
  write_bytes(path("r.safetensors"),
              raw_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data));
  expect_invalid(path("r.safetensors"),
                 "entry 'w' has data_offsets [8, 0] that end before they begin");
}

TEST_F(Safetensors, RefusesByteLengthThatDoesNotMatchDtypeAndShape) {
  const std::vector<uint8_t> data(16);
  write_bytes(path("l.safetensors"),
              raw_file(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", data));
  expect_invalid(path("l.safetensors"),
                 "entry 'w' has 12 bytes but dtype F32 x shape [2, 2] needs 16");
  write_bytes(path("h.safetensors"),
              raw_file(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", data));
  expect_invalid(path("h.safetensors"), "entry 'w' has 8 bytes but dtype F16 x shape [2] needs 4");
}

TEST_F(Safetensors, RefusesOverlappingTensors) {
  const std::vector<uint8_t> data(16);
  write_bytes(path("o.safetensors"),
              raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       data));
  expect_invalid(path("o.safetensors"), "tensors 'a' and 'b' overlap");
  // Aliases (the same bytes twice) are overlaps too; empty tensors overlap nothing.
  write_bytes(path("same.safetensors"),
              raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                       R"("e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},)"
                       R"("z":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                       data));
  expect_invalid(path("same.safetensors"), "tensors 'a' and 'z' overlap");
  write_bytes(path("ok.safetensors"),
              raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                       data));
  EXPECT_NO_THROW({ SafetensorsFile ok(path("ok.safetensors")); });
}

TEST_F(Safetensors, RefusesBadMetadata) {
  const std::vector<uint8_t> data(8);
  const std::string w = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  write_bytes(path("num.safetensors"), raw_file(R"({"__metadata__":{"epoch":3},)" + w + "}", data));
  expect_invalid(path("num.safetensors"), "__metadata__ value for 'epoch' is not a string");
  write_bytes(path("obj.safetensors"),
              raw_file(R"({"__metadata__":{"cfg":{"a":1}},)" + w + "}", data));
  expect_invalid(path("obj.safetensors"), "__metadata__ value for 'cfg' is not a string");
  write_bytes(path("null.safetensors"), raw_file(R"({"__metadata__":{"x":null},)" + w + "}", data));
  expect_invalid(path("null.safetensors"), "__metadata__ value for 'x' is not a string");
  write_bytes(path("list.safetensors"), raw_file(R"({"__metadata__":["a"],)" + w + "}", data));
  expect_invalid(path("list.safetensors"), "__metadata__ is not an object");
}

// ---- atomic writing ----

TEST_F(Safetensors, WriteIntoMissingDirectoryThrowsAndLeavesNothing) {
  const float x[2] = {1.f, 2.f};
  const std::string file = path("missing/sub/out.safetensors");
  try {
    write_safetensors(file, {{"x", DType::F32, {2}, x}});
    ADD_FAILURE() << "writing into a missing directory succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
  }
  EXPECT_TRUE(listing().empty());
}

TEST_F(Safetensors, FailedWriteKeepsExistingFile) {
  const float x[2] = {1.f, 2.f};
  const std::string file = path("keep.safetensors");
  write_safetensors(file, {{"x", DType::F32, {2}, x}});
  const auto before = file_bytes(file);
  // A failure before any byte is written (an invalid tensor name).
  EXPECT_THROW(write_safetensors(file, {{"__metadata__", DType::F32, {2}, x}}), Error);
  EXPECT_THROW(write_safetensors(file, {{"", DType::F32, {2}, x}}), Error);
  EXPECT_EQ(file_bytes(file), before);
  EXPECT_EQ(listing(), std::vector<std::string>{"keep.safetensors"});
}

// A failure in the middle of writing (the disk fills up: simulated with a file size limit in a
// child process) leaves the old file intact and no temp file behind.
TEST_F(Safetensors, WriteFailingMidwayKeepsExistingFileAndRemovesTemp) {
  const std::vector<float> small(4, 1.f);
  const std::string file = path("keep.safetensors");
  write_safetensors(file, {{"x", DType::F32, {4}, small.data()}});
  const auto before = file_bytes(file);
  const std::vector<float> big(1 << 20, 3.f);  // 4 MB, far over the limit below
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);  // make the write fail with EFBIG instead of killing us
    struct rlimit lim {
      64 * 1024, 64 * 1024
    };
    ::setrlimit(RLIMIT_FSIZE, &lim);
    int code = 3;
    try {
      write_safetensors(file, {{"big", DType::F32, {1 << 20}, big.data()}});
      code = 1;  // should not succeed
    } catch (const Error& e) {
      code = std::string(e.what()).find(file) != std::string::npos ? 0 : 2;
    }
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: write succeeded, 2: error did not name the file";
  EXPECT_EQ(file_bytes(file), before);
  EXPECT_EQ(listing(), std::vector<std::string>{"keep.safetensors"});
}

TEST_F(Safetensors, WriteOverADirectoryFailsAndRemovesTemp) {
  const float x[2] = {1.f, 2.f};
  fs::create_directories(path("taken"));
  EXPECT_THROW(write_safetensors(path("taken"), {{"x", DType::F32, {2}, x}}), Error);
  EXPECT_TRUE(fs::is_directory(path("taken")));
  EXPECT_EQ(listing(), std::vector<std::string>{"taken"});
}

}  // namespace
