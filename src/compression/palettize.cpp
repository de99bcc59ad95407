// Palettization: per group, a histogram of fp16 keys, exact 1-D k-means over the distinct
// values, and nearest-entry indices. The key extraction (fp16 rounding with an inexact flag) is a
// Highway kernel; the rest is scalar (it works on the 64K-entry histogram, not on the elements).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "compression/palettize.cpp"
#include "compression/palettize.h"

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>

#include "compression/kmeans1d.h"
#include "core/bitpack.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/parallel.h"
#include "kernels/expand.h"

HWY_BEFORE_NAMESPACE();
namespace sdpal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// keys[i] = fp16 bits of x[i] (round to nearest even); returns whether every x[i] is an fp16
// value (false for NaN). Hardware conversion where the target has it (F16C, NEON); elsewhere the
// exact scalar definitions (Highway 1.0.3's emulation mishandles inf/NaN), which give the same
// keys bit for bit.
bool HalfKeys(const float* x, size_t n, uint16_t* keys) {
  size_t i = 0;
  bool exact = true;
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_NEON
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const hn::Rebind<uint16_t, decltype(df)> du;
  const size_t N = hn::Lanes(df);
  auto inexact = hn::FirstN(df, 0);
  for (; i + N <= n; i += N) {
    const auto v = hn::LoadU(df, x + i);
    const auto h = hn::DemoteTo(dh, v);
    // Not equal after the round trip: inexact, or NaN (which compares unequal to itself).
    inexact = hn::Or(inexact, hn::Ne(hn::PromoteTo(df, h), v));
    hn::StoreU(hn::BitCast(du, h), du, keys + i);
  }
  exact = hn::AllFalse(df, inexact);
#endif
  for (; i < n; ++i) {
    keys[i] = float_to_half(x[i]);
    exact = exact && half_to_float(keys[i]) == x[i];
  }
  return exact;
}

}  // namespace HWY_NAMESPACE
}  // namespace sdpal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace sdpal {

HWY_EXPORT(HalfKeys);

