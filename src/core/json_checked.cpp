#include "core/json_checked.h"

#include <cmath>

#include "core/error.h"
#include "core/limits.h"

namespace sdpal::json_checked {

const ojson& member(const ojson& j, const std::string& key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) fail(where + ": missing \"" + key + "\"");
  return j.at(key);
}

const ojson& object_at(const ojson& j, const std::string& key, const std::string& where) {
  const auto& v = member(j, key, where);
  if (!v.is_object()) fail(where + ": \"" + key + "\" is not an object");
  return v;
}

double number(const ojson& v, const std::string& what) {
  if (!v.is_number()) fail(what + " is not a number");
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail(what + " is not finite");
  return d;
}

int64_t integer(const ojson& v, const std::string& what) {
  if (!v.is_number_integer()) fail(what + " is not an integer");
  return v.get<int64_t>();
}

int64_t integer_in(const ojson& v, int64_t lo, int64_t hi, const std::string& what) {
  const int64_t n = integer(v, what);
  check_bound(n, lo, hi, what);
  return n;
}

std::string text(const ojson& v, const std::string& what) {
  if (!v.is_string()) fail(what + " is not a string");
  return v.get<std::string>();
}

std::vector<double> psnr_list(const ojson& v, const std::string& what) {
  if (!v.is_array() || v.empty()) fail(what + " is not a non-empty list of PSNR values");
  std::vector<double> r;
  for (size_t i = 0; i < v.size(); ++i)
    r.push_back(number(v[i], what + "[" + std::to_string(i) + "]"));
  return r;
}

}  // namespace sdpal::json_checked
