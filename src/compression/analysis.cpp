#include "compression/analysis.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/format.h"
#include "core/json_checked.h"
#include "core/json_file.h"
#include "core/limits.h"

namespace sdpal {

namespace {

using ojson = nlohmann::ordered_json;
using namespace json_checked;

// Recipes one analysis proposes (sdpal analyze --num-recipes): far more than a chart can show.
constexpr int64_t kMaxRecipes = 1000;
// Elements of a whole analysed model: the sum of the candidates' sizes must not overflow.
constexpr int64_t kMaxAnalysedElements = int64_t(1) << 50;

bool valid_recipe_bits(int b) { return b == 1 || b == 2 || b == 4 || b == 6 || b == 8 || b == 16; }

int nbits_key(const std::string& k, const std::string& what) {
  static const std::set<std::string> ok = {"1", "2", "4", "6", "8"};
  if (!ok.count(k)) fail(what + ": key \"" + k + "\" is not a palette bit width (1, 2, 4, 6, 8)");
  return std::stoi(k);
}

Recipe parse_recipe(const ojson& j, const std::string& what) {
  if (!j.is_object()) fail(what + " is not an object of {layer: bits}");
  Recipe r;
  for (const auto& [layer, bits] : j.items()) {
    if (layer.empty()) fail(what + ": empty layer name");
    // Read as int64: get<int>() of 4294967298 would wrap around to a valid 2.
    if (!bits.is_number_integer() || bits.get<int64_t>() < 0 || bits.get<int64_t>() > 16 ||
        !valid_recipe_bits(static_cast<int>(bits.get<int64_t>())))
      fail(what + ": layer '" + layer + "' has bits " + bits.dump() +
           ", not one of 1, 2, 4, 6, 8, 16");
    r[layer] = static_cast<int>(bits.get<int64_t>());
  }
  return r;
}

AnalysisStage parse_stage(const std::string& s, const std::string& what) {
  for (auto st : {AnalysisStage::SingleLayer, AnalysisStage::Cumulative, AnalysisStage::Recipes,
                  AnalysisStage::Done})
    if (s == stage_name(st)) return st;
  fail(what + ": unknown stage \"" + s + "\"");
}

}  // namespace

const char* stage_name(AnalysisStage s) {
  switch (s) {
    case AnalysisStage::SingleLayer:
      return "single_layer";
    case AnalysisStage::Cumulative:
      return "cumulative";
    case AnalysisStage::Recipes:
      return "recipes";
    case AnalysisStage::Done:
      break;
  }
  return "done";
}

// ---- settings ----

ojson AnalysisSettings::to_json() const {
  ojson j;
  j["format"] = kAnalysisFormat;
  j["prompts"] = prompts;
  j["seeds"] = seeds;
  j["steps"] = steps;
  j["width"] = width;
  j["height"] = height;
  j["cfg_scale"] = cfg_scale;
  j["sampler"] = sampler;
  j["timestep_spacing"] = timestep_spacing;
  j["nbits"] = nbits;
  j["min_elements"] = min_elements;
  j["granularity"] = group_size ? "per-grouped-channel" : "per-tensor";
  j["group_size"] = group_size;
  j["num_recipes"] = num_recipes;
  j["target_bits"] = target_bits ? ojson(*target_bits) : ojson(nullptr);
  j["target_psnr"] = target_psnr ? ojson(*target_psnr) : ojson(nullptr);
  j["psnr"] = "latents after the last step, per run; peak = max |test|; identical = 200";
  j["linear_8bit"] = "per output channel, asymmetric uint8 + zero point, every Linear/Conv weight";
  return j;
}

AnalysisSettings AnalysisSettings::from_json(const ojson& j, const std::string& where) {
  const std::string w = where + ": settings";
  if (!j.is_object()) fail(w + " is not an object");
  const std::string format = text(member(j, "format", w), w + ".format");
  if (format != kAnalysisFormat)
    fail(w + ".format is \"" + format + "\", this sdpal reads \"" + kAnalysisFormat + "\"");
  AnalysisSettings s;
  s.prompts.clear();
  const auto& pr = member(j, "prompts", w);
  if (!pr.is_array() || pr.empty()) fail(w + ".prompts is not a non-empty list");
  for (const auto& p : pr) s.prompts.push_back(text(p, w + ".prompts[]"));
  const auto& sd = member(j, "seeds", w);
  if (!sd.is_array() || sd.empty()) fail(w + ".seeds is not a non-empty list");
  s.seeds.clear();
  for (const auto& v : sd) {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
      fail(w + ".seeds holds " + v.dump() + ", not a seed");
    s.seeds.push_back(v.get<uint64_t>());
  }
  // Bounded before narrowing to int (2^32 + 1 steps must not become 1).
  s.steps = static_cast<int>(integer_in(member(j, "steps", w), 1, limits::kMaxSteps, w + ".steps"));
  s.width = static_cast<int>(
      integer_in(member(j, "width", w), 1, limits::kMaxImageSizePixels, w + ".width"));
  s.height = static_cast<int>(
      integer_in(member(j, "height", w), 1, limits::kMaxImageSizePixels, w + ".height"));
  s.cfg_scale = static_cast<float>(number(member(j, "cfg_scale", w), w + ".cfg_scale"));
  s.sampler = text(member(j, "sampler", w), w + ".sampler");
  s.timestep_spacing = text(member(j, "timestep_spacing", w), w + ".timestep_spacing");
  const auto& nb = member(j, "nbits", w);
  if (!nb.is_array() || nb.empty()) fail(w + ".nbits is not a non-empty list");
  s.nbits.clear();
  for (const auto& v : nb) s.nbits.push_back(nbits_key(v.dump(), w + ".nbits"));
  s.min_elements = integer(member(j, "min_elements", w), w + ".min_elements");
  s.group_size = integer(member(j, "group_size", w), w + ".group_size");
  s.num_recipes =
      static_cast<int>(integer_in(member(j, "num_recipes", w), 1, kMaxRecipes, w + ".num_recipes"));
  if (j.contains("target_bits") && !j["target_bits"].is_null())
    s.target_bits = number(j["target_bits"], w + ".target_bits");
  if (j.contains("target_psnr") && !j["target_psnr"].is_null())
    s.target_psnr = number(j["target_psnr"], w + ".target_psnr");
  if (s.steps < 1 || s.width < 1 || s.height < 1 || s.group_size < 0 || s.min_elements < 0 ||
      s.num_recipes < 1)
    fail(w + " has out-of-range values (steps, size, group size, min_elements, num_recipes)");
  return s;
}

std::string AnalysisSettings::difference(const AnalysisSettings& a, const AnalysisSettings& b,
                                         bool recipe_settings_too) {
  const ojson ja = a.to_json(), jb = b.to_json();
  for (const auto& [k, v] : ja.items())
    if (!recipe_settings_too && (k == "num_recipes" || k == "target_bits" || k == "target_psnr"))
      continue;
    else if (!jb.contains(k) || jb[k] != v)
      return k + ": " + v.dump() + " vs " + (jb.contains(k) ? jb[k].dump() : "(absent)");
  return "";
}

// ---- helpers ----

double mean_psnr(const std::vector<double>& per_run) {
  if (per_run.empty()) return 0;
  double s = 0;
  for (double v : per_run) s += v;
  return s / per_run.size();
}

double recorded_psnr(double db) {
  if (std::isnan(db)) fail("internal: PSNR is NaN (the outputs are not finite)");
  db = std::min(db, kMaxRecordedPsnr);
  return std::round(db * 100.0) / 100.0;
}

std::string recipe_name(double average_bits) {
  return "recipe_" + fixed(average_bits, 2) + "_bit_mixedpalette";
}

double recipe_average_bits(const Analysis& a, const Recipe& r) {
  double bits = 0, elements = 0;
  for (const auto& c : a.model.candidates) {
    auto it = r.find(c.name);
    bits += double(it == r.end() ? 16 : it->second) * c.elements;
    elements += c.elements;
  }
  return elements ? bits / elements : 16.0;
}

// ---- Analysis ----

const Recipe* Analysis::find_recipe(const std::string& name) const {
  for (const auto& [n, r] : recipes)
    if (n == name) return &r;
  return nullptr;
}

int64_t Analysis::elements_of(const std::string& layer) const {
  for (const auto& c : model.candidates)
    if (c.name == layer) return c.elements;
  fail("unknown layer '" + layer + "'");
}

std::vector<int> Analysis::nbits() const {
  if (settings) return settings->nbits;
  std::vector<int> r;
  for (const auto& [n, v] : cumulative) r.push_back(n);
  return r;
}

bool Analysis::single_layer_complete(int n) const {
  auto it = single_layer.find(n);
  return it != single_layer.end() && it->second.size() == model.candidates.size();
}

bool Analysis::cumulative_complete(int n) const {
  auto it = cumulative.find(n);
  return it != cumulative.end() && it->second.size() == model.candidates.size();
}

AnalysisStage Analysis::stage() const {
  if (!original || !linear_8bit) return AnalysisStage::SingleLayer;
  for (int n : nbits())
    if (!single_layer_complete(n)) return AnalysisStage::SingleLayer;
  for (int n : nbits())
    if (!cumulative_complete(n)) return AnalysisStage::Cumulative;
  // Recipes: the stage is finished by analyze (it knows how many to expect); a document with
  // any recipe and every requested target counts as done.
  if (recipes.empty()) return AnalysisStage::Recipes;
  if (settings && settings->target_bits && (!target_bits || target_bits->recipe.empty()))
    return AnalysisStage::Recipes;
  if (settings && settings->target_psnr && (!target_psnr || target_psnr->recipe.empty()))
    return AnalysisStage::Recipes;
  return AnalysisStage::Done;
}

ojson Analysis::to_json() const {
  ojson j;
  j["model_version"] = model_version;
  if (settings) j["settings"] = settings->to_json();
  ojson m;
  m["unet_parameters"] = model.unet_parameters;
  m["fingerprint"] = model.fingerprint;
  ojson cands = ojson::object();
  for (const auto& c : model.candidates) cands[c.name] = c.elements;
  m["candidates"] = cands;
  j["model"] = m;

  ojson base = ojson::object();
  if (original) base["original"] = *original;
  if (linear_8bit) base["linear_8bit"] = *linear_8bit;
  for (int n : nbits())
    if (cumulative_complete(n))
      base["palettize_" + std::to_string(n) + "bit"] =
          recorded_psnr(mean_psnr(cumulative.at(n).at(cumulative_order.at(n).back())));
  for (const auto& [name, r] : recipes) {
    auto it = recipe_psnr.find(name);
    if (it != recipe_psnr.end()) base[name] = it->second;
  }
  j["baselines"] = base;

  auto metadata = [&](int n, bool cum) {
    ojson md;
    md["nbits"] = n;
    if (group_size_for_metadata() == 0) {
      md["out_ngroups"] = 1;
      md["in_ngroups"] = 1;
    } else {
      md["group_size"] = group_size_for_metadata();
    }
    md["cumulative"] = cum;
    return md;
  };
  ojson single = ojson::object();
  for (const auto& [n, layers] : single_layer) {
    ojson s;
    s["metadata"] = metadata(n, false);
    for (const auto& c : model.candidates) {
      auto it = layers.find(c.name);
      if (it != layers.end()) s[c.name] = it->second;
    }
    single[std::to_string(n)] = s;
  }
  j["single_layer"] = single;
  ojson cum = ojson::object();
  for (const auto& [n, order] : cumulative_order) {
    ojson c;
    ojson md = metadata(n, true);
    md["candidates"] = order;
    std::vector<int64_t> sizes;
    for (const auto& l : order) sizes.push_back(elements_of(l));
    md["sizes"] = sizes;
    c["metadata"] = md;
    auto it = cumulative.find(n);
    if (it != cumulative.end())
      for (const auto& l : order) {
        auto v = it->second.find(l);
        if (v != it->second.end()) c[l] = v->second;
      }
    cum[std::to_string(n)] = c;
  }
  j["cumulative"] = cum;
  ojson rec = ojson::object();
  for (const auto& [name, r] : recipes) {
    ojson o = ojson::object();
    for (const auto& c : model.candidates) {
      auto it = r.find(c.name);
      if (it != r.end()) o[c.name] = it->second;
    }
    for (const auto& [l, b] : r)
      if (!o.contains(l)) o[l] = b;  // Apple's files may name non-candidates
    rec[name] = o;
  }
  j["recipes"] = rec;
  if (target_bits || target_psnr) {
    ojson t;
    auto one = [](const TargetResult& r) {
      ojson o;
      o["target"] = r.target;
      o["recipe"] = r.recipe;
      if (!r.probes.empty()) {
        ojson p = ojson::object();
        for (const auto& [k, v] : r.probes) p[k] = v;
        o["probes"] = p;
      }
      return o;
    };
    if (target_bits) t["bits"] = one(*target_bits);
    if (target_psnr) t["psnr"] = one(*target_psnr);
    j["targets"] = t;
  }
  if (shard) {
    ojson s;
    s["index"] = shard->index;
    s["count"] = shard->count;
    s["stage"] = stage_name(shard->stage);
    j["shard"] = s;
  }
  return j;
}

Analysis Analysis::from_json(const ojson& j, const std::string& where, bool require_settings) {
  if (!j.is_object()) fail(where + ": not a JSON object (expected an analysis document)");
  Analysis a;
  if (j.contains("model_version"))
    a.model_version = text(j["model_version"], where + ".model_version");
  if (require_settings || j.contains("settings"))
    a.settings = AnalysisSettings::from_json(member(j, "settings", where), where);

  // Candidates: sdpal's "model" block, else (Apple's files) the cumulative metadata.
  std::set<std::string> known;
  if (require_settings || j.contains("model")) {
    const auto& m = object_at(j, "model", where);
    a.model.unet_parameters = integer_in(member(m, "unet_parameters", where + ".model"), 0,
                                         kMaxAnalysedElements, where + ".model.unet_parameters");
    a.model.fingerprint =
        text(member(m, "fingerprint", where + ".model"), where + ".model.fingerprint");
    const auto& c = object_at(m, "candidates", where + ".model");
    for (const auto& [name, n] : c.items()) {
      const int64_t e = integer(n, where + ".model.candidates." + name);
      if (e <= 0 || e > limits::kMaxTensorElements)
        fail(where + ".model.candidates." + name + " has " + std::to_string(e) +
             " elements (bound: 1.." + std::to_string(limits::kMaxTensorElements) + ")");
      a.model.candidates.push_back({name, e});
      known.insert(name);
    }
    if (a.model.candidates.empty()) fail(where + ": model.candidates is empty");
  }
  const auto& cum = j.contains("cumulative") ? object_at(j, "cumulative", where) : ojson::object();
  if (a.model.candidates.empty()) {
    for (const auto& [k, v] : cum.items()) {
      const std::string w = where + ": cumulative." + k + ".metadata";
      const auto& md = object_at(v, "metadata", where + ": cumulative." + k);
      const auto& names = member(md, "candidates", w);
      const auto& sizes = member(md, "sizes", w);
      if (!names.is_array() || !sizes.is_array() || names.size() != sizes.size() || names.empty())
        fail(w + ": candidates and sizes are not lists of the same length");
      for (size_t i = 0; i < names.size(); ++i) {
        a.model.candidates.push_back(
            {text(names[i], w + ".candidates[]"),
             integer_in(sizes[i], 1, limits::kMaxTensorElements, w + ".sizes[]")});
        known.insert(a.model.candidates.back().name);
      }
      break;
    }
    if (a.model.candidates.empty())
      fail(where + ": no candidate layers (neither model.candidates nor cumulative metadata)");
  }

  // Per-run lists must all have the same length (the settings' number of runs when known).
  size_t runs = a.settings ? a.settings->runs() : 0;
  auto check_runs = [&](const std::vector<double>& v, const std::string& what) {
    if (runs == 0) runs = v.size();
    if (v.size() != runs)
      fail(what + " has " + std::to_string(v.size()) + " values, expected " + std::to_string(runs) +
           " (one per prompt and seed)");
  };
  auto check_layer = [&](const std::string& l, const std::string& what) {
    if (!known.count(l)) fail(what + ": '" + l + "' is not a candidate layer of this analysis");
  };
  std::set<int> allowed;
  if (a.settings) allowed.insert(a.settings->nbits.begin(), a.settings->nbits.end());

  if (j.contains("single_layer"))
    for (const auto& [k, v] : object_at(j, "single_layer", where).items()) {
      const std::string w = where + ": single_layer." + k;
      const int n = nbits_key(k, where + ": single_layer");
      if (a.settings && !allowed.count(n)) fail(w + " is not one of the settings' nbits");
      if (!v.is_object()) fail(w + " is not an object");
      auto& dst = a.single_layer[n];
      for (const auto& [l, vals] : v.items()) {
        if (l == "metadata") continue;
        check_layer(l, w);
        dst[l] = psnr_list(vals, w + "." + l);
        check_runs(dst[l], w + "." + l);
      }
    }
  for (const auto& [k, v] : cum.items()) {
    const std::string w = where + ": cumulative." + k;
    const int n = nbits_key(k, where + ": cumulative");
    if (a.settings && !allowed.count(n)) fail(w + " is not one of the settings' nbits");
    const auto& md = object_at(v, "metadata", w);
    const auto& names = member(md, "candidates", w + ".metadata");
    if (!names.is_array()) fail(w + ".metadata.candidates is not a list");
    std::vector<std::string> order;
    std::set<std::string> seen;
    for (const auto& x : names) {
      order.push_back(text(x, w + ".metadata.candidates[]"));
      check_layer(order.back(), w + ".metadata.candidates");
      if (!seen.insert(order.back()).second)
        fail(w + ".metadata.candidates names '" + order.back() + "' twice");
    }
    if (order.size() != a.model.candidates.size())
      fail(w + ".metadata.candidates lists " + std::to_string(order.size()) + " layers, not the " +
           std::to_string(a.model.candidates.size()) + " candidates");
    if (md.contains("sizes")) {
      const auto& sizes = md["sizes"];
      if (!sizes.is_array() || sizes.size() != order.size())
        fail(w + ".metadata.sizes does not match its candidates");
      for (size_t i = 0; i < order.size(); ++i)
        if (integer(sizes[i], w + ".metadata.sizes[]") != a.elements_of(order[i]))
          fail(w + ".metadata.sizes[" + std::to_string(i) + "] is not the size of '" + order[i] +
               "'");
    }
    a.cumulative_order[n] = order;
    auto& dst = a.cumulative[n];
    for (const auto& [l, vals] : v.items()) {
      if (l == "metadata") continue;
      if (!seen.count(l)) fail(w + ": '" + l + "' is not in its metadata.candidates");
      dst[l] = psnr_list(vals, w + "." + l);
      check_runs(dst[l], w + "." + l);
    }
    if (dst.empty()) a.cumulative.erase(n);
  }

  if (j.contains("baselines")) {
    const auto& b = object_at(j, "baselines", where);
    if (b.contains("original")) a.original = number(b["original"], where + ": baselines.original");
    if (b.contains("linear_8bit"))
      a.linear_8bit = number(b["linear_8bit"], where + ": baselines.linear_8bit");
  }
  if (j.contains("recipes"))
    for (const auto& [name, r] : object_at(j, "recipes", where).items()) {
      const std::string w = where + ": recipes." + name;
      Recipe rec = parse_recipe(r, w);
      if (a.settings)
        for (const auto& [l, bits] : rec) check_layer(l, w);
      a.recipes.emplace_back(name, std::move(rec));
      const auto& b = j.contains("baselines") ? j["baselines"] : ojson::object();
      if (b.contains(name))
        a.recipe_psnr[name] = number(b[name], where + ": baselines." + name);
      else if (require_settings)
        fail(w + " has no achieved PSNR in baselines");
    }
  if (j.contains("targets")) {
    const auto& t = object_at(j, "targets", where);
    auto one = [&](const char* key) {
      const std::string w = where + ": targets." + key;
      const auto& o = object_at(t, key, where + ": targets");
      TargetResult r;
      r.target = number(member(o, "target", w), w + ".target");
      r.recipe = text(member(o, "recipe", w), w + ".recipe");
      if (!r.recipe.empty() && !a.find_recipe(r.recipe))
        fail(w + ".recipe names '" + r.recipe + "', which is not in recipes");
      if (o.contains("probes"))
        for (const auto& [k, v] : object_at(o, "probes", w).items())
          r.probes[k] = number(v, w + ".probes." + k);
      return r;
    };
    if (t.contains("bits")) a.target_bits = one("bits");
    if (t.contains("psnr")) a.target_psnr = one("psnr");
  }
  if (j.contains("shard")) {
    const auto& s = object_at(j, "shard", where);
    ShardInfo si;
    si.index =
        static_cast<int>(integer(member(s, "index", where + ".shard"), where + ".shard.index"));
    si.count =
        static_cast<int>(integer(member(s, "count", where + ".shard"), where + ".shard.count"));
    si.stage = parse_stage(text(member(s, "stage", where + ".shard"), where + ".shard.stage"),
                           where + ".shard");
    if (si.count < 1 || si.index < 0 || si.index >= si.count)
      fail(where + ": shard " + std::to_string(si.index) + "/" + std::to_string(si.count) +
           " is not a valid shard");
    a.shard = si;
  }
  // Cumulative values only make sense in the order of complete single-layer results.
  if (a.settings)
    for (const auto& [n, order] : a.cumulative_order)
      if (!a.single_layer_complete(n))
        fail(where + ": cumulative." + std::to_string(n) + " exists but single_layer." +
             std::to_string(n) + " is incomplete");
  return a;
}

int64_t Analysis::group_size_for_metadata() const { return settings ? settings->group_size : 0; }

Analysis read_analysis(const std::string& path, bool require_settings) {
  const ojson j = read_json_document(path, "analysis");
  return Analysis::from_json(j, path, require_settings);
}

void write_analysis(const std::string& path, const Analysis& a) {
  write_json_document(path, a.to_json());
}

}  // namespace sdpal
