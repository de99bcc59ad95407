// Palettization, linear 8-bit quantization, index packing and vectorised expansion, each checked
// against a scalar restatement of the definitions in compressed_weight.h.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "compression/kmeans1d.h"
#include "compression/palettize.h"
#include "compression/quantize.h"
#include "core/bitpack.h"
#include "core/compressed_weight.h"
#include "core/error.h"
#include "kernels/expand.h"

using namespace sdpal;

namespace {

const int kAllBits[] = {1, 2, 4, 6, 8};

std::vector<float> random_normal_f16(int64_t n, float stddev, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, stddev);
  std::vector<float> w(n);
  for (auto& v : w) v = half_to_float(float_to_half(nd(rng)));
  return w;
}

// Bit i*nbits + b of the stream is bit b of index i: the definition, one bit at a time.
std::vector<uint8_t> reference_pack(const std::vector<uint8_t>& idx, int nbits) {
  std::vector<uint8_t> out((idx.size() * nbits + 7) / 8, 0);
  for (size_t i = 0; i < idx.size(); ++i)
    for (int b = 0; b < nbits; ++b)
      if (idx[i] >> b & 1) {
        const size_t bit = i * nbits + b;
        out[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
      }
  return out;
}

unsigned reference_index(const uint8_t* packed, int64_t i, int nbits) {
  unsigned v = 0;
  for (int b = 0; b < nbits; ++b) {
    const int64_t bit = i * nbits + b;
    v |= ((packed[bit / 8] >> (bit % 8)) & 1u) << b;
  }
  return v;
}

// The scalar definition of expansion.
std::vector<float> reference_expand(const CompressedView& w) {
  const int64_t n = w.numel(), row_len = n / w.rows();
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = i / row_len;
    if (w.kind == CompressedView::Kind::Palette) {
      const int64_t g = w.group_size ? row / w.group_size : 0;
      out[i] = half_to_float(w.lut[g * w.entries + reference_index(w.indices, i, w.nbits)]);
    } else if (w.symmetric) {
      out[i] = static_cast<float>(static_cast<int8_t>(w.q[i])) * w.scale[row];
    } else {
      out[i] = (static_cast<float>(w.q[i]) - static_cast<float>(w.zero[row])) * w.scale[row];
    }
  }
  return out;
}

void expect_bitwise_equal(const std::vector<float>& got, const std::vector<float>& want,
                          const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], 4) != 0) {
      FAIL() << what << ": element " << i << " got " << got[i] << " want " << want[i];
      return;
    }
}

// A palettized weight with arbitrary fp16 LUT values (negatives, subnormals, zeros) and uniformly
// random indices, built directly rather than by palettize().
PalettizedWeight random_palette(const Shape& shape, int nbits, int64_t group_size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  PalettizedWeight p;
  p.shape = shape;
  p.nbits = nbits;
  p.group_size = group_size;
  p.entries = int64_t(1) << nbits;
  p.lut.resize(p.groups() * p.entries);
  std::uniform_int_distribution<int> bits(0, 0xffff);
  for (auto& h : p.lut) {
    do h = static_cast<uint16_t>(bits(rng));
    while ((h & 0x7c00) == 0x7c00);  // finite only
  }
  std::vector<uint8_t> idx(shape_numel(shape));
  std::uniform_int_distribution<int> pick(0, static_cast<int>(p.entries) - 1);
  for (auto& i : idx) i = static_cast<uint8_t>(pick(rng));
  p.indices = pack_indices(idx, nbits);
  return p;
}

