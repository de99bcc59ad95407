#include "compression/analyze.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "compression/compress_model.h"
#include "compression/palettize.h"
#include "compression/quality.h"
#include "compression/quantize.h"
#include "compression/recipe.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/format.h"
#include "pipeline/generate.h"

namespace fs = std::filesystem;

namespace sdpal {

namespace {

constexpr int64_t kPaletteCacheBytes = int64_t(2) << 30;  // palettized layers kept for reuse

std::string weight_name(const std::string& layer) { return layer + ".weight"; }

std::vector<float> weight_f32(const TensorView& v) {
  std::vector<float> w(v.numel());
  convert_to_f32(v.dtype, v.data, w.data(), w.size());
  return w;
}

// FNV-1a over every tensor's name, dtype, shape and its first and last 4 KiB: tells models apart
// without reading gigabytes.
std::string weights_fingerprint(const WeightStore& ws) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (const auto& name : ws.names()) {
    const TensorView* v = ws.find(name);
    if (!v) continue;
    mix(name.data(), name.size());
    const std::string dt = dtype_name(v->dtype);
    mix(dt.data(), dt.size());
    for (int64_t d : v->shape) mix(&d, sizeof d);
    const size_t head = std::min<size_t>(v->nbytes, 4096);
    mix(v->data, head);
    if (v->nbytes > head) {
      const size_t tail = std::min<size_t>(v->nbytes - head, 4096);
      mix(v->data + v->nbytes - tail, tail);
    }
  }
  char b[32];
  std::snprintf(b, sizeof b, "fnv1a64:%016llx", static_cast<unsigned long long>(h));
  return b;
}

// The analysis runs, also measuring with some weights replaced by compressed ones.
class Measurer : public AnalysisRuns<AnalysisSettings> {
 public:
  using AnalysisRuns::AnalysisRuns;
  using AnalysisRuns::measure;

  // The same with some weights replaced (layer -> compressed weight), the rest shared.
  std::vector<double> measure(const std::map<std::string, CompressedView>& replaced) const {
    WeightStore ws("unet");
    const WeightStore& base = *m_.unet_ws;
    for (const auto& name : base.names())
      if (!replaced.count(name)) ws.add_view(name, *base.find(name));
    for (const auto& [name, v] : replaced) {
      SDPAL_CHECK(base.find(name), "internal: no weight '" + name + "' to replace");
      ws.add_compressed(name, v);
    }
    const UNet unet(ws, m_.unet->config());
    return measure(unet);
  }
};

// Palettized layers, computed on first use and kept while they fit the cache budget.
class PaletteCache {
 public:
  PaletteCache(const WeightStore& ws, int64_t group_size) : ws_(ws), group_size_(group_size) {}
  CompressedView get(const std::string& layer, int nbits) {
    const auto key = std::make_pair(layer, nbits);
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      const TensorView& v = *ws_.find(weight_name(layer));
      const std::vector<float> w = weight_f32(v);
      PalettizedWeight p = palettize(w.data(), v.shape, v.dtype, nbits, group_size_);
      const int64_t b = static_cast<int64_t>(p.indices.size() + 2 * p.lut.size());
      if (bytes_ + b > kPaletteCacheBytes) {
        cache_.clear();
        bytes_ = 0;
      }
      bytes_ += b;
      it = cache_.emplace(key, std::move(p)).first;
    }
    return CompressedView::of(it->second);
  }

 private:
  const WeightStore& ws_;
  int64_t group_size_;
  std::map<std::pair<std::string, int>, PalettizedWeight> cache_;
  int64_t bytes_ = 0;
};

// One measurement of stages 1-2.
struct Unit {
  enum Kind { Original, Linear8, Single, Cumulative } kind = Original;
  int nbits = 0;
  size_t index = 0;  // Single: candidate index; Cumulative: position in the curve's order
};

