#include "pipeline/generation_settings.h"

#include <charconv>
#include <random>
#include <string>

#include "core/error.h"
#include "pipeline/lora_selection.h"

namespace sdpal {

const std::vector<SamplerName>& sampler_names() {
  static const std::vector<SamplerName> names = {{"euler_a", "Euler a"},
                                                 {"euler", "Euler"},
                                                 {"ddim", "DDIM"},
                                                 {"dpmpp_2m", "DPM++ 2M"},
                                                 {"dpmpp_2m_sde", "DPM++ 2M SDE"},
                                                 {"pndm", "PLMS"}};
  return names;
}

std::string sampler_display(const std::string& id) {
  for (const SamplerName& s : sampler_names())
    if (s.id == id) return s.display;
  return id;
}

namespace {

// A float setting as the double its shortest decimal form denotes (0.6f -> 0.6, not
// 0.60000002384185791): what the user typed, so that the infotext says "0.6" as A1111's does.
double decimal(float v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::stod(std::string(buf, r.ptr));
}

}  // namespace

uint64_t resolve_seed(int64_t seed) {
  return seed >= 0 ? static_cast<uint64_t>(seed) : (std::random_device{}() & 0xffffffffu);
}

GenerateParams make_generate_params(const GenerationSettings& s, const StableDiffusion& m,
                                    uint64_t seed) {
  SDPAL_CHECK(s.batch >= 1, "batch size must be at least 1, got " + std::to_string(s.batch));
  GenerateParams p;
  p.prompts.assign(s.batch, s.prompt);
  if (s.negative_prompt_given || !s.negative_prompt.empty())
    p.negative_prompts = {s.negative_prompt};
  const int side = default_image_size(m);
  p.width = s.width > 0 ? s.width : side;
  p.height = s.height > 0 ? s.height : side;
  p.steps = s.steps;
  p.cfg_scale = s.cfg;
  p.sampler = s.sampler;
  p.karras = s.karras;
  p.timestep_spacing = s.timestep_spacing;
  p.eta = s.eta;
  p.clip_skip = s.clip_skip;
  p.tome = s.tome;
  p.seed = seed;
  p.strength = s.strength;
  p.prompt_syntax = s.prompt_syntax;
  p.lora_dir = s.lora_dir;
  p.lora_merge = s.lora_merge;
  p.embeddings_dir = s.embeddings_dir;
  return p;
}

GenerationInfo make_generation_info(const GenerationSettings& s, const GenerateParams& p,
                                    const StableDiffusion& m, const std::string& version,
                                    bool img2img, bool noise_from_file) {
  GenerationInfo info;
  info.prompt = s.prompt;
  info.negative_prompt = s.negative_prompt;
  info.steps = s.steps;
  info.sampler = sampler_display(s.sampler);
  info.schedule_type = s.karras ? "Karras" : "Automatic";
  info.cfg_scale = decimal(s.cfg);
  info.seed = p.seed;
  info.width = p.width;
  info.height = p.height;
  info.model = m.name;
  info.version = version;
  info.clip_skip = s.clip_skip;
  if (img2img) info.denoising_strength = decimal(s.strength);
  if (m.int8_layers > 0) info.extra.emplace_back("int8", "W8A8");
  // Not an A1111 key (A1111 always parses prompts): says the prompt was encoded as diffusers does.
  if (!s.prompt_syntax) info.extra.emplace_back("Prompt syntax", "off");
  info.token_merging_ratio = s.tome.ratio;
  // The seed reproduces the image only when it drew all the noise (torch's CPU generator,
  // reimplemented: docs/rng.md). Noise read from files is not in the infotext, so it claims no
  // RNG source then and says where the noise came from.
  if (noise_from_file)
    info.extra.emplace_back("Noise", "from file");
  else
    info.rng = "CPU";
  return info;
}

void add_result_fields(GenerationInfo& info, const GenerateResult& r) {
  if (!r.loras.empty()) info.extra.emplace_back("Lora hashes", lora_hashes(r.loras));
}

std::string image_infotext(const GenerationInfo& info, int batch, int index) {
  if (batch <= 1) return a1111_parameters(info);
  GenerationInfo mine = info;
  mine.extra.emplace_back("Batch size", std::to_string(batch));
  mine.extra.emplace_back("Batch pos", std::to_string(index));
  return a1111_parameters(mine);
}

}  // namespace sdpal
