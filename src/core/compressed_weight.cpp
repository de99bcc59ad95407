// The compressed-weight representation's sizes and views (compressed_weight.h); the expansion
// kernels live in kernels/expand.cpp.
#include "core/compressed_weight.h"

#include "core/bitpack.h"

namespace sdpal {

int64_t CompressedView::stored_bytes() const {
  if (kind == Kind::Palette) return groups * entries * 2 + packed_index_bytes(numel(), nbits);
  return numel() + rows() * static_cast<int64_t>(sizeof(float)) + (symmetric ? 0 : rows());
}

CompressedView CompressedView::of(const PalettizedWeight& w) {
  CompressedView v;
  v.kind = Kind::Palette;
  v.shape = w.shape;
  v.orig_dtype = w.orig_dtype;
  v.nbits = w.nbits;
  v.group_size = w.group_size;
  v.groups = w.groups();
  v.entries = w.entries;
  v.lut = w.lut.data();
  v.indices = w.indices.data();
  return v;
}

CompressedView CompressedView::of(const Linear8Weight& w) {
  CompressedView v;
  v.kind = Kind::Linear8;
  v.shape = w.shape;
  v.orig_dtype = w.orig_dtype;
  v.symmetric = w.symmetric;
  v.q = w.q.data();
  v.scale = w.scale.data();
  v.zero = w.symmetric ? nullptr : w.zero.data();
  return v;
}

}  // namespace sdpal