// Stage 1: original, linear 8-bit, then (nbits, layer) nbits-major. Stage 2: (nbits, position).
std::vector<Unit> stage_units(const Analysis& a, AnalysisStage st) {
  std::vector<Unit> u;
  const size_t c = a.model.candidates.size();
  if (st == AnalysisStage::SingleLayer) {
    u.push_back({Unit::Original, 0, 0});
    u.push_back({Unit::Linear8, 0, 0});
    for (int n : a.nbits())
      for (size_t i = 0; i < c; ++i) u.push_back({Unit::Single, n, i});
  } else if (st == AnalysisStage::Cumulative) {
    for (int n : a.nbits())
      for (size_t k = 0; k < c; ++k) u.push_back({Unit::Cumulative, n, k});
  }
  return u;
}

bool unit_done(const Analysis& a, const Unit& u) {
  switch (u.kind) {
    case Unit::Original:
      return a.original.has_value();
    case Unit::Linear8:
      return a.linear_8bit.has_value();
    case Unit::Single: {
      auto it = a.single_layer.find(u.nbits);
      return it != a.single_layer.end() && it->second.count(a.model.candidates[u.index].name);
    }
    case Unit::Cumulative: {
      auto o = a.cumulative_order.find(u.nbits);
      auto it = a.cumulative.find(u.nbits);
      return o != a.cumulative_order.end() && it != a.cumulative.end() &&
             it->second.count(o->second[u.index]);
    }
  }
  return false;
}

// Least sensitive first: descending summed single-layer PSNR, ties in candidate order.
std::vector<std::string> sensitivity_order(const Analysis& a, int n) {
  std::vector<std::string> order;
  for (const auto& c : a.model.candidates) order.push_back(c.name);
  const auto& s = a.single_layer.at(n);
  std::stable_sort(order.begin(), order.end(), [&](const std::string& x, const std::string& y) {
    double sx = 0, sy = 0;
    for (double v : s.at(x)) sx += v;
    for (double v : s.at(y)) sy += v;
    return sx > sy;
  });
  return order;
}

void set_cumulative_orders(Analysis& a) {
  for (int n : a.nbits())
    if (!a.cumulative_order.count(n) && a.single_layer_complete(n))
      a.cumulative_order[n] = sensitivity_order(a, n);
}

// Adds `from`'s results to `into`; values present in both must agree.
void absorb(Analysis& into, const Analysis& from, const std::string& into_name,
            const std::string& from_name) {
  auto conflict = [&](const std::string& what) { fail_disagreement(into_name, from_name, what); };
  merge_agreeing(into.original, from.original, [&] { conflict("baselines.original"); });
  merge_agreeing(into.linear_8bit, from.linear_8bit, [&] { conflict("baselines.linear_8bit"); });
  auto lists = [&](auto& dst, const auto& src, const char* what) {
    // An iterator, not a structured binding: clang before 16 cannot capture bindings in lambdas.
    for (auto it = src.begin(); it != src.end(); ++it)
      merge_agreeing(dst[it->first], it->second, [&](const std::string& l) {
        conflict(std::string(what) + "." + std::to_string(it->first) + "." + l);
      });
  };
  lists(into.single_layer, from.single_layer, "single_layer");
  merge_agreeing(into.cumulative_order, from.cumulative_order,
                 [&](int n) { conflict("the order of cumulative." + std::to_string(n)); });
  lists(into.cumulative, from.cumulative, "cumulative");
  for (const auto& [name, r] : from.recipes) {
    const Recipe* mine = into.find_recipe(name);
    if (mine && *mine != r) conflict("recipes." + name);
    auto p = from.recipe_psnr.find(name);
    if (p != from.recipe_psnr.end()) {
      auto q = into.recipe_psnr.find(name);
      if (q != into.recipe_psnr.end() && q->second != p->second) conflict("baselines." + name);
      into.recipe_psnr[name] = p->second;
    }
    if (!mine) into.recipes.emplace_back(name, r);
  }
  auto target = [&](std::optional<TargetResult>& dst, const std::optional<TargetResult>& src,
                    const char* w) {
    if (!src) return;
    if (!dst) {
      dst = src;
      return;
    }
    if (dst->target != src->target) conflict(std::string("targets.") + w);
    for (const auto& [k, v] : src->probes) {
      auto it = dst->probes.find(k);
      if (it != dst->probes.end() && it->second != v) conflict(std::string("targets.") + w);
      dst->probes[k] = v;
    }
    if (dst->recipe.empty()) dst->recipe = src->recipe;
    if (!src->recipe.empty() && src->recipe != dst->recipe) conflict(std::string("targets.") + w);
  };
  target(into.target_bits, from.target_bits, "bits");
  target(into.target_psnr, from.target_psnr, "psnr");
}

