// Random-weight Stable Diffusion models with the real architectures, for benchmarks and tests
// that need full-size models without downloading any.
//
// The tensor list of each component is not written down here: it is discovered by building the
// model classes themselves (UNet, Vae, ClipTextModel) on a WeightStore whose synthesizer records
// every tensor the code asks for (see WeightStore::set_synthesizer). The weights are then filled
// like PyTorch's default initialisers (so activations stay in range through the whole network):
//   Linear / Conv weight and bias  uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))
//   GroupNorm / LayerNorm          weight 1, bias 0
//   token / position embeddings    normal(0, 0.02)
// Values depend only on (seed, tensor name, element index): identical for any thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace sdpal {

struct UNetConfig;
struct VaeConfig;
struct ClipTextConfig;

// One tensor of a component, as the model code requests it.
struct TensorSpec {
  std::string name;
  Shape shape;
};

// Complete tensor lists (sorted by name) of the diffusers / transformers components. The VAE list
// includes the encoder. No weight memory is allocated.
std::vector<TensorSpec> unet_tensor_specs(const UNetConfig& cfg);
std::vector<TensorSpec> vae_tensor_specs(const VaeConfig& cfg);
std::vector<TensorSpec> clip_text_tensor_specs(const ClipTextConfig& cfg);
int64_t parameter_count(const std::vector<TensorSpec>& specs);

// The config files of a diffusers Stable Diffusion folder.
struct ModelConfigs {
  nlohmann::json model_index, unet, vae, text_encoder, scheduler;
  nlohmann::json text_encoder_2;  // SDXL (CLIPTextModelWithProjection); null for SD 1/2
};

// Built-in architectures with their real configs, as diffusers 0.24 / transformers 4.31 save them:
// "sd15" (runwayml/stable-diffusion-v1-5), "sd21" (stabilityai/stable-diffusion-2-1, 768 px,
// v-prediction) and "sdxl" (stabilityai/stable-diffusion-xl-base-1.0, 1024 px). Throws
// sdpal::Error for other names.
ModelConfigs builtin_model_configs(const std::string& arch);
const std::vector<std::string>& builtin_archs();
// The configs of an existing diffusers folder (to write a random model of the same architecture).
ModelConfigs model_configs_from_folder(const std::string& dir);

struct RandomModelOptions {
  DType dtype = DType::F16;  // F16 or F32
  uint64_t seed = 0;
  std::string tokenizer_dir;    // CLIP tokenizer files copied into tokenizer/ (required)
  std::string tokenizer_2_dir;  // SDXL: tokenizer_2/ (pads with '!'); required with text_encoder_2
  bool force = false;           // replace a non-empty output folder
  std::function<void(const std::string&)> log;  // progress lines (optional)
};

struct RandomModelSummary {
  int64_t unet_params = 0, vae_params = 0, text_encoder_params = 0, text_encoder_2_params = 0;
  int64_t bytes = 0;  // weight bytes written
};

// Writes a complete diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
// scheduler/; for SDXL also text_encoder_2/, tokenizer_2/) with random weights. The folder is
// assembled under a temporary name beside `out_dir` and renamed into place at the end; an existing
// non-empty `out_dir` is refused unless opt.force. Throws sdpal::Error naming the problem.
RandomModelSummary write_random_model(const ModelConfigs& configs, const std::string& out_dir,
                                      const RandomModelOptions& opt);

// How one tensor is initialised: uniform(-a, a), normal(0, a) or the constant a. Decided from the
// name and shape; a bias takes the fan-in of its weight, found in `component` (all its tensors).
struct InitRule {
  enum Kind { kUniform, kNormal, kConstant } kind = kConstant;
  float a = 0;
};
InitRule initial_value_rule(const TensorSpec& spec, const std::vector<TensorSpec>& component);
// Elements [first, first + n) of a tensor's initial values (fp32). `stream` identifies the tensor
// (see tensor_stream); element i's value depends only on (stream, i).
void fill_initial_values(const InitRule& rule, uint64_t stream, int64_t first, int64_t n,
                         float* out);
uint64_t tensor_stream(uint64_t seed, const std::string& name);

}  // namespace sdpal
