#include "compression/int8_analysis.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "compression/analysis.h"
#include "compression/analyze.h"
#include "compression/quality.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/format.h"
#include "core/json_checked.h"
#include "core/json_file.h"
#include "core/limits.h"
#include "models/unet.h"
#include "pipeline/generate.h"

namespace fs = std::filesystem;

namespace sdpal {

namespace {

using ojson = nlohmann::ordered_json;
using namespace json_checked;

// Shards of one int8 analysis (one per machine or process): far more than anyone runs.
constexpr int64_t kMaxShards = 1 << 16;

ojson settings_json(const Int8AnalysisSettings& s) {
  ojson j;
  j["prompts"] = s.prompts;
  j["seeds"] = s.seeds;
  j["steps"] = s.steps;
  j["width"] = s.width;
  j["height"] = s.height;
  j["cfg_scale"] = s.cfg_scale;
  j["sampler"] = s.sampler;
  j["timestep_spacing"] = s.timestep_spacing;
  j["min_work_share"] = s.min_work_share;
  j["calibration"] = s.calibration;
  return j;
}

Int8AnalysisSettings settings_from_json(const ojson& j, const std::string& where) {
  Int8AnalysisSettings s;
  try {
    s.prompts = member(j, "prompts", where).get<std::vector<std::string>>();
    s.seeds = member(j, "seeds", where).get<std::vector<uint64_t>>();
    // Bounded integers: get<int>() of 1e30 would be undefined behaviour.
    s.steps = static_cast<int>(
        integer_in(member(j, "steps", where), 1, limits::kMaxSteps, where + ": steps"));
    s.width = static_cast<int>(
        integer_in(member(j, "width", where), 8, limits::kMaxImageSizePixels, where + ": width"));
    s.height = static_cast<int>(
        integer_in(member(j, "height", where), 8, limits::kMaxImageSizePixels, where + ": height"));
    s.cfg_scale = member(j, "cfg_scale", where).get<float>();
    s.sampler = member(j, "sampler", where).get<std::string>();
    s.timestep_spacing = member(j, "timestep_spacing", where).get<std::string>();
    s.min_work_share = member(j, "min_work_share", where).get<double>();
    s.calibration = member(j, "calibration", where).get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    fail(where + ": malformed settings (" + e.what() + ")");
  }
  return s;
}

// Empty if the measurements of a and b are comparable, else the first difference.
std::string settings_difference(const Int8AnalysisSettings& a, const Int8AnalysisSettings& b) {
  const ojson ja = settings_json(a), jb = settings_json(b);
  for (const auto& [k, v] : ja.items())
    if (jb[k] != v) return k + ": " + v.dump() + " vs " + jb[k].dump();
  return "";
}

double mean_of(const std::vector<double>& v) { return recorded_psnr(mean_psnr(v)); }

// Mean error power relative to the peak, from per-run dB: what adding int8 layers accumulates.
double noise_of(const std::vector<double>& db) {
  double n = 0;
  for (double v : db) n += std::pow(10.0, -v / 10.0);
  return n / static_cast<double>(db.size());
}

using Runs = AnalysisRuns<Int8AnalysisSettings>;

// A UNet sharing m's weights whose int8 layers are set per measurement.
class Int8Unet {
 public:
  // Throws, naming `where`, if the calibration is not this UNet's.
  Int8Unet(const StableDiffusion& m, const Int8Calibration& c, const std::string& where)
      : unet_(*m.unet_ws, m.unet->config()), c_(c) {
    Int8Calibration off = c;
    for (auto& l : off.layers) l.int8 = false;
    apply_int8_calibration(unet_, off, where);
    for (WeightLayer* l : unet_.weight_layers()) layers_[l->name] = l;
  }
  // Exactly `names` int8 (ranges from the calibration), every other layer fp32.
  const UNet& with(const std::set<std::string>& names) {
    for (auto& [name, l] : layers_) {
      const bool want = names.count(name) != 0;
      if (want && !l->int8())
        l->enable_int8(c_.find(name)->act());
      else if (!want && l->int8())
        l->disable_int8();
    }
    return unet_;
  }

