#include "models/config.h"

#include <fstream>

#include "core/error.h"
#include "core/json_file.h"
#include "core/limits.h"

namespace sdpal {

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_text_file(path, limits::kMaxJsonFileBytes, "config");
  check_json_depth(text, path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, out_of_range (1e400), ...
    fail(path + ": invalid JSON (" + e.what() + ")");
  }
}

namespace {
const nlohmann::json* lookup(const nlohmann::json& c, const std::string& key) {
  auto it = c.find(key);
  return (it == c.end() || it->is_null()) ? nullptr : &*it;
}
[[noreturn]] void bad(const std::string& where, const std::string& key, const std::string& want) {
  fail(where + ": config key '" + key + "' " + want);
}
// Config integers (channels, layers, heads, sizes) are bounded, so that the arithmetic on them
// (4 * block_out_channels[0], channel products of weight shapes) cannot overflow.
int64_t bounded(const nlohmann::json& v, const std::string& where, const std::string& key) {
  const int64_t n = v.get<int64_t>();
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(limits::kMaxConfigInt))
    bad(where, key,
        "value " + v.dump() + " is beyond the bound " + std::to_string(limits::kMaxConfigInt));
  if (n < -limits::kMaxConfigInt || n > limits::kMaxConfigInt)
    bad(where, key,
        "value " + v.dump() + " is beyond the bound +-" + std::to_string(limits::kMaxConfigInt));
  return n;
}
}  // namespace

int64_t cfg_int(const nlohmann::json& c, const std::string& key, const std::string& where) {
  const auto* v = lookup(c, key);
  if (!v) bad(where, key, "is missing");
  if (!v->is_number_integer()) bad(where, key, "must be an integer, got " + v->dump());
  return bounded(*v, where, key);
}

int64_t cfg_int(const nlohmann::json& c, const std::string& key, int64_t def,
                const std::string& where) {
  return lookup(c, key) ? cfg_int(c, key, where) : def;
}

double cfg_num(const nlohmann::json& c, const std::string& key, double def,
               const std::string& where) {
  const auto* v = lookup(c, key);
  if (!v) return def;
  if (!v->is_number()) bad(where, key, "must be a number, got " + v->dump());
  return v->get<double>();
}

bool cfg_bool(const nlohmann::json& c, const std::string& key, bool def, const std::string& where) {
  const auto* v = lookup(c, key);
  if (!v) return def;
  if (!v->is_boolean()) bad(where, key, "must be true or false, got " + v->dump());
  return v->get<bool>();
}

std::string cfg_str(const nlohmann::json& c, const std::string& key, const std::string& def,
                    const std::string& where) {
  const auto* v = lookup(c, key);
  if (!v) return def;
  if (!v->is_string()) bad(where, key, "must be a string, got " + v->dump());
  return v->get<std::string>();
}

std::vector<int64_t> cfg_int_list(const nlohmann::json& c, const std::string& key,
                                  const std::string& where) {
  const auto* v = lookup(c, key);
  if (!v) bad(where, key, "is missing");
  if (!v->is_array()) bad(where, key, "must be a list, got " + v->dump());
  std::vector<int64_t> r;
  for (const auto& e : *v) {
    if (!e.is_number_integer()) bad(where, key, "must hold integers, got " + v->dump());
    r.push_back(bounded(e, where, key));
  }
  return r;
}

std::vector<std::string> cfg_str_list(const nlohmann::json& c, const std::string& key,
                                      const std::string& where) {
  const auto* v = lookup(c, key);
  if (!v) bad(where, key, "is missing");
  if (!v->is_array()) bad(where, key, "must be a list, got " + v->dump());
  std::vector<std::string> r;
  for (const auto& e : *v) {
    if (!e.is_string()) bad(where, key, "must hold strings, got " + v->dump());
    r.push_back(e.get<std::string>());
  }
  return r;
}

std::vector<int64_t> cfg_int_or_list(const nlohmann::json& c, const std::string& key, size_t n,
                                     int64_t def, const std::string& where) {
  const auto* v = lookup(c, key);
  if (!v) return std::vector<int64_t>(n, def);
  if (v->is_number_integer()) return std::vector<int64_t>(n, bounded(*v, where, key));
  std::vector<int64_t> r = cfg_int_list(c, key, where);
  if (r.size() != n)
    bad(where, key, "has " + std::to_string(r.size()) + " entries, expected " + std::to_string(n));
  return r;
}

}  // namespace sdpal
