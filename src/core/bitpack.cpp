#include "core/bitpack.h"

#include <cstring>
#include <string>

#include "core/compressed_weight.h"
#include "core/error.h"
#include "core/parallel.h"

namespace sdpal {

namespace {

void check_bits(int nbits, const char* what) {
  SDPAL_CHECK(valid_palette_bits(nbits), std::string(what) + ": unsupported index width " +
                                             std::to_string(nbits) +
                                             " bits (expected 1, 2, 4, 6 or 8)");
}

// Packs 8 indices into nbits bytes (little-endian bit stream).
inline void pack8(const uint8_t* idx, int nbits, uint8_t* out) {
  uint64_t v = 0;
  for (int t = 0; t < 8; ++t) v |= static_cast<uint64_t>(idx[t]) << (t * nbits);
  std::memcpy(out, &v, static_cast<size_t>(nbits));  // x86 is little-endian
}

}  // namespace

int64_t packed_index_bytes(int64_t count, int nbits) { return (count * nbits + 7) / 8; }

void pack_indices(const uint8_t* indices, int64_t count, int nbits, uint8_t* out) {
  check_bits(nbits, "pack_indices");
  const unsigned limit = 1u << nbits;
  const int64_t blocks = count / 8;
  bool in_range = true;
#pragma omp parallel for schedule(static) reduction(&& : in_range) if (count > kParallelGrain)
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t any = 0;
    for (int t = 0; t < 8; ++t) any |= indices[b * 8 + t];
    in_range = in_range && any < limit;
    pack8(indices + b * 8, nbits, out + b * nbits);
  }
  const int64_t tail = count - blocks * 8;
  if (tail > 0) {
    uint8_t last[8] = {};
    for (int64_t t = 0; t < tail; ++t) {
      last[t] = indices[blocks * 8 + t];
      in_range = in_range && last[t] < limit;
    }
    uint8_t bytes[8];
    pack8(last, nbits, bytes);
    std::memcpy(out + blocks * nbits, bytes,
                static_cast<size_t>(packed_index_bytes(count, nbits) - blocks * nbits));
  }
  SDPAL_CHECK(in_range,
              "pack_indices: an index does not fit in " + std::to_string(nbits) + " bits");
}

std::vector<uint8_t> pack_indices(const std::vector<uint8_t>& indices, int nbits) {
  check_bits(nbits, "pack_indices");
  const int64_t n = static_cast<int64_t>(indices.size());
  std::vector<uint8_t> out(packed_index_bytes(n, nbits));
  pack_indices(indices.data(), n, nbits, out.data());
  return out;
}

void unpack_indices(const uint8_t* packed, int64_t first, int64_t count, int nbits, uint8_t* out) {
  check_bits(nbits, "unpack_indices");
  int64_t i = 0;
  // Unaligned head, then whole 8-element blocks, then the tail.
  for (; i < count && (first + i) % 8 != 0; ++i)
    out[i] = static_cast<uint8_t>(packed_index_at(packed, first + i, nbits));
  const unsigned mask = (1u << nbits) - 1u;
  for (; i + 8 <= count; i += 8) {
    uint64_t v = 0;
    std::memcpy(&v, packed + (first + i) / 8 * nbits, static_cast<size_t>(nbits));
    for (int t = 0; t < 8; ++t) out[i + t] = static_cast<uint8_t>((v >> (t * nbits)) & mask);
  }
  for (; i < count; ++i) out[i] = static_cast<uint8_t>(packed_index_at(packed, first + i, nbits));
}

}  // namespace sdpal