// The document must belong to this model and these settings.
// With `recipe_settings_too` false (resuming), --num-recipes and the targets may change: they
// only add recipes.
void check_same_analysis(const Analysis& mine, const Analysis& other, const std::string& path,
                         bool recipe_settings_too) {
  bool same_candidates = mine.model.candidates.size() == other.model.candidates.size();
  for (size_t i = 0; same_candidates && i < mine.model.candidates.size(); ++i)
    same_candidates = mine.model.candidates[i].name == other.model.candidates[i].name &&
                      mine.model.candidates[i].elements == other.model.candidates[i].elements;
  check_same_document(
      path, AnalysisSettings::difference(*mine.settings, *other.settings, recipe_settings_too),
      "other settings",
      same_candidates && mine.model.fingerprint == other.model.fingerprint
          ? ""
          : "its candidate layers or weight fingerprint " + other.model.fingerprint +
                " differ from this model's " + mine.model.fingerprint);
}

AnalysisSettings resolve_settings(const StableDiffusion& m, AnalysisSettings s) {
  if (s.prompts.empty()) s.prompts = default_analysis_prompts();
  if (s.width == 0) s.width = default_image_size(m);
  if (s.height == 0) s.height = default_image_size(m);
  SDPAL_CHECK(!s.seeds.empty(), "analyze: no seeds");
  SDPAL_CHECK(s.steps >= 1 && s.steps <= 1000, "analyze: --steps must be between 1 and 1000");
  SDPAL_CHECK(s.width > 0 && s.height > 0, "analyze: width and height must be positive");
  SDPAL_CHECK(std::isfinite(s.cfg_scale), "analyze: --cfg-scale must be finite");
  SDPAL_CHECK(s.timestep_spacing.empty() || s.timestep_spacing == "leading" ||
                  s.timestep_spacing == "linspace" || s.timestep_spacing == "trailing",
              "analyze: unknown timestep spacing '" + s.timestep_spacing + "'");
  SDPAL_CHECK(!s.nbits.empty(), "analyze: --nbits is empty");
  for (int n : s.nbits)
    SDPAL_CHECK(valid_palette_bits(n),
                "analyze: --nbits " + std::to_string(n) + " is not one of 1, 2, 4, 6, 8");
  std::sort(s.nbits.begin(), s.nbits.end());
  s.nbits.erase(std::unique(s.nbits.begin(), s.nbits.end()), s.nbits.end());
  SDPAL_CHECK(s.min_elements >= 0, "analyze: --min-elements must not be negative");
  SDPAL_CHECK(s.group_size >= 0, "analyze: --group-size must not be negative");
  SDPAL_CHECK(s.num_recipes >= 1 && s.num_recipes <= 1000,
              "analyze: --num-recipes must be between 1 and 1000");
  if (s.target_bits)
    SDPAL_CHECK(std::isfinite(*s.target_bits) && *s.target_bits > 0 && *s.target_bits <= 16,
                "analyze: --target-bits must be in (0, 16]");
  if (s.target_psnr)
    SDPAL_CHECK(std::isfinite(*s.target_psnr), "analyze: --target-psnr must be a finite number");
  return s;
}