 private:
  UNet unet_;
  const Int8Calibration& c_;
  std::map<std::string, WeightLayer*> layers_;
};

std::vector<std::string> efficiency_order(const Int8Analysis& a) {
  std::vector<std::pair<double, std::string>> v;
  for (const auto& [name, gflops] : a.layers)
    v.emplace_back(gflops / std::max(noise_of(a.single_layer.at(name)), 1e-30), name);
  std::stable_sort(v.begin(), v.end(),
                   [](const auto& x, const auto& y) { return x.first > y.first; });
  std::vector<std::string> order;
  for (const auto& [e, name] : v) order.push_back(name);
  return order;
}

void check_same(const Int8Analysis& mine, const Int8Analysis& other, const std::string& path) {
  const bool same_layers =
      mine.layers.size() == other.layers.size() &&
      std::equal(mine.layers.begin(), mine.layers.end(), other.layers.begin(),
                 [](const auto& x, const auto& y) { return x.first == y.first; });
  check_same_document(path, settings_difference(mine.settings, other.settings),
                      "other settings or another calibration",
                      same_layers ? "" : "its candidate layers differ from this model's");
}

void absorb(Int8Analysis& into, const Int8Analysis& from, const std::string& into_name,
            const std::string& from_name) {
  auto conflict = [&](const std::string& what) { fail_disagreement(into_name, from_name, what); };
  merge_agreeing(into.all_int8, from.all_int8, [&] { conflict("baselines.all_int8"); });
  merge_agreeing(into.single_layer, from.single_layer,
                 [&](const std::string& l) { conflict("single_layer." + l); });
  if (from.selection && !into.selection) into.selection = from.selection;
}

}  // namespace

bool Int8Analysis::single_layer_complete() const {
  for (const auto& [name, g] : layers)
    if (!single_layer.count(name)) return false;
  return true;
}

ojson Int8Analysis::to_json() const {
  ojson j;
  j["format"] = kInt8AnalysisFormat;
  j["model_version"] = model_version;
  j["settings"] = settings_json(settings);
  ojson ls = ojson::array();
  for (const auto& [name, g] : layers) ls.push_back({{"name", name}, {"gflops", g}});
  j["layers"] = ls;
  j["total_gflops"] = total_gflops;
  ojson b = ojson::object();
  if (all_int8) b["all_int8"] = *all_int8;
  j["baselines"] = b;
  ojson sl = ojson::object();
  for (const auto& [name, g] : layers) {
    auto it = single_layer.find(name);
    if (it != single_layer.end()) sl[name] = it->second;
  }
  j["single_layer"] = sl;
  if (selection) {
    ojson s;
    s["target_psnr"] = selection->target_psnr;
    s["order"] = selection->order;
    ojson p = ojson::object();
    for (const auto& [k, v] : selection->probes) p[std::to_string(k)] = v;
    s["probes"] = p;
    s["int8_layers"] = selection->int8_layers;
    s["psnr"] = selection->psnr;
    s["int8_gflops"] = selection->int8_gflops;
    s["total_gflops"] = selection->total_gflops;
    j["selection"] = s;
  }
  if (shard) j["shard"] = {{"index", shard->first}, {"count", shard->second}};
  return j;
}

Int8Analysis Int8Analysis::from_json(const ojson& j, const std::string& where) {
  if (!j.is_object()) fail(where + ": not a JSON object");
  if (!j.contains("format") || j["format"] != kInt8AnalysisFormat)
    fail(where + ": not an sdpal int8 analysis (\"format\" is not \"" + kInt8AnalysisFormat +
         "\")");
  Int8Analysis a;
  try {
    a.model_version = member(j, "model_version", where).get<std::string>();
    a.settings = settings_from_json(member(j, "settings", where), where);
    for (const auto& l : member(j, "layers", where))
      a.layers.emplace_back(member(l, "name", where + ": layers").get<std::string>(),
                            number(member(l, "gflops", where + ": layers"), where + ": gflops"));
    a.total_gflops = number(member(j, "total_gflops", where), where + ": total_gflops");
    const ojson& b = member(j, "baselines", where);
    if (b.contains("all_int8")) a.all_int8 = number(b["all_int8"], where + ": all_int8");
    std::set<std::string> names;
    for (const auto& [n, g] : a.layers) names.insert(n);
    for (const auto& [name, v] : member(j, "single_layer", where).items()) {
      if (!names.count(name)) fail(where + ": single_layer has unknown layer '" + name + "'");
      a.single_layer[name] = psnr_list(v, where + ": single_layer." + name);
    }
    if (j.contains("selection")) {
      const ojson& s = j["selection"];
      Int8Selection sel;
      sel.target_psnr = number(member(s, "target_psnr", where), where + ": target_psnr");
      sel.order = member(s, "order", where).get<std::vector<std::string>>();
      for (const auto& [k, v] : member(s, "probes", where).items())
        sel.probes[std::stoll(k)] = number(v, where + ": probes." + k);
      sel.int8_layers = member(s, "int8_layers", where).get<int64_t>();
      sel.psnr = number(member(s, "psnr", where), where + ": psnr");
      sel.int8_gflops = number(member(s, "int8_gflops", where), where + ": int8_gflops");
      sel.total_gflops = number(member(s, "total_gflops", where), where + ": total_gflops");
      a.selection = sel;
    }
    if (j.contains("shard"))
      a.shard =
          std::make_pair(static_cast<int>(integer_in(member(j["shard"], "index", where), 0,
                                                     kMaxShards - 1, where + ": shard.index")),
                         static_cast<int>(integer_in(member(j["shard"], "count", where), 1,
                                                     kMaxShards, where + ": shard.count")));
  } catch (const nlohmann::json::exception& e) {
    fail(where + ": malformed int8 analysis (" + e.what() + ")");
  } catch (const std::logic_error&) {  // std::stoll: invalid_argument or out_of_range
    fail(where + ": malformed probe key in selection.probes");
  }
  return a;
}

Int8Analysis read_int8_analysis(const std::string& path) {
  const ojson j = read_json_document(path, "int8 analysis");
  return Int8Analysis::from_json(j, path);
}

void write_int8_analysis(const std::string& path, const Int8Analysis& a) {
  write_json_document(path, a.to_json());
}

std::string int8_calibration_digest(const Int8Calibration& c) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (const auto& l : c.layers) {
    mix(l.name.data(), l.name.size() + 1);
    mix(&l.min, sizeof l.min);
    mix(&l.max, sizeof l.max);
  }
  char b[32];
  std::snprintf(b, sizeof b, "fnv1a64:%016llx", static_cast<unsigned long long>(h));
  return b;
}