const std::vector<Shape> kShapes = {
    {32, 7},          // rows not a multiple of 16 elements, odd packing offsets
    {48, 4, 3, 3},    // conv
    {16, 1},          // one element per row
    {64, 17},         //
    {320, 64, 3, 3},  // large enough for the multithreaded path
    {1280, 77},       //
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Packing

TEST(BitPack, MatchesDefinitionAndRoundTrips) {
  std::mt19937_64 rng(1);
  for (int nbits : kAllBits) {
    for (int64_t n : {0, 1, 3, 7, 8, 9, 15, 16, 17, 63, 100, 1001, 100003}) {
      std::vector<uint8_t> idx(n);
      std::uniform_int_distribution<int> pick(0, (1 << nbits) - 1);
      for (auto& v : idx) v = static_cast<uint8_t>(pick(rng));
      const std::vector<uint8_t> packed = pack_indices(idx, nbits);
      ASSERT_EQ(static_cast<int64_t>(packed.size()), packed_index_bytes(n, nbits));
      ASSERT_EQ(packed, reference_pack(idx, nbits)) << nbits << " bits, " << n << " indices";
      std::vector<uint8_t> back(n);
      unpack_indices(packed.data(), 0, n, nbits, back.data());
      EXPECT_EQ(back, idx);
      // From odd starting offsets.
      for (int64_t first : {int64_t(1), int64_t(3), int64_t(5), n / 3}) {
        if (first >= n) continue;
        const int64_t count = n - first - (n - first) / 4;
        std::vector<uint8_t> part(count);
        unpack_indices(packed.data(), first, count, nbits, part.data());
        EXPECT_TRUE(std::equal(part.begin(), part.end(), idx.begin() + first));
      }
      for (int64_t i = 0; i < std::min<int64_t>(n, 200); ++i)
        EXPECT_EQ(packed_index_at(packed.data(), i, nbits), idx[i]);
    }
  }
}

TEST(BitPack, DocumentedLayout) {
  // 4-bit: element 2j in the low nibble of byte j.
  EXPECT_EQ(pack_indices({0x1, 0x2, 0x3, 0xf}, 4), (std::vector<uint8_t>{0x21, 0xf3}));
  // 6-bit: 4 indices per 3 bytes, LSB first.
  EXPECT_EQ(pack_indices({0x3f, 0x00, 0x01, 0x20}, 6), (std::vector<uint8_t>{0x3f, 0x10, 0x80}));
  // 1-bit: element i is bit i.
  EXPECT_EQ(pack_indices({1, 0, 0, 1, 1, 0, 0, 0, 1}, 1), (std::vector<uint8_t>{0x19, 0x01}));
  // 2-bit.
  EXPECT_EQ(pack_indices({3, 0, 1, 2, 1}, 2), (std::vector<uint8_t>{0x93, 0x01}));
}

TEST(BitPack, RejectsBadInput) {
  EXPECT_THROW(pack_indices({0, 4}, 2), Error);
  EXPECT_THROW(pack_indices({0, 1}, 3), Error);
  std::vector<uint8_t> big(100000, 1);
  big[77777] = 2;
  EXPECT_THROW(pack_indices(big, 1), Error);
}

// ---------------------------------------------------------------------------------------------
// Expansion

TEST(Expand, PaletteBitExactForEveryWidthAndGrouping) {
  uint64_t seed = 1;
  for (const Shape& shape : kShapes)
    for (int nbits : kAllBits)
      for (int64_t group_size : {int64_t(0), int64_t(16), shape[0]}) {
        const PalettizedWeight p = random_palette(shape, nbits, group_size, seed++);
        const CompressedView v = CompressedView::of(p);
        std::vector<float> got(v.numel());
        expand(v, got.data());
        expect_bitwise_equal(got, reference_expand(v),
                             shape_str(shape) + " " + std::to_string(nbits) + "-bit group " +
                                 std::to_string(group_size));
      }
}

TEST(Expand, PaletteWithFewerEntriesThanIndexRange) {
  for (int nbits : kAllBits) {
    PalettizedWeight p = random_palette({32, 9}, nbits, 0, 99);
    // Keep only the first entry used: every index in range of a 1-entry LUT.
    p.entries = 1;
    p.lut.resize(1);
    std::vector<uint8_t> zeros(32 * 9, 0);
    p.indices = pack_indices(zeros, nbits);
    std::vector<float> got(32 * 9);
    expand(CompressedView::of(p), got.data());
    for (float f : got) EXPECT_EQ(f, half_to_float(p.lut[0]));
  }
}

TEST(Expand, RowsMatchFullExpansion) {
  std::mt19937_64 rng(4);
  for (int nbits : kAllBits) {
    const Shape shape = {96, 5, 3};  // 15 elements per row: rows start at odd bit offsets
    const PalettizedWeight p = random_palette(shape, nbits, 16, 50 + nbits);
    const CompressedView v = CompressedView::of(p);
    std::vector<float> full(v.numel());
    expand(v, full.data());
    std::uniform_int_distribution<int64_t> r(0, 96);
    for (int t = 0; t < 30; ++t) {
      int64_t a = r(rng), b = r(rng);
      if (a > b) std::swap(a, b);
      std::vector<float> part((b - a) * 15);
      expand_rows(v, a, b, part.data());
      EXPECT_TRUE(std::equal(part.begin(), part.end(), full.begin() + a * 15))
          << nbits << "-bit rows " << a << ".." << b;
    }
  }
  // Large tensor: the multithreaded split inside a row range.
  const PalettizedWeight p = random_palette({640, 320, 3, 3}, 6, 32, 8);
  const CompressedView v = CompressedView::of(p);
  std::vector<float> full(v.numel()), part(v.numel() / 640 * 301);
  expand(v, full.data());
  expand_rows(v, 117, 418, part.data());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), full.begin() + 117 * 320 * 9));
  EXPECT_THROW(expand_rows(v, 5, 641, part.data()), Error);
  EXPECT_THROW(expand_rows(v, 6, 5, part.data()), Error);
}