// The name a recipe has (or would get) in `a`, and whether it is there: recipe_<avg>_bit_... or,
// for a different recipe of the same average, that name with a suffix.
std::pair<std::string, bool> find_recipe_name(const Analysis& a, const Recipe& r) {
  const std::string base = recipe_name(recipe_average_bits(a, r));
  std::string name = base;
  for (int k = 2;; ++k) {
    const Recipe* existing = a.find_recipe(name);
    if (!existing) return {name, false};
    if (*existing == r) return {name, true};
    name = base + "_" + std::to_string(k);
  }
}

// Appends a recipe (unless there) with its achieved PSNR; returns its name.
std::string add_recipe(Analysis& a, const Recipe& r, double psnr) {
  const auto [name, present] = find_recipe_name(a, r);
  if (!present) {
    a.recipes.emplace_back(name, r);
    a.recipe_psnr[name] = psnr;
  }
  return name;
}

bool all_kept(const Recipe& r) {
  for (const auto& [l, b] : r)
    if (b != 16) return false;
  return true;
}

// One invocation's measurements: budget, progress, the palette cache and the reference.
class Session {
 public:
  Session(const StableDiffusion& m, const AnalyzeOptions& o, Analysis& a)
      : m_(m), o_(o), a_(a), cache_(*m.unet_ws, a.settings->group_size) {}

  // Measures one more thing unless the budget is spent; false when it is.
  bool may_measure() const { return o_.max_measurements < 0 || made_ < o_.max_measurements; }
  int64_t made() const { return made_; }
  void set_total(int64_t t) { total_ = t; }

  void run_unit(const Unit& u) {
    switch (u.kind) {
      case Unit::Original:
        a_.original = mean_of(measurer().measure(std::map<std::string, CompressedView>{}));
        log("original (rerun): " + fixed(*a_.original) + " dB");
        break;
      case Unit::Linear8: {
        std::deque<Linear8Weight> q;
        std::map<std::string, CompressedView> rep;
        const WeightStore& ws = *m_.unet_ws;
        for (const auto& name : ws.names()) {
          const TensorView* v = ws.find(name);
          if (!v || !is_compression_candidate(name, v->shape, v->dtype, 0, false)) continue;
          const std::vector<float> w = weight_f32(*v);
          q.push_back(quantize_linear8(w.data(), v->shape, v->dtype, false));
          rep[name] = CompressedView::of(q.back());
        }
        a_.linear_8bit = mean_of(measurer().measure(rep));
        log("linear 8-bit (" + std::to_string(rep.size()) + " weights): " + fixed(*a_.linear_8bit) +
            " dB");
        break;
      }
      case Unit::Single: {
        const std::string& layer = a_.model.candidates[u.index].name;
        std::map<std::string, CompressedView> rep;
        rep[weight_name(layer)] = cache_.get(layer, u.nbits);
        a_.single_layer[u.nbits][layer] = measurer().measure(rep);
        break;
      }
      case Unit::Cumulative: {
        set_cumulative_orders(a_);
        const auto& order = a_.cumulative_order.at(u.nbits);
        std::map<std::string, CompressedView> rep;
        for (size_t k = 0; k <= u.index; ++k)
          rep[weight_name(order[k])] = cache_.get(order[k], u.nbits);
        a_.cumulative[u.nbits][order[u.index]] = measurer().measure(rep);
        break;
      }
    }
    done();
  }

  // Mean recorded PSNR of a recipe simulated end to end.
  double simulate(const Recipe& r) {
    if (all_kept(r)) return *a_.original;  // nothing palettized: the original's rerun
    std::map<std::string, CompressedView> rep;
    for (const auto& [layer, bits] : r)
      if (bits != 16) rep[weight_name(layer)] = cache_.get(layer, bits);
    return mean_of(measurer().measure(rep));
  }
  // Records progress: the document is written after every change, counted when `measured`.
  void done(bool measured = true) {
    if (measured) ++made_;
    write_analysis(o_.output, a_);
    if (measured && o_.progress) o_.progress(made_, total_);
  }
  void log(const std::string& s) const {
    if (o_.log) o_.log(s);
  }

