// Shared helpers of the libFuzzer harnesses (tests/fuzz/fuzz_*.cpp): invariant checks that abort
// (so libFuzzer saves the input), a per-process scratch folder for parsers that read files, and
// the rule for which exceptions are expected.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

#include "core/error.h"

// LeakSanitizer: fontconfig (under cairo's text, fuzz_analysis's chart) keeps its caches for the
// life of the process by design; they are not leaks of ours. (Each harness includes this header
// once, so the hook is defined once per executable; the plain replay build never calls it.)
extern "C" const char* __lsan_default_suppressions() { return "leak:libfontconfig.so\n"; }

namespace sdpal::fuzz {

// An invariant of the parser under test: on violation print what and abort (a finding).
#define FUZZ_CHECK(cond, msg)                                                                \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "fuzz invariant violated at %s:%d: %s: %s\n", __FILE__, __LINE__, \
                   #cond, std::string(msg).c_str());                                         \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

// A folder of this process's own under the system temp folder, removed when the process exits
// normally (libFuzzer runs many inputs per process: files are overwritten, not accumulated).
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sdpal-fuzz-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      std::perror("sdpal fuzz: mkdtemp");
      std::abort();
    }
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Writes `bytes` to <scratch>/<name> (creating folders) and returns the path.
  std::string write(const std::string& name, std::string_view bytes) const {
    std::filesystem::path p = path_ / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.close();
    if (!f) {
      std::fprintf(stderr, "sdpal fuzz: cannot write %s\n", p.c_str());
      std::abort();
    }
    return p.string();
  }
  // Empties the folder (between inputs that write several files).
  void clear() const {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(path_, ec))
      std::filesystem::remove_all(e.path(), ec);
  }

 private:
  std::filesystem::path path_;
};

// The process's scratch folder (made on first use).
inline const ScratchDir& scratch() {
  static ScratchDir dir;
  return dir;
}

// An input rejected with sdpal::Error (expected). SDPAL_FUZZ_SHOW_ERRORS=1 prints the message:
// to check that seeds are accepted and what the rejections say.
inline void rejected(const std::exception& e) {
  static const bool show = std::getenv("SDPAL_FUZZ_SHOW_ERRORS") != nullptr;
  if (show) std::fprintf(stderr, "rejected: %s\n", e.what());
}

// Runs `f`, a step that must succeed on what the parser accepted (re-reading its own output):
// an sdpal::Error there is an invariant violation, not a rejection.
template <typename F>
auto must_succeed(F&& f, const char* what) {
  try {
    return f();
  } catch (const Error& e) {
    std::fprintf(stderr, "fuzz invariant violated: %s failed: %s\n", what, e.what());
    std::abort();
  }
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits the input at the first occurrence of `sep` (a harness feeding several files): the part
// before it and the rest (empty when absent).
inline std::pair<std::string_view, std::string_view> split_at(std::string_view s,
                                                              std::string_view sep) {
  size_t at = s.find(sep);
  if (at == std::string_view::npos) return {s, {}};
  return {s.substr(0, at), s.substr(at + sep.size())};
}

}  // namespace sdpal::fuzz

// Runs `body`; sdpal::Error is the parsers' documented way to reject input and is expected. Any
// other exception escapes (std::terminate: a finding), as an exception that does not name the
// file is one.
#define FUZZ_EXPECT_ERRORS(...)         \
  do {                                  \
    try {                               \
      __VA_ARGS__;                      \
    } catch (const ::sdpal::Error& e) { \
      ::sdpal::fuzz::rejected(e);       \
    }                                   \
  } while (0)

namespace sdpal::fuzz {

// Reads typed values off the front of the input (like libFuzzer's FuzzedDataProvider, which the
// plain replay build without clang does not have); zeros once the bytes run out.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  template <typename T>
  T take() {
    T v{};
    const size_t k = std::min(sizeof(T), n_);
    std::memcpy(&v, p_, k);
    p_ += k;
    n_ -= k;
    return v;
  }
  // Up to `max` bytes (fewer when the input ends first).
  std::string take_string(size_t max) {
    const size_t k = std::min<size_t>(max, n_);
    std::string s(reinterpret_cast<const char*>(p_), k);
    p_ += k;
    n_ -= k;
    return s;
  }
  std::string rest() { return take_string(n_); }
  size_t left() const { return n_; }

 private:
  const uint8_t* p_;
  size_t n_;
};

}  // namespace sdpal::fuzz
