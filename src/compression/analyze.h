// Mixed-bit palettization pre-analysis (`sdpal analyze`): measures how much palettizing each UNet
// layer, alone and cumulatively, changes the model's output, and derives recipes (analysis.h has
// the document, recipe.h the rule).
//
// A measurement runs the denoising loop for every (prompt, seed) with some layers replaced by
// palettized (or linear 8-bit) versions in memory and records the PSNR of the final latents
// against the uncompressed model's. Text embeddings, initial noise and the reference latents are
// computed once. The work, in stages:
//   1. single_layer: baselines "original" (a rerun) and "linear_8bit", then every (nbits, layer)
//      with only that layer palettized;
//   2. cumulative: for every nbits, the layers ordered least sensitive first (by summed
//      single-layer PSNR) and palettized cumulatively; point k has the first k+1 layers palettized;
//   3. recipes: --num-recipes thresholds and the --target-bits / --target-psnr recipes, each
//      simulated end to end.
// The document is written (atomically) after every measurement, so an interrupted run continues
// where it stopped, with identical results. Stages 1 and 2 can be split into N shards (each
// measures every N-th unit of the stage) whose files `merge_analyses` combines.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "compression/analysis.h"
#include "compression/quality.h"
#include "pipeline/generate.h"
#include "pipeline/sd_model.h"

namespace sdpal {

// 8 prompts of varied subjects and styles (the default of --prompts).
const std::vector<std::string>& default_analysis_prompts();

struct AnalyzeOptions {
  AnalysisSettings settings;  // width/height 0: the model's native size; prompts empty: default
  std::string model_version;  // label; empty: the model's folder name
  std::string output;         // the document, created or resumed
  std::string from;           // optional: start from this document (e.g. merged shards)
  int shard_index = 0, shard_count = 0;  // shard_count 0: not sharded
  int64_t max_measurements = -1;         // stop after this many new measurements (< 0: no limit)
  std::function<void(const std::string&)> log;
  // After each measurement: done, total planned in this invocation.
  std::function<void(int64_t, int64_t)> progress;
};

struct AnalyzeOutcome {
  AnalysisStage stage = AnalysisStage::Done;  // what is left (Done: complete)
  int64_t measurements = 0;                   // made in this invocation
  double seconds = 0;
  std::string message;  // what to do next when not complete
};

// Candidate layers of a UNet weight store: Linear/Conv weights (2-D/4-D, not embedding tables)
// with more than `min_elements` elements, in name order.
std::vector<CandidateLayer> analysis_candidates(const WeightStore& unet, int64_t min_elements);

// Runs (or resumes) the analysis of `m`. Throws sdpal::Error for bad options or a document that
// does not belong to this model and these settings (nothing is written then).
AnalyzeOutcome analyze_model(const StableDiffusion& m, const AnalyzeOptions& o);

// Combines shard files of one stage into `output`: every shard 0..N-1 exactly once, each with its
// slice finished, all made with the same settings, model and starting data. Throws (writing
// nothing) on overlapping, missing or unfinished shards and on conflicting values.
Analysis merge_analyses(const std::vector<std::string>& inputs, const std::string& output);

// Per-run PSNR (recorded: capped, rounded) of `test`'s final latents against `reference`'s with
// the analysis settings (s.width/height must be set): what analyze records for a model whose UNet
// is `test`'s. For checking an applied recipe against its recorded PSNR.
std::vector<double> measure_against(const StableDiffusion& reference, const StableDiffusion& test,
                                    const AnalysisSettings& s);

// "i/N": a shard in messages.
inline std::string shard_label(int i, int n) { return std::to_string(i) + "/" + std::to_string(n); }

// Resuming and merging analyses (the palettization one and the int8 one): the document at
// `path` must have been made with the same settings and on the same model. Throws naming `path`:
// `settings_difference` is the first setting that differs (empty: none), `other_settings` how the
// message calls such a document ("other settings"); `model_difference` says how its model differs
// (empty: the same model).
void check_same_document(const std::string& path, const std::string& settings_difference,
                         const std::string& other_settings, const std::string& model_difference);

// Resuming and merging analyses: documents `into_name` and `from_name` hold different values
// for `what` (an entry such as "single_layer.<layer>"). Throws.
[[noreturn]] void fail_disagreement(const std::string& into_name, const std::string& from_name,
                                    const std::string& what);

// Resuming and merging analyses: adds `from`'s entries to `into`; an entry present in both with
// another value calls conflict(key) (which throws).
template <class Map, class Conflict>
void merge_agreeing(Map& into, const Map& from, Conflict conflict) {
  for (const auto& [k, v] : from) {
    auto it = into.find(k);
    if (it != into.end() && !(it->second == v)) conflict(k);
    into[k] = v;
  }
}
// The same for one optional value.
template <class T, class Conflict>
void merge_agreeing(std::optional<T>& into, const std::optional<T>& from, Conflict conflict) {
  if (!from) return;
  if (into && !(*into == *from)) conflict();
  into = from;
}

// The generation of analysis run `run` (prompt run / #seeds with seed run % #seeds), for any
// settings with the analysis fields (AnalysisSettings, Int8AnalysisSettings).
template <class Settings>
GenerateParams analysis_run_params(const Settings& s, size_t run) {
  GenerateParams p;
  p.prompts = {s.prompts[run / s.seeds.size()]};
  p.seed = s.seeds[run % s.seeds.size()];
  p.width = s.width;
  p.height = s.height;
  p.steps = s.steps;
  p.cfg_scale = s.cfg_scale;
  p.sampler = s.sampler;
  p.timestep_spacing = s.timestep_spacing;
  return p;
}

// Text embeddings and reference latents of every analysis run, computed once; measures UNets by
// the per-run recorded PSNR of their final latents against the reference (the model's own UNet).
template <class Settings>
class AnalysisRuns {
 public:
  AnalysisRuns(const StableDiffusion& m, const Settings& s) : m_(m), s_(s) {
    const bool cfg = s.cfg_scale > 1.f;
    const Tensor uncond = encode_prompts(m, {""}, 1, nullptr);
    for (const auto& p : s.prompts) {
      const Tensor cond = encode_prompts(m, {p}, 1, nullptr);
      contexts_.push_back(cfg ? concat0({&uncond, &cond}) : cond);
    }
    for (size_t r = 0; r < s.runs(); ++r) reference_.push_back(latents(*m.unet, r));
  }

  std::vector<double> measure(const UNet& unet) const {
    std::vector<double> r;
    for (size_t i = 0; i < s_.runs(); ++i)
      r.push_back(recorded_psnr(psnr(reference_[i], latents(unet, i))));
    return r;
  }

 protected:
  Tensor latents(const UNet& unet, size_t run) const {
    return denoise_latents(m_, unet, contexts_[run / s_.seeds.size()],
                           analysis_run_params(s_, run));
  }
  const StableDiffusion& m_;
  const Settings& s_;
  std::vector<Tensor> contexts_, reference_;
};

}  // namespace sdpal