 private:
  static double mean_of(const std::vector<double>& v) { return recorded_psnr(mean_psnr(v)); }
  const Measurer& measurer() {
    if (!measurer_) {
      log("computing the reference outputs (" + std::to_string(a_.settings->runs()) + " runs)");
      measurer_ = std::make_unique<Measurer>(m_, *a_.settings);
    }
    return *measurer_;
  }
  const StableDiffusion& m_;
  const AnalyzeOptions& o_;
  Analysis& a_;
  PaletteCache cache_;
  std::unique_ptr<Measurer> measurer_;
  int64_t made_ = 0, total_ = 0;
};

std::string describe_recipe(const Analysis& a, const std::string& name, const Recipe& r,
                            double psnr) {
  double bits = 0;
  for (const auto& c : a.model.candidates) {
    auto it = r.find(c.name);
    bits += double(it == r.end() ? 16 : it->second) * c.elements;
  }
  return name + ": " + fixed(recipe_average_bits(a, r)) + " bits, " + fixed(bits / 8e6) + " MB, " +
         fixed(psnr) + " dB";
}

// Stage 3. Returns false when the measurement budget ran out first.
bool make_recipes(Session& run, Analysis& a) {
  const AnalysisSettings& s = *a.settings;
  std::vector<Recipe> series;
  for (double t : recipe_thresholds(a, s.num_recipes)) series.push_back(build_recipe(a, t));
  for (const Recipe& r : series) {
    const auto [name, present] = find_recipe_name(a, r);
    if (present) continue;
    const bool measured = !all_kept(r);
    if (measured && !run.may_measure()) return false;
    const double p = run.simulate(r);
    add_recipe(a, r, p);
    run.log(describe_recipe(a, name, r, p));
    run.done(measured);
  }
  if (s.target_bits && (!a.target_bits || a.target_bits->recipe.empty())) {
    const Recipe r = build_recipe(a, threshold_for_bits(a, *s.target_bits));
    auto [name, present] = find_recipe_name(a, r);
    if (!present) {
      if (!run.may_measure()) return false;
      name = add_recipe(a, r, run.simulate(r));
    }
    a.target_bits = TargetResult{*s.target_bits, name, {}};
    run.log("--target-bits " + fixed(*s.target_bits) + ": " +
            describe_recipe(a, name, r, a.recipe_psnr.at(name)));
    run.done(!present);
  }
  if (s.target_psnr && (!a.target_psnr || a.target_psnr->recipe.empty())) {
    const double want = *s.target_psnr;
    SDPAL_CHECK(want <= *a.original, "--target-psnr " + fixed(want) +
                                         " dB is above the original model's " + fixed(*a.original) +
                                         " dB");
    if (!a.target_psnr) a.target_psnr = TargetResult{want, "", {}};
    const auto t = distinct_thresholds(a);
    // Achieved PSNR of the recipe at t[i]; recipes change (and gain bits) as i grows.
    auto achieved = [&](size_t i, double* out) {
      const Recipe r = build_recipe(a, t[i]);
      const std::string name = recipe_name(recipe_average_bits(a, r));
      auto it = a.target_psnr->probes.find(name);
      if (it != a.target_psnr->probes.end()) {
        *out = it->second;
        return true;
      }
      const bool measured = !all_kept(r);
      if (measured && !run.may_measure()) return false;
      *out = run.simulate(r);
      a.target_psnr->probes[name] = *out;
      run.log("  --target-psnr probe " + describe_recipe(a, name, r, *out));
      run.done(measured);
      return true;
    };
    size_t lo = 0, hi = t.size() - 1;  // t.back() keeps every layer: the original's PSNR
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      double p = 0;
      if (!achieved(mid, &p)) return false;
      if (p >= want)
        hi = mid;
      else
        lo = mid + 1;
    }
    double p = 0;
    if (!achieved(lo, &p)) return false;
    const Recipe r = build_recipe(a, t[lo]);
    auto [name, present] = find_recipe_name(a, r);
    if (!present) name = add_recipe(a, r, p);
    a.target_psnr->recipe = name;
    run.log("--target-psnr " + fixed(want) + ": " + describe_recipe(a, name, r, p));
    run.done(false);
  }
  return true;
}

}  // namespace

