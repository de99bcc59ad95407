#include "compression/recipe.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/format.h"
#include "core/json_file.h"
#include "core/limits.h"

namespace sdpal {

namespace {

// Mean cumulative PSNR of every (nbits, layer).
std::map<int, std::map<std::string, double>> cumulative_means(const Analysis& a) {
  std::map<int, std::map<std::string, double>> r;
  for (int n : a.nbits()) {
    SDPAL_CHECK(a.cumulative_complete(n), "recipes need the complete cumulative curve of " +
                                              std::to_string(n) + "-bit palettization");
    for (const auto& [layer, v] : a.cumulative.at(n)) r[n][layer] = mean_psnr(v);
  }
  return r;
}

std::string available(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "(none)" : s;
}

bool valid_bits(int b) { return b == 1 || b == 2 || b == 4 || b == 6 || b == 8 || b == 16; }

Recipe parse_bits_object(const nlohmann::json& j, const std::string& what) {
  if (!j.is_object() || j.empty()) fail(what + " is not a non-empty object of {layer: bits}");
  Recipe r;
  for (const auto& [layer, bits] : j.items()) {
    if (layer.empty()) fail(what + ": empty layer name");
    // Read as int64: get<int>() of 4294967298 would wrap around to a valid 2.
    if (!bits.is_number_integer() || bits.get<int64_t>() < 0 || bits.get<int64_t>() > 16 ||
        !valid_bits(static_cast<int>(bits.get<int64_t>())))
      fail(what + ": layer '" + layer + "' has bits " + bits.dump() +
           ", not one of 1, 2, 4, 6, 8, 16");
    r[layer] = static_cast<int>(bits.get<int64_t>());
  }
  return r;
}

}  // namespace

Recipe build_recipe(const Analysis& a, double threshold) {
  const auto means = cumulative_means(a);
  std::vector<int> nbits = a.nbits();
  std::sort(nbits.begin(), nbits.end());
  Recipe r;
  for (const auto& c : a.model.candidates) {
    int chosen = 16;
    for (int n : nbits)
      if (means.at(n).at(c.name) > threshold) {
        chosen = n;
        break;
      }
    r[c.name] = chosen;
  }
  return r;
}

std::vector<double> recipe_thresholds(const Analysis& a, int count) {
  SDPAL_CHECK(a.original && a.linear_8bit, "recipes need the original and linear 8-bit baselines");
  SDPAL_CHECK(count >= 1, "the number of recipes must be at least 1");
  // The top: the original, or uniform palettization at the most bits analysed if that is lower.
  const int most = a.nbits().back();
  SDPAL_CHECK(a.cumulative_complete(most), "recipes need the complete cumulative curve of " +
                                               std::to_string(most) + "-bit palettization");
  const double uniform =
      recorded_psnr(mean_psnr(a.cumulative.at(most).at(a.cumulative_order.at(most).back())));
  const double start = std::min(*a.original, uniform) - 1.0, stop = *a.linear_8bit + 5.0;
  std::vector<double> t;
  if (count == 1) return {start};
  for (int i = 0; i < count; ++i) t.push_back(start + (stop - start) * i / (count - 1));
  t.back() = stop;
  return t;
}

std::vector<double> distinct_thresholds(const Analysis& a) {
  std::vector<double> t{-std::numeric_limits<double>::infinity()};
  for (const auto& [n, layers] : cumulative_means(a))
    for (const auto& [l, m] : layers) t.push_back(m);
  std::sort(t.begin(), t.end());
  t.erase(std::unique(t.begin(), t.end()), t.end());
  return t;
}

double threshold_for_bits(const Analysis& a, double bits) {
  const auto t = distinct_thresholds(a);
  // Average bits rise with the threshold: the last one that fits wins.
  for (size_t i = t.size(); i-- > 0;)
    if (recipe_average_bits(a, build_recipe(a, t[i])) <= bits + 1e-9) return t[i];
  fail("--target-bits " + std::to_string(bits) + " is below the smallest recipe (" +
       fixed(recipe_average_bits(a, build_recipe(a, t.front()))) +
       " bits per weight, every layer at the fewest bits analysed)");
}

RecipeChoice load_recipe_file(const std::string& path, const std::string& name) {
  const std::string text = read_text_file(path, limits::kMaxJsonFileBytes, "recipe");
  // Every parser exception (out_of_range for 1e400 too) is reported naming the file.
  const nlohmann::json j = parse_json_text(text, path + " (corrupted recipe or analysis file?)");
  if (!j.is_object()) fail(path + ": not a JSON object (expected an analysis or {layer: bits})");
  RecipeChoice c;
  if (!j.contains("recipes")) {
    if (!name.empty())
      fail(path + " is a plain {layer: bits} recipe without names; drop --recipe-name " + name);
    c.recipe = parse_bits_object(j, path);
    return c;
  }
  const auto& recipes = j["recipes"];
  if (!recipes.is_object()) fail(path + ": \"recipes\" is not an object");
  std::vector<std::string> names;
  for (const auto& [k, v] : recipes.items()) names.push_back(k);
  if (name.empty()) {
    if (names.size() != 1)
      fail(path + " holds " + std::to_string(names.size()) +
           " recipes; choose one with --recipe-name: " + available(names));
    c.name = names[0];
  } else {
    if (!recipes.contains(name))
      fail(path + " has no recipe '" + name + "'; available: " + available(names));
    c.name = name;
  }
  c.recipe = parse_bits_object(recipes[c.name], path + ": recipes." + c.name);
  if (j.contains("settings") && j["settings"].is_object() && j["settings"].contains("group_size")) {
    const auto& g = j["settings"]["group_size"];
    if (!g.is_number_integer() || g.get<int64_t>() < 0)
      fail(path + ": settings.group_size is not a non-negative integer");
    c.group_size = g.get<int64_t>();
    c.group_size_known = true;
  }
  return c;
}

}  // namespace sdpal
