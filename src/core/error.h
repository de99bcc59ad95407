// Error type used across sdpal: one line that names the problem and, where known, the file.
#pragma once
#include <stdexcept>
#include <string>

namespace sdpal {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }

#define SDPAL_CHECK(cond, msg)                    \
  do {                                            \
    if (!(cond)) ::sdpal::fail(std::string(msg)); \
  } while (0)

}  // namespace sdpal
