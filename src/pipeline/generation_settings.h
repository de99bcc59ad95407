// One generation as a user states it (the CLI's flags, the HTTP API's fields) and what follows
// from it: the pipeline's GenerateParams and each image's A1111 infotext. `sdpal generate` and
// `sdpal serve` both go through here, so the same settings give the same image bit for bit and
// the same infotext, whichever way they came in.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/tome.h"
#include "pipeline/generate.h"
#include "pipeline/infotext.h"

namespace sdpal {

struct GenerationSettings {
  std::string prompt, negative_prompt;
  // An empty negative prompt given explicitly is encoded; one not given leaves the unconditional
  // embeddings to the model (zeros for SDXL's force_zeros_for_empty_prompt, as diffusers).
  bool negative_prompt_given = false;
  int width = 0, height = 0;  // 0: the model's native size
  int steps = 20;
  float cfg = 7.5f;
  std::string sampler = "euler_a";  // a sampler id (sampler_ids())
  bool karras = false;
  std::string timestep_spacing;  // "": the model's config / the sampler's default
  float eta = 0.f;
  int64_t seed = -1;  // < 0: random
  int batch = 1;
  int clip_skip = 1;
  ToMeOptions tome;
  float strength = 0.75f;     // img2img only
  bool prompt_syntax = true;  // A1111 prompt syntax (GenerateParams::prompt_syntax)
  std::string lora_dir;       // LoRAs named by <lora:name:w> tags ("": none may be named)
  bool lora_merge = false;
  std::string embeddings_dir;  // textual-inversion embeddings ("": none)
};

struct SamplerName {
  std::string id;       // sdpal's name: "euler_a"
  std::string display;  // A1111's: "Euler a"
};
// Every sampler sdpal has, in the order the CLI lists them.
const std::vector<SamplerName>& sampler_names();
// A1111's display name of a sampler id (the id itself if unknown).
std::string sampler_display(const std::string& id);

// The seed a run uses: `seed` itself, or a fresh random 32-bit one when it is negative.
uint64_t resolve_seed(int64_t seed);

// GenerateParams for `s` on model `m` with the resolved `seed` (prompts repeated `batch` times,
// size defaulting to the model's native one). Inputs that are not settings (init image, mask,
// noise files, TAESD, callbacks) are left for the caller.
GenerateParams make_generate_params(const GenerationSettings& s, const StableDiffusion& m,
                                    uint64_t seed);

// The infotext fields shared by every image of the run `p` made from `s` on `m`. `img2img`:
// whether an init image was used (adds the denoising strength); `noise_from_file`: noise came
// from files rather than the seed (then no RNG source is claimed).
GenerationInfo make_generation_info(const GenerationSettings& s, const GenerateParams& p,
                                    const StableDiffusion& m, const std::string& version,
                                    bool img2img, bool noise_from_file = false);

// Infotext fields known once the run is done: "Lora hashes" of the LoRAs it applied.
void add_result_fields(GenerationInfo& info, const GenerateResult& r);

// The `parameters` text of image `index` of a batch of `batch`: A1111's "Batch size" and
// "Batch pos" fields are added when batch > 1 (image i is reproduced by the seed, the batch size
// and its position: one noise draw of shape [N,4,h,w], as diffusers does).
std::string image_infotext(const GenerationInfo& info, int batch, int index);

}  // namespace sdpal
