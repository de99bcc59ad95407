// What the worker thread does with a request: keep the current model loaded (switching among the
// catalog's models by name), run the generation with the shared GenerationSettings code of the
// CLI (so a seed gives the CLI's image bit for bit), publish progress for /sdapi/v1/progress, and
// turn the result into PNGs carrying their infotext. Only the worker calls run() and switch_to();
// the other members are safe from any thread.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "pipeline/sd_model.h"
#include "server/job_queue.h"
#include "server/model_catalog.h"
#include "server/request.h"

namespace sdpal {
class Taesd;
}

namespace sdpal::server {

struct ModelLoadSettings {
  std::string variant, prediction_type, tokenizer, int8_calibration;
  bool int8 = false;
  std::string taesd;  // --taesd DIR ("" : <model folder>/taesd when present)
  // OpenMP threads of the generations (0: OpenMP's default, all cores). OpenMP keeps the count
  // per thread, so --threads set on the main thread would not reach the worker: run() sets it.
  int threads = 0;
  // Folders that <lora:name:w> tags and embedding names in requests' prompts are looked up in
  // (by name only; "" : none).
  std::string lora_dir, embeddings_dir;
};

struct GeneratedImages {
  std::vector<std::vector<uint8_t>> pngs;  // each with its `parameters` text chunk
  std::vector<std::string> infotexts;
  std::vector<uint64_t> seeds;  // the seed of each image's batch draw
  nlohmann::json info;          // A1111's Processed.js() fields
  nlohmann::json parameters;    // the settings as run
  bool interrupted = false;
};

// What /sdapi/v1/progress shows.
struct ProgressSnapshot {
  bool active = false;
  int step = 0, steps = 0;     // of the current batch
  int batch = 0, batches = 0;  // n_iter position
  double elapsed_s = 0;
  std::string job_timestamp;
  std::optional<Tensor> latents;           // latest latents, when a preview decoder exists
  std::shared_ptr<const Taesd> previewer;  // decodes them
  int latents_step = 0;
};

class Generator {
 public:
  // Loads the startup model (the catalog's first entry); throws sdpal::Error if it fails.
  Generator(ModelCatalog catalog, ModelLoadSettings load, std::string version,
            std::string save_dir);
  ~Generator();

  // Runs `r` on the worker; RequestError for what the request got wrong (unknown model, a setting
  // the model rejects). Stops early, returning the images of the current latents, when the job is
  // interrupted.
  GeneratedImages run(const GenerationRequest& r, Job& job);
  // Makes `name` (and int8 on/off, if given) the current model; RequestError 400 if not listed.
  void switch_to(const std::string& name, std::optional<bool> int8);

  std::string current_model() const;
  bool current_int8() const;
  const ModelCatalog& catalog() const { return catalog_; }
  ProgressSnapshot progress() const;

 private:
  void load(const ModelEntry& e, bool int8);

  ModelCatalog catalog_;
  ModelLoadSettings load_;
  std::string version_, save_dir_;
  // Worker-only: the loaded model.
  std::unique_ptr<StableDiffusion> model_;
  uint64_t saved_count_ = 0;
  // Shared with the HTTP threads.
  mutable std::mutex mu_;
  std::string model_name_;
  bool int8_ = false;
  std::shared_ptr<const Taesd> taesd_;
  ProgressSnapshot progress_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace sdpal::server
