#include "core/limits.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

#include "core/error.h"

namespace sdpal {

namespace {
// The shortest text that reads back as v (1e+30, not 1.0000000000000001e+30).
std::string number_text(double v) {
  std::string text;
  for (int digits = 6; digits <= 17; ++digits) {
    std::ostringstream s;
    s.precision(digits);
    s << v;
    text = s.str();
    if (std::strtod(text.c_str(), nullptr) == v) break;
  }
  return text;
}
}  // namespace

int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    fail(what + ": " + std::to_string(a) + " x " + std::to_string(b) +
         " is negative or overflows 64 bits");
  return r;
}

int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r))
    fail(what + ": " + std::to_string(a) + " + " + std::to_string(b) +
         " is negative or overflows 64 bits");
  return r;
}

uint64_t checked_mul_u64(uint64_t a, uint64_t b, const std::string& what) {
  uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    fail(what + ": " + std::to_string(a) + " x " + std::to_string(b) + " overflows 64 bits");
  return r;
}

uint64_t checked_add_u64(uint64_t a, uint64_t b, const std::string& what) {
  uint64_t r = 0;
  if (__builtin_add_overflow(a, b, &r))
    fail(what + ": " + std::to_string(a) + " + " + std::to_string(b) + " overflows 64 bits");
  return r;
}

int64_t checked_numel(const std::vector<int64_t>& dims, int64_t max_elements,
                      const std::string& what) {
  std::string shape = "[";
  for (size_t i = 0; i < dims.size(); ++i) shape += (i ? ", " : "") + std::to_string(dims[i]);
  shape += "]";
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) fail(what + ": shape " + shape + " has a negative dimension");
    if (d != 0 && n > max_elements / d)
      fail(what + ": shape " + shape + " has more than " + std::to_string(max_elements) +
           " elements");
    n *= d;
  }
  if (n > max_elements)
    fail(what + ": shape " + shape + " has more than " + std::to_string(max_elements) +
         " elements");
  return n;
}

void check_bound(int64_t value, int64_t lo, int64_t hi, const std::string& what) {
  if (value < lo || value > hi)
    fail(what + " " + std::to_string(value) + " is out of range [" + std::to_string(lo) + ", " +
         std::to_string(hi) + "]");
}

int64_t integral_in_range(double value, int64_t lo, int64_t hi, const std::string& what) {
  // Compared as doubles first: casting a double outside int64's range is undefined.
  if (hi > (int64_t(1) << 53) || lo < -(int64_t(1) << 53))
    fail("internal: integral_in_range bound beyond 2^53 for " + what);
  if (!std::isfinite(value) || value < static_cast<double>(lo) || value > static_cast<double>(hi) ||
      value != std::floor(value))
    fail(what + " " + number_text(value) + " is not an integer in [" + std::to_string(lo) + ", " +
         std::to_string(hi) + "]");
  return static_cast<int64_t>(value);
}

}  // namespace sdpal