Int8AnalyzeOutcome analyze_int8(const StableDiffusion& m, const Int8AnalyzeOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  SDPAL_CHECK(!o.output.empty(), "analyze --int8: --output is required");
  const bool sharded = o.shard_count > 0;
  if (sharded)
    SDPAL_CHECK(
        o.shard_index >= 0 && o.shard_index < o.shard_count,
        "analyze: --shard " + shard_label(o.shard_index, o.shard_count) + " is not a shard");
  SDPAL_CHECK(fs::exists(o.calibration), "analyze --int8: no calibration file " + o.calibration +
                                             "; run `sdpal calibrate --model " + m.path +
                                             "` first");
  Int8Calibration cal = read_int8_calibration(o.calibration);
  Int8Unet test(m, cal, o.calibration);

  Int8Analysis a;
  Int8AnalysisSettings& s = a.settings;
  s = o.settings;
  if (s.prompts.empty()) s.prompts = default_analysis_prompts();
  if (s.width == 0) s.width = default_image_size(m);
  if (s.height == 0) s.height = default_image_size(m);
  SDPAL_CHECK(!s.seeds.empty(), "analyze: no seeds");
  SDPAL_CHECK(s.steps >= 1 && s.steps <= 1000, "analyze: --steps must be between 1 and 1000");
  s.calibration = int8_calibration_digest(cal);
  a.model_version = o.model_version.empty() ? m.name : o.model_version;
  SDPAL_CHECK(s.min_work_share >= 0 && s.min_work_share <= 1,
              "analyze: --min-work-share must be from 0 to 1");
  for (const auto& l : cal.layers) a.total_gflops += l.gflops;
  for (const auto& l : cal.layers)
    if (l.gflops >= s.min_work_share * a.total_gflops) a.layers.emplace_back(l.name, l.gflops);
  SDPAL_CHECK(!a.layers.empty(), "analyze --int8: no layer reaches --min-work-share");

  if (fs::exists(o.output)) {
    const Int8Analysis prev = read_int8_analysis(o.output);
    check_same(a, prev, o.output);
    if (sharded && prev.shard && *prev.shard != std::make_pair(o.shard_index, o.shard_count))
      fail(o.output + " holds shard " + shard_label(prev.shard->first, prev.shard->second) +
           ", not shard " + shard_label(o.shard_index, o.shard_count) +
           " (each shard needs its own --output)");
    absorb(a, prev, "this run", o.output);
  }
  if (sharded)
    a.shard = std::make_pair(o.shard_index, o.shard_count);
  else
    a.shard.reset();
  if (a.selection && (!s.target_psnr || a.selection->target_psnr != *s.target_psnr))
    a.selection.reset();  // another target: search again

  Int8AnalyzeOutcome out;
  auto finish = [&](bool complete, std::string msg) {
    out.complete = complete;
    out.message = std::move(msg);
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  };
  auto log = [&](const std::string& line) {
    if (o.log) o.log(line);
  };
  std::unique_ptr<Runs> runs;
  auto measure = [&](const std::set<std::string>& int8) {
    if (!runs) {
      log("computing the reference outputs (" + std::to_string(s.runs()) + " runs)");
      runs = std::make_unique<Runs>(m, s);
    }
    return runs->measure(test.with(int8));
  };
  auto budget_left = [&] {
    return o.max_measurements < 0 || out.measurements < o.max_measurements;
  };
  const std::string budget_msg =
      "stopped after " + std::to_string(o.max_measurements) +
      " measurement(s) (--max-measurements); run the same command again to continue";
  int64_t planned = 0;
  auto done = [&] {
    ++out.measurements;
    write_int8_analysis(o.output, a);
    if (o.progress) o.progress(out.measurements, std::max(planned, out.measurements));
  };

  // Single-layer measurements (every N-th layer in a shard), then the all-int8 baseline.
  std::vector<std::string> plan;
  for (size_t i = 0; i < a.layers.size(); ++i)
    if ((!sharded || static_cast<int>(i % o.shard_count) == o.shard_index) &&
        !a.single_layer.count(a.layers[i].first))
      plan.push_back(a.layers[i].first);
  planned = static_cast<int64_t>(plan.size()) + (!sharded && !a.all_int8 ? 1 : 0) +
            (!sharded && s.target_psnr ? 10 : 0);
  write_int8_analysis(o.output, a);
  if (!plan.empty())
    log(std::to_string(plan.size()) + " single-layer int8 measurement(s) of " +
        std::to_string(a.layers.size()) + " layers, " + std::to_string(s.runs()) + " runs each");
  for (const auto& name : plan) {
    if (!budget_left()) return finish(false, budget_msg);
    a.single_layer[name] = measure({name});
    done();
  }
  if (sharded)
    return finish(false, "shard " + shard_label(o.shard_index, o.shard_count) +
                             " finished its layers; when every shard has, merge them (sdpal "
                             "analyze --int8 --merge OUT shard files...) and continue from the "
                             "merged file (--output it, without --shard)");
  SDPAL_CHECK(a.single_layer_complete(),
              "internal: single-layer int8 measurements incomplete after the plan");
  if (!a.all_int8) {
    if (!budget_left()) return finish(false, budget_msg);
    std::set<std::string> all;
    for (const auto& [n, g] : a.layers) all.insert(n);
    a.all_int8 = mean_of(measure(all));
    log("every layer int8: " + fixed(*a.all_int8) + " dB");
    done();
  }
  if (!s.target_psnr) return finish(true, "");

  // The longest prefix of the efficiency order that keeps the target (bisection over k).
  if (!a.selection) {
    a.selection = Int8Selection{};
    a.selection->target_psnr = *s.target_psnr;
    a.selection->order = efficiency_order(a);
  }
  Int8Selection& sel = *a.selection;
  const int64_t n = static_cast<int64_t>(a.layers.size());
  auto prefix = [&](int64_t k) {
    return std::set<std::string>(sel.order.begin(), sel.order.begin() + k);
  };
  // Mean dB with the first k layers of the order int8; false when the budget is spent.
  auto achieved = [&](int64_t k, double* db) {
    auto it = sel.probes.find(k);
    if (k == 0 || k == n || it != sel.probes.end()) {
      // k = 0 is the reference itself (deterministic), k = n the all-int8 baseline
      *db = k == 0 ? kMaxRecordedPsnr : k == n ? *a.all_int8 : it->second;
      return true;
    }
    if (!budget_left()) return false;
    *db = sel.probes[k] = mean_of(measure(prefix(k)));
    log("  probe: " + std::to_string(k) + " int8 layers: " + fixed(*db) + " dB");
    done();
    return true;
  };
  if (sel.int8_layers < 0) {
    double p = 0;
    int64_t lo = 0, hi = n;  // P(lo) >= target; find the largest such k
    if (!achieved(n, &p)) return finish(false, budget_msg);
    if (p >= sel.target_psnr) {
      lo = n;
    } else {
      while (hi - lo > 1) {
        const int64_t mid = (lo + hi) / 2;
        if (!achieved(mid, &p)) return finish(false, budget_msg);
        (p >= sel.target_psnr ? lo : hi) = mid;
      }
    }
    achieved(lo, &p);
    sel.int8_layers = lo;
    sel.psnr = p;
    sel.int8_gflops = 0;
    sel.total_gflops = a.total_gflops;
    const std::set<std::string> chosen = prefix(lo);
    for (const auto& [name, g] : a.layers)
      if (chosen.count(name)) sel.int8_gflops += g;
    write_int8_analysis(o.output, a);
  }
  // Write the selection into the calibration (flags only; the ranges and the digest stay).
  const std::set<std::string> chosen = prefix(sel.int8_layers);
  for (auto& l : cal.layers) l.int8 = chosen.count(l.name) != 0;
  write_int8_calibration(o.calibration, cal);
  log("selection for " + fixed(sel.target_psnr) + " dB: " + std::to_string(sel.int8_layers) +
      " of " + std::to_string(n) + " layers int8 (" +
      fixed(100 * sel.int8_gflops / sel.total_gflops) + " % of the UNet's Linear/Conv work), " +
      fixed(sel.psnr) + " dB; written to " + o.calibration);
  return finish(true, "");
}

