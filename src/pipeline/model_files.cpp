#include "pipeline/model_files.h"

#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "models/config.h"

namespace fs = std::filesystem;

namespace sdpal {

namespace {

struct Picked {
  std::vector<std::string> files;
  std::string index;  // shard index, if sharded
};

// The files of `stem[.v].safetensors` (single or sharded); empty if absent.
Picked try_variant(const fs::path& dir, const std::string& stem, const std::string& v) {
  const std::string base = stem + (v.empty() ? "" : "." + v) + ".safetensors";
  if (fs::exists(dir / base)) return {{(dir / base).string()}, ""};
  const fs::path index = dir / (base + ".index.json");
  if (!fs::exists(index)) return {};
  nlohmann::json idx = read_json_file(index.string());
  SDPAL_CHECK(idx.contains("weight_map") && idx["weight_map"].is_object(),
              index.string() + ": no weight_map");
  std::set<std::string> files;
  for (const auto& [k, f] : idx["weight_map"].items()) {
    SDPAL_CHECK(f.is_string(), index.string() + ": weight_map entry '" + k + "' is not a string");
    // Shards live beside their index: a name with a folder part could reach any file.
    const std::string name = f.get<std::string>();
    SDPAL_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
                index.string() + ": weight_map entry '" + k + "' names '" + name +
                    "', not a file in the index's folder");
    files.insert((dir / name).string());
  }
  return {{files.begin(), files.end()}, index.string()};
}

Picked pick(const fs::path& dir, const std::string& stem, const std::string& variant,
            const std::string& what) {
  if (!fs::is_directory(dir)) fail("model folder lacks " + dir.string() + " (" + what + ")");
  Picked p;
  if (!variant.empty()) {
    p = try_variant(dir, stem, variant);
    if (p.files.empty())
      fail(dir.string() + ": no " + stem + "." + variant + ".safetensors (asked for --variant " +
           variant + ")");
    return p;
  }
  p = try_variant(dir, stem, "");
  if (p.files.empty()) p = try_variant(dir, stem, "fp16");  // only the fp16 variant is present
  if (p.files.empty()) {
    for (const char* ext : {".bin", ".ckpt", ".pt"})
      if (fs::exists(dir / (stem + ext)) || fs::exists(dir / (stem + ".fp16" + ext)))
        fail(dir.string() + ": only a pickle file (" + stem + ext +
             ") is present; pickle files can execute code when loaded and are not read. Convert "
             "the model to safetensors (e.g. diffusers' save_pretrained(safe_serialization=True))");
    fail(dir.string() + ": no " + stem + ".safetensors (" + what + " weights)");
  }
  return p;
}

}  // namespace

const std::vector<ModelComponent>& model_components() {
  static const std::vector<ModelComponent> c = {{"unet", "diffusion_pytorch_model", "UNet"},
                                                {"vae", "diffusion_pytorch_model", "VAE"},
                                                {"text_encoder", "model", "text encoder"}};
  return c;
}

std::vector<std::string> component_files(const fs::path& dir, const std::string& stem,
                                         const std::string& variant, const std::string& what) {
  return pick(dir, stem, variant, what).files;
}

std::string component_index_file(const fs::path& dir, const std::string& stem,
                                 const std::string& variant) {
  return pick(dir, stem, variant, stem).index;
}

}  // namespace sdpal
