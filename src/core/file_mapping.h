// A read-only memory mapping of a whole file that turns the file shrinking under it into an
// sdpal::Error instead of a SIGBUS.
//
// Weights are read straight from the mapping during generation (models/weights.h), so a model file
// truncated while sdpal runs (rewritten in place, a full disk on a shared folder) makes the next
// read of a page past the new end raise SIGBUS, which kills the process. Checking the size before
// each read cannot close that window and reading with pread() instead would cost the page cache
// sharing and the memory savings of the mapping. Instead, a process-wide SIGBUS handler (installed
// with the first mapping) looks the fault address up among the live mappings; when it lies in one,
// it maps zero pages over the rest of that mapping (mmap MAP_FIXED: a plain system call, safe in a
// signal handler), marks the mapping damaged and returns, so the faulting read sees zeros and the
// computation goes on to its next check. check_intact() (called after each generation, after
// compressing a file, after copying a tensor) then throws naming the file. A fault outside every
// mapping goes to the handler that was there before (or the default action). Nothing runs on the
// hot path: reads of an intact file cost what a plain mmap costs.
//
// check_intact() also compares the file's size and modification time with those at mapping
// time, so a file rewritten in place at the same size is reported too (its pages may already have
// been read in a mix of old and new contents). A file replaced by rename is not a change: the
// mapping keeps the old file.
#pragma once
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace sdpal {

class FileMapping {
 public:
  // Maps `path` read-only; throws sdpal::Error ("cannot open PATH: ...") on failure. A 0-byte file
  // gives an empty mapping (data() null).
  explicit FileMapping(const std::string& path);
  ~FileMapping();
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;

  const uint8_t* data() const { return static_cast<const uint8_t*>(map_); }
  size_t size() const { return size_; }
  // Throws "PATH was truncated or changed while in use (...)" if a read went past the file's end
  // or the file's size or modification time is not what it was when mapped.
  void check_intact() const;

 private:
  std::string path_;
  int fd_ = -1;
  void* map_ = nullptr;
  size_t size_ = 0;
  int slot_ = -1;  // in the fault handler's table; -1: not registered (table full, or empty file)
  struct stat at_map_ {};
};

}  // namespace sdpal