Int8Analysis merge_int8_analyses(const std::vector<std::string>& inputs,
                                 const std::string& output) {
  SDPAL_CHECK(!output.empty(), "analyze --merge: no output file");
  SDPAL_CHECK(!inputs.empty(), "analyze --merge: no shard files to merge");
  std::vector<Int8Analysis> parts;
  std::map<int, std::string> by_index;
  for (const auto& p : inputs) {
    SDPAL_CHECK(fs::absolute(p) != fs::absolute(output),
                "analyze --merge: the output " + output + " is also an input");
    parts.push_back(read_int8_analysis(p));
    const Int8Analysis& a = parts.back();
    if (!a.shard) fail(p + " is not a shard file (no \"shard\" entry)");
    if (parts.size() > 1) check_same(parts[0], a, p);
    if (a.shard->second != parts[0].shard->second)
      fail("analyze --merge: " + p + " is shard " + shard_label(a.shard->first, a.shard->second) +
           " but " + inputs[0] + " is of " + std::to_string(parts[0].shard->second));
    auto [it, fresh] = by_index.emplace(a.shard->first, p);
    if (!fresh)
      fail("analyze --merge: shards overlap: " + it->second + " and " + p + " are both shard " +
           shard_label(a.shard->first, a.shard->second));
    for (size_t i = a.shard->first; i < a.layers.size(); i += a.shard->second)
      if (!a.single_layer.count(a.layers[i].first))
        fail("analyze --merge: " + p + " has not finished its layers (no value for '" +
             a.layers[i].first + "'); run it again to resume");
  }
  const int count = parts[0].shard->second;
  for (int k = 0; k < count; ++k)
    if (!by_index.count(k)) fail("analyze --merge: shard " + shard_label(k, count) + " is missing");
  Int8Analysis merged = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) absorb(merged, parts[i], inputs[0], inputs[i]);
  merged.shard.reset();
  write_int8_analysis(output, merged);
  return merged;
}