namespace {

constexpr int kKeys = 65536;  // fp16 bit patterns
constexpr uint16_t kNegativeZero = 0x8000;

bool half_is_finite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

// Position of a finite fp16 bit pattern on the number line (-0 and +0 both map to 0).
int half_ordinal(uint16_t h) { return (h & 0x8000) ? -static_cast<int>(h & 0x7fff) : h; }
uint16_t half_from_ordinal(int o) {
  return o < 0 ? static_cast<uint16_t>(0x8000 | -o) : static_cast<uint16_t>(o);
}

// All finite fp16 bit patterns in ascending value order, -0 left out (folded into +0).
const std::vector<uint16_t>& ascending_half_keys() {
  static const std::vector<uint16_t> keys = [] {
    std::vector<uint16_t> k;
    for (int o = -0x7bff; o <= 0x7bff; ++o) k.push_back(half_from_ordinal(o));
    return k;
  }();
  return keys;
}

// The fp16 value nearest to c (c clamped to the finite fp16 range).
uint16_t nearest_half(double c) {
  c = std::clamp(c, -65504.0, 65504.0);
  // double -> float -> half can round twice; the nearest half is then a neighbour.
  const uint16_t h = float_to_half(static_cast<float>(c));
  uint16_t best = h;
  double best_d = std::abs(c - half_to_float(h));
  for (int step : {-1, 1}) {
    const int o = half_ordinal(h) + step;
    if (o < -0x7bff || o > 0x7bff) continue;
    const uint16_t n = half_from_ordinal(o);
    const double d = std::abs(c - half_to_float(n));
    if (d < best_d) {
      best = n;
      best_d = d;
    }
  }
  return best;
}

// Elements whose keys are made per call of the kernel (a stack buffer's worth).
constexpr int64_t kKeyChunk = 1024;

bool half_keys(const float* x, int64_t n, uint16_t* keys) {
  return SDPAL_DISPATCH(HalfKeys)(x, static_cast<size_t>(n), keys);
}

// Counts of fp16 keys over x[0, n); returns whether every value was fp16-exact. When `sums` is
// given, also accumulates the values per key (for inexact data).
bool histogram(const float* x, int64_t n, uint32_t* count, double* sums) {
  bool exact = true;
  uint16_t keys[kKeyChunk];
  for (int64_t b = 0; b < n; b += kKeyChunk) {
    const int64_t m = std::min(kKeyChunk, n - b);
    exact = half_keys(x + b, m, keys) && exact;
    if (sums) {
      for (int64_t t = 0; t < m; ++t) {
        ++count[keys[t]];
        sums[keys[t]] += x[b + t];
      }
    } else {
      for (int64_t t = 0; t < m; ++t) ++count[keys[t]];
    }
  }
  return exact;
}

// Per-thread histogram buffer, reused across groups and calls.
std::vector<uint32_t>& thread_counts() {
  thread_local std::vector<uint32_t> counts;
  counts.assign(kKeys, 0);
  return counts;
}

struct GroupHistogram {
  std::vector<uint32_t> count;  // per fp16 key
  std::vector<double> sums;     // per fp16 key, only when !exact
  bool exact = true;
};

// Histogram of one group; the counts are split over `threads` threads. Per-key sums (only for
// data that is not fp16-exact) are accumulated by one thread in element order, so the bucket
// means, and with them the LUT, do not depend on the thread count.
GroupHistogram group_histogram(const float* x, int64_t n, int threads) {
  GroupHistogram h;
  h.count.assign(kKeys, 0);
  bool exact = true;
  if (threads <= 1) {
    exact = histogram(x, n, h.count.data(), nullptr);
  } else {
#pragma omp parallel num_threads(threads) reduction(&& : exact)
    {
      const int nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t b = n * t / nt / 16 * 16, e = t + 1 == nt ? n : n * (t + 1) / nt / 16 * 16;
      std::vector<uint32_t>& counts = thread_counts();
      exact = histogram(x + b, e - b, counts.data(), nullptr);
#pragma omp critical(sdpal_palettize_merge)
      for (int k = 0; k < kKeys; ++k) h.count[k] += counts[k];
    }
  }
  h.exact = exact;
  if (!exact) {
    std::vector<uint32_t> recount(kKeys, 0);
    h.sums.assign(kKeys, 0.0);
    histogram(x, n, recount.data(), h.sums.data());
  }
  h.count[0] += h.count[kNegativeZero];
  h.count[kNegativeZero] = 0;
  if (!h.exact) {
    h.sums[0] += h.sums[kNegativeZero];
    h.sums[kNegativeZero] = 0;
  }
  return h;
}

// LUT (ascending, distinct fp16 values) and per-element indices of one group.
void palettize_group(const float* x, int64_t n, int nbits, int threads, uint8_t* idx,
                     std::vector<uint16_t>* lut_out) {
  GroupHistogram h = group_histogram(x, n, threads);
  for (int k = 0; k < kKeys; ++k)
    SDPAL_CHECK(h.count[k] == 0 || half_is_finite(static_cast<uint16_t>(k)),
                "palettize: weight has a non-finite value or one beyond the fp16 range "
                "(|w| > 65504) of the LUT");

  // Distinct values ascending with their counts (bucket means for inexact data).
  std::vector<double> values, weights;
  for (uint16_t k : ascending_half_keys()) {
    if (!h.count[k]) continue;
    const double v = h.exact ? half_to_float(k) : h.sums[k] / h.count[k];
    if (!values.empty() && v <= values.back()) {  // cannot happen for disjoint buckets; be safe
      weights.back() += h.count[k];
      continue;
    }
    values.push_back(v);
    weights.push_back(h.count[k]);
  }
  const KMeansResult km = kmeans1d_optimal(values, weights, 1 << nbits);

  std::vector<uint16_t>& lut = *lut_out;
  lut.clear();
  for (double c : km.centroids) {
    const uint16_t q = nearest_half(c);
    if (lut.empty() || half_to_float(q) != half_to_float(lut.back())) lut.push_back(q);
  }
  std::vector<double> lut_values(lut.size());
  for (size_t i = 0; i < lut.size(); ++i) lut_values[i] = half_to_float(lut[i]);

  // Nearest LUT entry (ties to the lower index) of every key present, by one merge sweep.
  std::vector<uint8_t> nearest(kKeys, 0);
  const int64_t entries = static_cast<int64_t>(lut.size());
  int64_t p = 0;
  for (uint16_t k : ascending_half_keys()) {
    if (!h.count[k]) continue;
    const double v = half_to_float(k);
    while (p + 1 < entries && std::abs(lut_values[p + 1] - v) < std::abs(lut_values[p] - v)) ++p;
    nearest[k] = static_cast<uint8_t>(p);
  }
  nearest[kNegativeZero] = nearest[0];

  const bool exact = h.exact;
  const int64_t blocks = (n + kKeyChunk - 1) / kKeyChunk;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t b = blk * kKeyChunk, m = std::min(kKeyChunk, n - b);
    uint16_t keys[kKeyChunk];
    half_keys(x + b, m, keys);
    for (int64_t t = 0; t < m; ++t) {
      int64_t q = nearest[keys[t]];
      if (!exact) {
        // The element's own value may sit on the other side of a midpoint than its bucket key.
        const double v = x[b + t];
        if (q > 0 && std::abs(lut_values[q - 1] - v) <= std::abs(lut_values[q] - v)) --q;
        if (q + 1 < entries && std::abs(lut_values[q + 1] - v) < std::abs(lut_values[q] - v)) ++q;
      }
      idx[b + t] = static_cast<uint8_t>(q);
    }
  }
}

}  // namespace