void check_same_document(const std::string& path, const std::string& settings_difference,
                         const std::string& other_settings, const std::string& model_difference) {
  if (!settings_difference.empty())
    fail(path + " was made with " + other_settings + " (" + settings_difference +
         "); use the same options to continue it, or another --output");
  if (!model_difference.empty())
    fail(path + " is the analysis of another model (" + model_difference + ")");
}

void fail_disagreement(const std::string& into_name, const std::string& from_name,
                       const std::string& what) {
  fail(into_name + " and " + from_name + " disagree on " + what +
       " (they were not started from the same data, or were made on different models)");
}

const std::vector<std::string>& default_analysis_prompts() {
  static const std::vector<std::string> p = {
      "a photo of an astronaut riding a horse on mars",
      "a red vintage car parked in front of a brick wall, golden hour",
      "a watercolor painting of a lighthouse on a rocky coast",
      "close-up portrait of an elderly woman with freckles, studio lighting",
      "a bowl of ramen with chopsticks on a wooden table, top view",
      "a futuristic city skyline at night with neon signs, digital art",
      "a golden retriever puppy playing in autumn leaves",
      "an isometric pixel-art castle on a floating island",
  };
  return p;
}

std::vector<CandidateLayer> analysis_candidates(const WeightStore& unet, int64_t min_elements) {
  std::vector<CandidateLayer> r;
  for (const auto& name : unet.names()) {
    const TensorView* v = unet.find(name);
    if (!v)
      fail(unet.label() + ": '" + name + "' in " + unet.source() +
           " is already compressed; analyze the original (uncompressed) model");
    if (is_compression_candidate(name, v->shape, v->dtype, min_elements, false))
      r.push_back({name.substr(0, name.size() - 7), v->numel()});
  }
  return r;
}

