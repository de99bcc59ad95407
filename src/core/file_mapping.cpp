#include "core/file_mapping.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "core/error.h"

namespace sdpal {

namespace {

// The live mappings, readable from the signal handler without locks: a slot is in use while its
// begin is non-zero. Registration takes a free slot with a compare-exchange.
struct Slot {
  std::atomic<uintptr_t> begin{0}, end{0};
  std::atomic<int> damaged{0};
};
constexpr int kSlots = 1024;  // more live mappings than this go unguarded (a SIGBUS kills then)
Slot g_slots[kSlots];
struct sigaction g_previous;  // the SIGBUS action before ours: for faults outside our mappings
uintptr_t g_page = 4096;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& s : g_slots) {
    const uintptr_t b = s.begin.load(std::memory_order_acquire);
    if (b == 0 || a < b || a >= s.end.load(std::memory_order_acquire)) continue;
    // Zero pages from the faulting one to the end: the file is shorter than the mapping from here.
    const uintptr_t page = a & ~(g_page - 1);
    const size_t n = s.end.load(std::memory_order_acquire) - page;
    void* r = ::mmap(reinterpret_cast<void*>(page), n, PROT_READ,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (r == MAP_FAILED) break;  // cannot repair: die as we would have
    s.damaged.store(1, std::memory_order_release);
    return;
  }
  if (g_previous.sa_flags & SA_SIGINFO) {
    g_previous.sa_sigaction(sig, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
  } else {
    // Default action: restore it and return; the faulting instruction runs again and dies.
    ::signal(SIGBUS, SIG_DFL);
  }
}

void install_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_previous);
  });
}

int register_range(uintptr_t begin, uintptr_t end) {
  install_handler();
  for (int i = 0; i < kSlots; ++i) {
    uintptr_t expected = 0;
    if (g_slots[i].begin.load(std::memory_order_relaxed) != 0) continue;
    // Claim the slot with a placeholder begin (1: matches no address) until end is set.
    if (!g_slots[i].begin.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
    g_slots[i].damaged.store(0, std::memory_order_relaxed);
    g_slots[i].end.store(end, std::memory_order_release);
    g_slots[i].begin.store(begin, std::memory_order_release);
    return i;
  }
  return -1;
}

void unregister_range(int slot) {
  if (slot < 0) return;
  g_slots[slot].end.store(0, std::memory_order_release);
  g_slots[slot].begin.store(0, std::memory_order_release);
}

bool same_time(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

}  // namespace

FileMapping::FileMapping(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail("cannot open " + path + ": " + std::strerror(errno));
  if (::fstat(fd_, &at_map_) != 0 || !S_ISREG(at_map_.st_mode)) {
    ::close(fd_);
    fail("cannot open " + path + ": not a regular file");
  }
  size_ = static_cast<size_t>(at_map_.st_size);
  if (size_ == 0) return;
  map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
  if (map_ == MAP_FAILED) {
    const int e = errno;
    map_ = nullptr;
    ::close(fd_);
    fail("cannot map " + path + ": " + std::strerror(e));
  }
  const uintptr_t b = reinterpret_cast<uintptr_t>(map_);
  slot_ = register_range(b, b + size_);
}

FileMapping::~FileMapping() {
  unregister_range(slot_);
  if (map_) ::munmap(map_, size_);
  if (fd_ >= 0) ::close(fd_);
}

void FileMapping::check_intact() const {
  const bool damaged = slot_ >= 0 && g_slots[slot_].damaged.load(std::memory_order_acquire);
  struct stat now {};
  const bool stat_ok = ::fstat(fd_, &now) == 0;
  if (damaged || (stat_ok && now.st_size < at_map_.st_size))
    fail(path_ + " was truncated while in use (now " +
         (stat_ok ? std::to_string(now.st_size) : std::string("?")) + " bytes, was " +
         std::to_string(at_map_.st_size) +
         "): the results that read it are void; replace model files by renaming, not in place");
  if (stat_ok && (now.st_size != at_map_.st_size || !same_time(now.st_mtim, at_map_.st_mtim)))
    fail(path_ + " was changed while in use (size or modification time differ from when it was " +
         "opened): the results that read it are void; replace model files by renaming, not in "
         "place");
}

}  // namespace sdpal