// Spans starting and ending at any element, across palette groups and rows, through one
// SpanExpander (which keeps a group's LUT between calls): the kernel of the active level
// (SDPAL_ISA) against the scalar definition, bit for bit, with nothing written past the span.
TEST(Expand, SpansAtAnyElementMatchScalarDefinition) {
  std::mt19937_64 rng(21);
  auto check_spans = [&](const CompressedView& v, const std::string& what) {
    const std::vector<float> want = reference_expand(v);
    const int64_t n = v.numel();
    SpanExpander span(v);
    std::uniform_int_distribution<int64_t> pos(0, n), len(0, 300);
    for (int t = 0; t < 300; ++t) {
      const int64_t e0 = pos(rng), e1 = std::min(n, e0 + (t % 10 == 0 ? n : len(rng)));
      std::vector<float> got(e1 - e0 + 1, -7.f);
      span(e0, e1, got.data());
      ASSERT_EQ(got.back(), -7.f) << what << ": wrote past span " << e0 << ".." << e1;
      got.pop_back();
      expect_bitwise_equal(got, std::vector<float>(want.begin() + e0, want.begin() + e1),
                           what + " span " + std::to_string(e0) + ".." + std::to_string(e1));
      if (HasFatalFailure() || HasFailure()) return;
    }
  };
  for (int nbits : kAllBits)
    for (int64_t group_size : {int64_t(0), int64_t(4)}) {
      const PalettizedWeight p = random_palette({24, 37}, nbits, group_size, 300 + nbits);
      check_spans(CompressedView::of(p),
                  std::to_string(nbits) + "-bit group " + std::to_string(group_size));
    }
  std::uniform_int_distribution<int> byte(0, 255);
  for (bool symmetric : {true, false}) {
    Linear8Weight q;
    q.shape = {24, 37};
    q.symmetric = symmetric;
    q.q.resize(24 * 37);
    for (auto& b : q.q) b = static_cast<uint8_t>(byte(rng));
    std::normal_distribution<float> nd(0.f, 0.01f);
    for (int r = 0; r < 24; ++r) {
      q.scale.push_back(std::abs(nd(rng)) + 1e-4f);
      if (!symmetric) q.zero.push_back(static_cast<uint8_t>(byte(rng)));
    }
    check_spans(CompressedView::of(q), symmetric ? "linear8 symmetric" : "linear8 asymmetric");
  }
}

TEST(Expand, StoredBytes) {
  const PalettizedWeight p = random_palette({32, 7}, 6, 16, 3);
  EXPECT_EQ(CompressedView::of(p).stored_bytes(), 2 * 64 * 2 + (32 * 7 * 6 + 7) / 8);
  std::vector<float> w = random_normal_f16(32 * 7, 0.1f, 1);
  EXPECT_EQ(
      CompressedView::of(quantize_linear8(w.data(), {32, 7}, DType::F16, true)).stored_bytes(),
      32 * 7 + 32 * 4);
  EXPECT_EQ(
      CompressedView::of(quantize_linear8(w.data(), {32, 7}, DType::F16, false)).stored_bytes(),
      32 * 7 + 32 * 4 + 32);
}