AnalyzeOutcome analyze_model(const StableDiffusion& m, const AnalyzeOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  SDPAL_CHECK(!o.output.empty(), "analyze: --output is required");
  const bool sharded = o.shard_count > 0;
  if (sharded)
    SDPAL_CHECK(o.shard_index >= 0 && o.shard_index < o.shard_count,
                "analyze: --shard " + shard_label(o.shard_index, o.shard_count) +
                    " is not a shard (i/N with 0 <= i < N)");

  // The document this model and these settings give, then what the files already hold.
  Analysis a;
  a.settings = resolve_settings(m, o.settings);
  a.model_version = o.model_version.empty() ? m.name : o.model_version;
  a.model.candidates = analysis_candidates(*m.unet_ws, a.settings->min_elements);
  SDPAL_CHECK(!a.model.candidates.empty(), "analyze: no UNet weight has more than " +
                                               std::to_string(a.settings->min_elements) +
                                               " elements; lower --min-elements");
  for (const auto& c : a.model.candidates) {
    const int64_t rows = m.unet_ws->find(weight_name(c.name))->shape[0];
    if (a.settings->group_size > 0 && rows % a.settings->group_size != 0)
      fail("analyze: layer '" + c.name + "' has " + std::to_string(rows) +
           " output channels, not divisible by --group-size " +
           std::to_string(a.settings->group_size));
  }
  for (const auto& name : m.unet_ws->names())
    a.model.unet_parameters += shape_numel(m.unet_ws->shape_of(name));
  a.model.fingerprint = weights_fingerprint(*m.unet_ws);

  if (fs::exists(o.output)) {
    Analysis prev = read_analysis(o.output, true);
    check_same_analysis(a, prev, o.output, false);
    if (sharded && prev.shard &&
        (prev.shard->index != o.shard_index || prev.shard->count != o.shard_count))
      fail(o.output + " holds shard " + shard_label(prev.shard->index, prev.shard->count) +
           ", not shard " + shard_label(o.shard_index, o.shard_count) +
           " (each shard needs its own --output)");
    absorb(a, prev, "this run", o.output);
  }
  if (!o.from.empty()) {
    Analysis from = read_analysis(o.from, true);
    check_same_analysis(a, from, o.from, false);
    absorb(a, from, o.output, o.from);
  }
  // Target results of other targets (an earlier run's) no longer apply; their recipes stay.
  if (a.target_bits &&
      (!a.settings->target_bits || a.target_bits->target != *a.settings->target_bits))
    a.target_bits.reset();
  if (a.target_psnr &&
      (!a.settings->target_psnr || a.target_psnr->target != *a.settings->target_psnr))
    a.target_psnr.reset();
  set_cumulative_orders(a);

  Session run(m, o, a);
  AnalyzeOutcome out;
  auto finish = [&](AnalysisStage st, std::string msg) {
    out.stage = st;
    out.measurements = run.made();
    out.message = std::move(msg);
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  };
  const std::string budget_msg =
      "stopped after " + std::to_string(o.max_measurements) +
      " measurement(s) (--max-measurements); run the same command again to continue";

  // Stages 1-2: the units this invocation runs, in order.
  std::vector<Unit> plan;
  AnalysisStage shard_stage = a.stage();
  if (sharded) {
    if (shard_stage == AnalysisStage::SingleLayer || shard_stage == AnalysisStage::Cumulative) {
      const auto units = stage_units(a, shard_stage);
      for (size_t u = 0; u < units.size(); ++u)
        if (static_cast<int>(u % o.shard_count) == o.shard_index && !unit_done(a, units[u]))
          plan.push_back(units[u]);
    }
    a.shard = ShardInfo{o.shard_index, o.shard_count, shard_stage};
  } else {
    a.shard.reset();
    for (const auto& u : stage_units(a, AnalysisStage::SingleLayer))
      if (u.kind != Unit::Single && !unit_done(a, u)) plan.push_back(u);
    for (int n : a.settings->nbits) {
      for (size_t i = 0; i < a.model.candidates.size(); ++i)
        if (!unit_done(a, {Unit::Single, n, i})) plan.push_back({Unit::Single, n, i});
      for (size_t k = 0; k < a.model.candidates.size(); ++k) {
        const Unit u{Unit::Cumulative, n, k};
        if (!a.cumulative_order.count(n) || !unit_done(a, u)) plan.push_back(u);
      }
    }
  }
  const int64_t recipe_runs = sharded
                                  ? 0
                                  : a.settings->num_recipes + (a.settings->target_bits ? 1 : 0) +
                                        (a.settings->target_psnr ? 12 : 0);
  run.set_total(static_cast<int64_t>(plan.size()) + recipe_runs);
  write_analysis(o.output, a);  // the file exists (and is this run's) from the start
  if (!plan.empty())
    run.log(std::to_string(plan.size()) + " measurement(s) of stage" +
            (sharded ? std::string(" ") + stage_name(shard_stage) + " (shard " +
                           shard_label(o.shard_index, o.shard_count) + ")"
                     : "s single_layer and cumulative") +
            ", " + std::to_string(a.model.candidates.size()) + " candidate layers, " +
            std::to_string(a.settings->runs()) + " runs each");
  for (const Unit& u : plan) {
    if (!run.may_measure()) return finish(a.stage(), budget_msg);
    run.run_unit(u);
  }

  if (sharded) {
    if (shard_stage == AnalysisStage::SingleLayer || shard_stage == AnalysisStage::Cumulative)
      return finish(a.stage(), "shard " + shard_label(o.shard_index, o.shard_count) +
                                   " finished its part of " + "stage " + stage_name(shard_stage) +
                                   "; when every shard has, merge them (sdpal analyze --merge OUT "
                                   "shard files...) and continue from the merged file");
    return finish(a.stage(),
                  "stages single_layer and cumulative are complete; make the recipes with an "
                  "unsharded run on the merged file (no --shard)");
  }
  if (!make_recipes(run, a)) return finish(AnalysisStage::Recipes, budget_msg);
  write_analysis(o.output, a);
  return finish(AnalysisStage::Done, "");
}