PalettizedWeight palettize(const float* w, const Shape& shape, DType orig_dtype, int nbits,
                           int64_t group_size) {
  SDPAL_CHECK(valid_palette_bits(nbits), "palettize: unsupported palette width " +
                                             std::to_string(nbits) +
                                             " bits (expected 1, 2, 4, 6 or 8)");
  SDPAL_CHECK(!shape.empty(), "palettize: a scalar weight has no output channels");
  const int64_t numel = shape_numel(shape);
  SDPAL_CHECK(numel > 0, "palettize: empty weight " + shape_str(shape));
  const int64_t rows = shape[0];
  SDPAL_CHECK(group_size >= 0, "palettize: negative group size " + std::to_string(group_size));
  SDPAL_CHECK(group_size == 0 || rows % group_size == 0,
              "palettize: group size " + std::to_string(group_size) + " does not divide the " +
                  std::to_string(rows) + " output channels of a " + shape_str(shape) + " weight");
  const int64_t groups = group_size ? rows / group_size : 1;
  const int64_t group_elems = numel / groups;
  SDPAL_CHECK(group_elems < (int64_t(1) << 32),
              "palettize: group of " + std::to_string(group_elems) + " elements is too large");

  std::vector<uint8_t> idx(numel);
  std::vector<std::vector<uint16_t>> luts(groups);
  const int max_threads = numel > kParallelGrain ? omp_get_max_threads() : 1;
  if (groups >= max_threads) {
    // Many groups: one group per thread at a time. Exceptions cannot cross the parallel region.
    std::exception_ptr error;
#pragma omp parallel for schedule(dynamic) num_threads(max_threads) if (max_threads > 1)
    for (int64_t g = 0; g < groups; ++g) {
      try {
        palettize_group(w + g * group_elems, group_elems, nbits, 1, idx.data() + g * group_elems,
                        &luts[g]);
      } catch (...) {
#pragma omp critical(sdpal_palettize_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  } else {
    for (int64_t g = 0; g < groups; ++g)
      palettize_group(w + g * group_elems, group_elems, nbits, max_threads,
                      idx.data() + g * group_elems, &luts[g]);
  }

  PalettizedWeight out;
  out.shape = shape;
  out.orig_dtype = orig_dtype;
  out.nbits = nbits;
  out.group_size = group_size;
  for (const auto& l : luts) out.entries = std::max<int64_t>(out.entries, l.size());
  out.lut.resize(groups * out.entries);
  for (int64_t g = 0; g < groups; ++g) {
    std::copy(luts[g].begin(), luts[g].end(), out.lut.begin() + g * out.entries);
    std::fill(out.lut.begin() + g * out.entries + luts[g].size(),
              out.lut.begin() + (g + 1) * out.entries, luts[g].back());
  }
  out.indices.resize(packed_index_bytes(numel, nbits));
  pack_indices(idx.data(), numel, nbits, out.indices.data());
  return out;
}

double palettization_sse(const float* w, const PalettizedWeight& p) {
  const CompressedView v = CompressedView::of(p);
  const int64_t rows = v.rows(), row_len = v.numel() / rows;
  const int64_t rows_per_chunk = std::max<int64_t>(1, (int64_t(1) << 16) / row_len);
  double sse = 0;
  std::vector<float> buf(rows_per_chunk * row_len);
  for (int64_t r = 0; r < rows; r += rows_per_chunk) {
    const int64_t re = std::min(rows, r + rows_per_chunk);
    expand_rows(v, r, re, buf.data());
    const float* x = w + r * row_len;
    for (int64_t i = 0; i < (re - r) * row_len; ++i) {
      const double d = static_cast<double>(buf[i]) - x[i];
      sse += d * d;
    }
  }
  return sse;
}

}  // namespace sdpal
#endif  // HWY_ONCE
