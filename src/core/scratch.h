// Scratch buffers lent per thread: a kernel or a weight expansion borrows a float buffer for as
// long as it needs it and gives it back when the lease ends. Buffers are kept by the thread that
// returned them and handed out again (no page faults for the large, short-lived buffers of every
// layer), and two leases alive at once never share memory, so callers on different threads, and
// nested callers on one thread, cannot overwrite each other's data.
#pragma once
#include <cstddef>
#include <memory>

namespace sdpal {

class ScratchLease {
 public:
  ScratchLease() = default;
  // A buffer of at least `floats` floats, 64-byte aligned, contents undefined.
  explicit ScratchLease(size_t floats);
  ScratchLease(ScratchLease&&) noexcept = default;
  ScratchLease& operator=(ScratchLease&& o) noexcept;
  ~ScratchLease();
  float* data() const { return buf_.get(); }

  struct Free {
    void operator()(float* p) const;
  };
  using Buffer = std::unique_ptr<float, Free>;

 private:
  void give_back();
  Buffer buf_;
  size_t capacity_ = 0;
};

}  // namespace sdpal