Analysis merge_analyses(const std::vector<std::string>& inputs, const std::string& output) {
  SDPAL_CHECK(!output.empty(), "analyze --merge: no output file");
  SDPAL_CHECK(!inputs.empty(), "analyze --merge: no shard files to merge");
  std::vector<Analysis> parts;
  for (const auto& p : inputs) {
    SDPAL_CHECK(fs::absolute(p) != fs::absolute(output),
                "analyze --merge: the output " + output + " is also an input");
    parts.push_back(read_analysis(p, true));
    if (!parts.back().shard)
      fail(p +
           " is not a shard file (no \"shard\" entry); --merge combines the files of "
           "analyze --shard i/N");
  }
  const ShardInfo& first = *parts[0].shard;
  std::map<int, size_t> by_index;
  for (size_t i = 0; i < parts.size(); ++i) {
    const ShardInfo& s = *parts[i].shard;
    if (i > 0) check_same_analysis(parts[0], parts[i], inputs[i], true);
    if (s.count != first.count)
      fail("analyze --merge: " + inputs[i] + " is shard " + shard_label(s.index, s.count) +
           " but " + inputs[0] + " is shard " + shard_label(first.index, first.count) +
           " (different shard counts)");
    if (s.stage != first.stage)
      fail("analyze --merge: " + inputs[i] + " worked on stage " + stage_name(s.stage) + " but " +
           inputs[0] + " on stage " + stage_name(first.stage) + "; merge the shards of one stage");
    auto [it, fresh] = by_index.emplace(s.index, i);
    if (!fresh)
      fail("analyze --merge: shards overlap: " + inputs[it->second] + " and " + inputs[i] +
           " are both shard " + shard_label(s.index, s.count));
  }
  for (int k = 0; k < first.count; ++k)
    if (!by_index.count(k)) {
      std::string have;
      for (const auto& [idx, i] : by_index)
        have += (have.empty() ? "" : ", ") + std::to_string(idx);
      fail("analyze --merge: shard " + shard_label(k, first.count) + " is missing (given: shard " +
           have + " of " + std::to_string(first.count) + ")");
    }
  for (size_t i = 0; i < parts.size(); ++i) {
    const Analysis& p = parts[i];
    const auto units = stage_units(p, p.shard->stage);
    size_t missing = 0, mine = 0;
    for (size_t u = 0; u < units.size(); ++u)
      if (static_cast<int>(u % p.shard->count) == p.shard->index) {
        ++mine;
        if (!unit_done(p, units[u])) ++missing;
      }
    if (missing)
      fail("analyze --merge: " + inputs[i] + " (shard " +
           shard_label(p.shard->index, p.shard->count) + ") has not finished stage " +
           stage_name(p.shard->stage) + ": " + std::to_string(missing) + " of " +
           std::to_string(mine) + " measurements missing; run it again to resume");
  }
  Analysis merged = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) absorb(merged, parts[i], inputs[0], inputs[i]);
  merged.shard.reset();
  set_cumulative_orders(merged);
  write_analysis(output, merged);
  return merged;
}

std::vector<double> measure_against(const StableDiffusion& reference, const StableDiffusion& test,
                                    const AnalysisSettings& s) {
  SDPAL_CHECK(s.width > 0 && s.height > 0, "measure_against: set the image size");
  const Measurer m(reference, s);
  return m.measure(*test.unet);
}

}  // namespace sdpal
