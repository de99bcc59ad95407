// Number formatting for messages and reports.
#pragma once
#include <cstdio>
#include <string>

namespace sdpal {

// v with a fixed number of decimals ("%.*f"): "31.25".
inline std::string fixed(double v, int decimals = 2) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

}  // namespace sdpal