// ---------------------------------------------------------------------------------------------
// Palettization

TEST(Palettize, IndicesAreNearestLutEntries) {
  for (const Shape& shape : {Shape{64, 17}, Shape{48, 4, 3, 3}, Shape{320, 64, 3, 3}})
    for (int nbits : kAllBits)
      for (int64_t group_size : {int64_t(0), int64_t(16), int64_t(1), shape[0]}) {
        if (group_size == 1 && shape[0] > 64) continue;  // keep the test quick
        const std::vector<float> w = random_normal_f16(shape_numel(shape), 0.05f, nbits);
        const PalettizedWeight p = palettize(w.data(), shape, DType::F16, nbits, group_size);
        ASSERT_EQ(p.shape, shape);
        ASSERT_LE(p.entries, 1 << nbits);
        ASSERT_EQ(static_cast<int64_t>(p.lut.size()), p.groups() * p.entries);
        ASSERT_EQ(static_cast<int64_t>(p.indices.size()), packed_index_bytes(w.size(), nbits));
        const CompressedView v = CompressedView::of(p);
        std::vector<float> got(w.size());
        expand(v, got.data());
        expect_bitwise_equal(got, reference_expand(v), "palettized " + shape_str(shape));
        const int64_t group_elems = static_cast<int64_t>(w.size()) / p.groups();
        for (int64_t g = 0; g < p.groups(); ++g) {
          const uint16_t* lut = p.lut.data() + g * p.entries;
          for (int64_t j = 1; j < p.entries; ++j)
            ASSERT_LE(half_to_float(lut[j - 1]), half_to_float(lut[j]));
          for (int64_t i = g * group_elems; i < (g + 1) * group_elems; i += 7) {
            const double d = std::abs(static_cast<double>(got[i]) - w[i]);
            for (int64_t j = 0; j < p.entries; ++j)
              ASSERT_LE(d, std::abs(static_cast<double>(half_to_float(lut[j])) - w[i]))
                  << "element " << i << " not at its nearest entry";
          }
        }
      }
}

TEST(Palettize, SameResultForAnyThreadCount) {
  const Shape shape = {256, 64, 3, 3};
  std::vector<float> w16 = random_normal_f16(shape_numel(shape), 0.05f, 31), w32(w16.size());
  std::mt19937_64 rng(2);
  std::normal_distribution<float> nd(0.f, 0.05f);
  for (auto& v : w32) v = nd(rng);  // not fp16-exact: the bucket-mean path
  for (const std::vector<float>* w : {&w16, &w32})
    for (int64_t group_size : {int64_t(0), int64_t(128), int64_t(16)}) {
      const int saved = omp_get_max_threads();
      omp_set_num_threads(1);
      const PalettizedWeight one = palettize(w->data(), shape, DType::F32, 6, group_size);
      omp_set_num_threads(std::max(2, saved));
      const PalettizedWeight many = palettize(w->data(), shape, DType::F32, 6, group_size);
      omp_set_num_threads(saved);
      EXPECT_EQ(one.lut, many.lut);
      EXPECT_EQ(one.indices, many.indices);
    }
}

TEST(Palettize, ErrorFallsAsBitsRise) {
  const Shape shape = {256, 128, 3, 3};
  const std::vector<float> w = random_normal_f16(shape_numel(shape), 0.02f, 5);
  double prev = std::numeric_limits<double>::infinity();
  for (int nbits : kAllBits) {
    const double sse =
        palettization_sse(w.data(), palettize(w.data(), shape, DType::F16, nbits, 0));
    EXPECT_LT(sse, prev * 0.5) << nbits << " bits";
    prev = sse;
  }
  // Grouped LUTs fit better than one per tensor.
  const double tensor = palettization_sse(w.data(), palettize(w.data(), shape, DType::F16, 4, 0));
  const double grouped = palettization_sse(w.data(), palettize(w.data(), shape, DType::F16, 4, 16));
  EXPECT_LT(grouped, tensor);
}

