// Reading diffusers/transformers config.json files with clear errors.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sdpal {

nlohmann::json read_json_file(const std::string& path);  // throws naming the file

// Typed accessors: `key` must exist (unless a default is given) and have the right type.
int64_t cfg_int(const nlohmann::json& c, const std::string& key, const std::string& where);
int64_t cfg_int(const nlohmann::json& c, const std::string& key, int64_t def,
                const std::string& where);
double cfg_num(const nlohmann::json& c, const std::string& key, double def,
               const std::string& where);
bool cfg_bool(const nlohmann::json& c, const std::string& key, bool def, const std::string& where);
std::string cfg_str(const nlohmann::json& c, const std::string& key, const std::string& def,
                    const std::string& where);
std::vector<int64_t> cfg_int_list(const nlohmann::json& c, const std::string& key,
                                  const std::string& where);
std::vector<std::string> cfg_str_list(const nlohmann::json& c, const std::string& key,
                                      const std::string& where);
// An int or a list of ints (e.g. attention_head_dim): expanded to n entries.
std::vector<int64_t> cfg_int_or_list(const nlohmann::json& c, const std::string& key, size_t n,
                                     int64_t def, const std::string& where);

}  // namespace sdpal