std::string int8_analysis_markdown(const Int8Analysis& a, size_t top) {
  std::string r =
      "int8 (W8A8) analysis of " + a.model_version + ": " + std::to_string(a.layers.size()) +
      " layers, " + std::to_string(a.settings.runs()) + " runs of " +
      std::to_string(a.settings.steps) + " steps at " + std::to_string(a.settings.width) + "x" +
      std::to_string(a.settings.height) + "\n\n";
  if (a.all_int8) r += "every layer int8: " + fixed(*a.all_int8) + " dB\n\n";
  std::vector<std::pair<double, std::string>> worst;
  for (const auto& [name, v] : a.single_layer) worst.emplace_back(mean_psnr(v), name);
  std::sort(worst.begin(), worst.end());
  if (!worst.empty()) {
    r += "| most sensitive layers | PSNR dB alone int8 | GFLOP |\n|---|---:|---:|\n";
    for (size_t i = 0; i < worst.size() && i < top; ++i) {
      double g = 0;
      for (const auto& [n, gf] : a.layers)
        if (n == worst[i].second) g = gf;
      char gf[32];
      std::snprintf(gf, sizeof gf, "%.3g", g);
      r += "| " + worst[i].second + " | " + fixed(worst[i].first) + " | " + gf + " |\n";
    }
    r += "\n";
  }
  if (a.selection && a.selection->int8_layers >= 0) {
    const Int8Selection& s = *a.selection;
    r += "selection for " + fixed(s.target_psnr) + " dB: " + std::to_string(s.int8_layers) +
         " of " + std::to_string(a.layers.size()) + " layers int8, " + fixed(s.psnr) + " dB, " +
         fixed(s.int8_gflops) + " of " + fixed(s.total_gflops) + " GFLOP per UNet call int8\n";
  }
  return r;
}

}  // namespace sdpal