TEST(Palettize, MatchesExactKMeansAndBeatsLloyd) {
  const Shape shape = {128, 300};
  const std::vector<float> w = random_normal_f16(shape_numel(shape), 0.03f, 12);
  std::map<float, double> hist;
  for (float x : w) hist[x] += 1;
  std::vector<double> values, weights;
  for (const auto& [v, c] : hist) {
    values.push_back(v);
    weights.push_back(c);
  }
  for (int nbits : {2, 4, 6}) {
    const double pal =
        palettization_sse(w.data(), palettize(w.data(), shape, DType::F16, nbits, 0));
    const double opt = kmeans1d_optimal(values, weights, 1 << nbits).sse;
    // The fp16 LUT costs a little against the real-valued optimum.
    EXPECT_GE(pal, opt * (1 - 1e-9));
    EXPECT_LE(pal, opt * 1.01) << nbits << " bits";
    const double lloyd = kmeans1d_lloyd(values, weights, 1 << nbits, 3).sse;
    EXPECT_LE(pal, lloyd * 1.01);
  }
}

TEST(Palettize, FewDistinctValuesAreExact) {
  // 5 distinct values at 4 bits: each its own entry, reconstruction exact (also -0 folds to 0).
  const float vals[] = {-0.5f, -0.f, 0.f, 0.25f, 1.f, 3.f};
  std::vector<float> w(16 * 33);
  for (size_t i = 0; i < w.size(); ++i) w[i] = vals[(i * 7) % 6];
  for (int nbits : {4, 6, 8}) {
    const PalettizedWeight p = palettize(w.data(), {16, 33}, DType::F32, nbits, 0);
    EXPECT_EQ(p.entries, 5);
    EXPECT_EQ(palettization_sse(w.data(), p), 0.0);
  }
  // Constant weight.
  std::vector<float> c(40, 0.125f);
  const PalettizedWeight p = palettize(c.data(), {8, 5}, DType::F16, 2, 4);
  EXPECT_EQ(p.entries, 1);
  EXPECT_EQ(p.lut, (std::vector<uint16_t>{float_to_half(0.125f), float_to_half(0.125f)}));
  // Groups with different numbers of distinct values: shorter LUTs are padded.
  std::vector<float> mixed = {1.f, 1.f, 2.f, 2.f, 3.f, 4.f, 5.f, 6.f};
  const PalettizedWeight m = palettize(mixed.data(), {4, 2}, DType::F16, 2, 2);
  EXPECT_EQ(m.entries, 4);
  std::vector<float> back(8);
  expand(CompressedView::of(m), back.data());
  EXPECT_EQ(back[0], 1.f);
  EXPECT_EQ(back[3], 2.f);
}

TEST(Palettize, InexactFp32Values) {
  // fp32 values that are not fp16 values: buckets by nearest fp16, indices still nearest.
  std::mt19937_64 rng(21);
  std::normal_distribution<float> nd(0.f, 0.1f);
  const Shape shape = {64, 257};
  std::vector<float> w(shape_numel(shape));
  for (auto& v : w) v = nd(rng);
  for (int nbits : {1, 4, 8}) {
    const PalettizedWeight p = palettize(w.data(), shape, DType::F32, nbits, 0);
    std::vector<float> got(w.size());
    expand(CompressedView::of(p), got.data());
    for (size_t i = 0; i < w.size(); i += 3) {
      const double d = std::abs(static_cast<double>(got[i]) - w[i]);
      for (int64_t j = 0; j < p.entries; ++j)
        ASSERT_LE(d, std::abs(static_cast<double>(half_to_float(p.lut[j])) - w[i]));
    }
  }
  // Two fp32 values inside one fp16 bucket share an entry; the error stays below the spacing.
  std::vector<float> close = {1.0f, 1.0001f, 1.0001f, 1.0f};
  const PalettizedWeight p = palettize(close.data(), {2, 2}, DType::F32, 8, 0);
  EXPECT_LT(palettization_sse(close.data(), p), 4 * 1e-6);
}

