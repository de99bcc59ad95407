#include "core/scratch.h"

#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

namespace sdpal {

namespace {

// The buffers this thread holds for later leases. A few at most: a layer needs one or two at a
// time (an expanded weight and oneDNN's blocked copy of it).
constexpr size_t kKept = 4;

struct Pool {
  struct Entry {
    ScratchLease::Buffer buf;
    size_t capacity = 0;
  };
  std::vector<Entry> free;
};

Pool& pool() {
  thread_local Pool p;
  return p;
}

}  // namespace

void ScratchLease::Free::operator()(float* p) const { std::free(p); }

ScratchLease::ScratchLease(size_t floats) {
  if (floats == 0) floats = 1;
  auto& free = pool().free;
  // The smallest kept buffer that is large enough. If none is, the largest kept one is replaced
  // by a larger one (rather than a buffer added): the kept buffers grow to the largest requests
  // and then serve every later call without allocating (fresh pages fault in at first touch).
  size_t best = free.size(), largest = free.size();
  for (size_t i = 0; i < free.size(); ++i) {
    if (free[i].capacity >= floats &&
        (best == free.size() || free[i].capacity < free[best].capacity))
      best = i;
    if (largest == free.size() || free[i].capacity > free[largest].capacity) largest = i;
  }
  if (best != free.size()) {
    buf_ = std::move(free[best].buf);
    capacity_ = free[best].capacity;
    free.erase(free.begin() + static_cast<std::ptrdiff_t>(best));
    return;
  }
  if (largest != free.size()) free.erase(free.begin() + static_cast<std::ptrdiff_t>(largest));
  if (floats > (SIZE_MAX - 63) / sizeof(float)) throw std::bad_alloc();
  const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
  float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p) throw std::bad_alloc();
  buf_.reset(p);
  capacity_ = floats;
}

ScratchLease& ScratchLease::operator=(ScratchLease&& o) noexcept {
  if (this != &o) {
    give_back();
    buf_ = std::move(o.buf_);
    capacity_ = std::exchange(o.capacity_, 0);
  }
  return *this;
}

ScratchLease::~ScratchLease() { give_back(); }

void ScratchLease::give_back() {
  if (!buf_) return;
  auto& free = pool().free;
  if (free.size() == kKept) {
    // Keep the larger buffers: drop the smallest kept one if it is smaller than this.
    size_t smallest = 0;
    for (size_t i = 1; i < free.size(); ++i)
      if (free[i].capacity < free[smallest].capacity) smallest = i;
    if (free[smallest].capacity >= capacity_) {
      buf_.reset();
      return;
    }
    free.erase(free.begin() + static_cast<std::ptrdiff_t>(smallest));
  }
  free.push_back({std::move(buf_), capacity_});
  capacity_ = 0;
}

}  // namespace sdpal
