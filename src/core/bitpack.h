// Packing of n-bit palette indices (n in {1, 2, 4, 6, 8}) into a byte stream, least significant
// bit first: element i occupies stream bits [i*n, (i+1)*n), byte b holds bits 8b..8b+7 with bit 0
// the LSB (see compressed_weight.h). Any 8 consecutive elements starting at a multiple of 8 fill
// exactly n whole bytes, which is what lets packing and unpacking work on independent blocks.
#pragma once
#include <cstdint>
#include <vector>

namespace sdpal {

// Bytes needed for `count` indices of `nbits` bits (the last byte's unused high bits are zero).
int64_t packed_index_bytes(int64_t count, int nbits);

// Packs count indices (each < 2^nbits, else sdpal::Error) into out[packed_index_bytes(...)].
// Multithreaded for large inputs.
void pack_indices(const uint8_t* indices, int64_t count, int nbits, uint8_t* out);
std::vector<uint8_t> pack_indices(const std::vector<uint8_t>& indices, int nbits);

// Reads indices [first, first + count) of a packed stream into out[count].
void unpack_indices(const uint8_t* packed, int64_t first, int64_t count, int nbits, uint8_t* out);

// Index of element i in a packed stream (scalar; reads only the bytes that hold it).
inline unsigned packed_index_at(const uint8_t* packed, int64_t i, int nbits) {
  const int64_t bit = i * nbits;
  const int64_t byte = bit >> 3;
  const int shift = static_cast<int>(bit & 7);
  unsigned v = packed[byte] >> shift;
  if (shift + nbits > 8) v |= static_cast<unsigned>(packed[byte + 1]) << (8 - shift);
  return v & ((1u << nbits) - 1u);
}

}  // namespace sdpal
