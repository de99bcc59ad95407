// Where the weights of a diffusers model folder live: the component folders the runtime loads and
// the rules for picking their weight files (plain or *.fp16 variants, sharded or not). Shared by
// model loading and the tools that rewrite models, so that both pick the same files.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace sdpal {

// A weight-bearing component folder of a diffusers model and its weight file stem.
struct ModelComponent {
  const char* name;  // folder: "unet"
  const char* stem;  // "diffusion_pytorch_model"
  const char* what;  // for messages: "UNet"
};
// unet, vae, text_encoder (the components an SD 1.x/2.x pipeline loads).
const std::vector<ModelComponent>& model_components();

// The weight files of one component folder: `<stem>[.variant].safetensors`, or the shards listed
// by `<stem>[.variant].safetensors.index.json`. With an empty variant the plain files are used,
// else the fp16 ones if only those exist. Pickle-only folders are refused with advice.
std::vector<std::string> component_files(const std::filesystem::path& dir, const std::string& stem,
                                         const std::string& variant, const std::string& what);

// The shard index (`<stem>[.variant].safetensors.index.json`) the files above came from, or ""
// when the component is a single file.
std::string component_index_file(const std::filesystem::path& dir, const std::string& stem,
                                 const std::string& variant);

}  // namespace sdpal