TEST(Palettize, RejectsBadArguments) {
  std::vector<float> w(64 * 9, 0.5f);
  for (int nbits : {0, 3, 5, 7, 16, -1})
    EXPECT_THROW(palettize(w.data(), {64, 9}, DType::F16, nbits, 0), Error) << nbits;
  try {
    palettize(w.data(), {64, 9}, DType::F16, 4, 10);
    FAIL() << "group size 10 accepted for 64 rows";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("10"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("64"), std::string::npos);
  }
  EXPECT_THROW(palettize(w.data(), {64, 9}, DType::F16, 4, 128), Error);
  EXPECT_THROW(palettize(w.data(), {64, 9}, DType::F16, 4, -16), Error);
  EXPECT_THROW(palettize(w.data(), {}, DType::F16, 4, 0), Error);
  EXPECT_THROW(palettize(w.data(), {0, 9}, DType::F16, 4, 0), Error);
  w[100] = NAN;
  EXPECT_THROW(palettize(w.data(), {64, 9}, DType::F16, 4, 0), Error);
  w[100] = INFINITY;
  EXPECT_THROW(palettize(w.data(), {64, 9}, DType::F16, 4, 16), Error);
  w[100] = 1e6f;
  EXPECT_THROW(palettize(w.data(), {64, 9}, DType::F32, 4, 0), Error);
}

// ---------------------------------------------------------------------------------------------
// Linear 8-bit

TEST(Linear8, RoundTripWithinHalfStepAndExactExpansion) {
  for (const Shape& shape : {Shape{32, 7}, Shape{48, 4, 3, 3}, Shape{320, 64, 3, 3}})
    for (bool symmetric : {true, false}) {
      std::vector<float> w = random_normal_f16(shape_numel(shape), 0.05f, 77);
      const int64_t rows = shape[0], row_len = shape_numel(shape) / rows;
      // Special rows: all zero, all positive, all negative, one tiny value.
      std::fill(w.begin(), w.begin() + row_len, 0.f);
      for (int64_t i = 0; i < row_len; ++i) {
        w[row_len + i] = std::abs(w[row_len + i]) + 0.01f;
        w[2 * row_len + i] = -std::abs(w[2 * row_len + i]) - 0.01f;
        w[3 * row_len + i] = i == 0 ? 1e-6f : 0.f;
      }
      const Linear8Weight q = quantize_linear8(w.data(), shape, DType::F16, symmetric);
      ASSERT_EQ(static_cast<int64_t>(q.q.size()), shape_numel(shape));
      ASSERT_EQ(static_cast<int64_t>(q.scale.size()), rows);
      ASSERT_EQ(static_cast<int64_t>(q.zero.size()), symmetric ? 0 : rows);
      EXPECT_EQ(q.scale[0], 0.f);
      const CompressedView v = CompressedView::of(q);
      std::vector<float> got(w.size());
      expand(v, got.data());
      expect_bitwise_equal(got, reference_expand(v), "linear8 " + shape_str(shape));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < row_len; ++i) {
          const int64_t e = r * row_len + i;
          if (symmetric) {
            ASSERT_NE(static_cast<int8_t>(q.q[e]), -128);
          }
          ASSERT_LE(std::abs(got[e] - w[e]), q.scale[r] * 0.5f * (1 + 1e-5f) + 1e-30f)
              << (symmetric ? "symmetric" : "asymmetric") << " row " << r << " element " << i;
        }
      // Extremes map to the ends of the range.
      if (symmetric) {
        const int64_t r = 5;
        const auto mx =
            std::max_element(w.begin() + r * row_len, w.begin() + (r + 1) * row_len,
                             [](float a, float b) { return std::abs(a) < std::abs(b); });
        EXPECT_EQ(std::abs(static_cast<int8_t>(q.q[mx - w.begin()])), 127);
      } else {
        EXPECT_EQ(q.zero[1], 0);    // all-positive row: range widened down to 0
        EXPECT_EQ(q.zero[2], 255);  // all-negative row
      }
    }
}

TEST(Linear8, RejectsBadInput) {
  std::vector<float> w(16, 1.f);
  EXPECT_THROW(quantize_linear8(w.data(), {}, DType::F16, true), Error);
  EXPECT_THROW(quantize_linear8(w.data(), {0, 4}, DType::F16, true), Error);
  w[3] = NAN;
  EXPECT_THROW(quantize_linear8(w.data(), {4, 4}, DType::F16, true), Error);
  w[3] = -INFINITY;
  EXPECT_THROW(quantize_linear8(w.data(), {4, 4}, DType::F16, false), Error);
}
