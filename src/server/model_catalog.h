// The models a server may switch to: its --model and the entries of --models-dir (diffusers
// folders, sdpal-compressed folders, single-file .safetensors checkpoints). A request names a
// model; it never gives a path, so no request can make the server open a file elsewhere.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace sdpal::server {

struct ModelEntry {
  std::string name;  // folder name, or file name without .safetensors (StableDiffusion::name)
  std::string path;
};

class ModelCatalog {
 public:
  // `model`: the startup model's path (empty: none given); `models_dir`: "" for none.
  ModelCatalog(std::string model, std::string models_dir);
  // The startup model first, then the folder's entries by name; listed afresh at every call, so
  // models copied into the folder later show up.
  std::vector<ModelEntry> list() const;
  // The entry called `name` (A1111 also sends "name [hash]" titles: the part before " [").
  std::optional<ModelEntry> find(const std::string& name) const;

 private:
  std::string model_, models_dir_;
};

}  // namespace sdpal::server
