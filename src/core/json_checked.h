// Checked accessors for JSON documents of our own: each error names where the value is (file and
// key path) and what it should have been, instead of nlohmann's type_error from deep inside.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sdpal::json_checked {

using ojson = nlohmann::ordered_json;

// j[key]; "where: missing "key"" if j is no object or lacks it.
const ojson& member(const ojson& j, const std::string& key, const std::string& where);
// j[key], which must be an object.
const ojson& object_at(const ojson& j, const std::string& key, const std::string& where);
// A finite number / an integer / a string; `what` names the value in the error.
double number(const ojson& v, const std::string& what);
int64_t integer(const ojson& v, const std::string& what);
// An integer in [lo, hi] ("what V is out of range [lo, hi]"); a float such as 1e30 is refused
// rather than converted (undefined behaviour for values outside int's range).
int64_t integer_in(const ojson& v, int64_t lo, int64_t hi, const std::string& what);
std::string text(const ojson& v, const std::string& what);
// A non-empty list of finite numbers (PSNR values in dB).
std::vector<double> psnr_list(const ojson& v, const std::string& what);

}  // namespace sdpal::json_checked
