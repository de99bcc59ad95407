#include "server/model_catalog.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

namespace sdpal::server {

namespace fs = std::filesystem;

namespace {

std::string name_of(const fs::path& p) {
  if (p.extension() == ".safetensors") return p.stem().string();
  return p.filename().empty() ? p.parent_path().filename().string() : p.filename().string();
}

// A folder sdpal can load (diffusers layout, compressed or not) or a single-file checkpoint.
bool loadable(const fs::directory_entry& e) {
  std::error_code ec;
  if (e.path().filename().string().rfind('.', 0) == 0) return false;  // hidden
  if (e.is_regular_file(ec)) return e.path().extension() == ".safetensors";
  if (!e.is_directory(ec)) return false;
  return fs::exists(e.path() / "model_index.json", ec) ||
         fs::exists(e.path() / "unet" / "config.json", ec);
}

}  // namespace

ModelCatalog::ModelCatalog(std::string model, std::string models_dir)
    : model_(std::move(model)), models_dir_(std::move(models_dir)) {}

std::vector<ModelEntry> ModelCatalog::list() const {
  std::vector<ModelEntry> out;
  if (!model_.empty()) out.push_back({name_of(fs::path(model_)), model_});
  if (models_dir_.empty()) return out;
  std::vector<ModelEntry> found;
  std::error_code ec;
  for (fs::directory_iterator it(models_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    if (!loadable(*it)) continue;
    ModelEntry m{name_of(it->path()), it->path().string()};
    const bool dup =
        std::any_of(out.begin(), out.end(), [&](const ModelEntry& o) { return o.name == m.name; });
    if (!dup) found.push_back(std::move(m));
  }
  std::sort(found.begin(), found.end(),
            [](const ModelEntry& a, const ModelEntry& b) { return a.name < b.name; });
  out.insert(out.end(), found.begin(), found.end());
  return out;
}

std::optional<ModelEntry> ModelCatalog::find(const std::string& name) const {
  std::string n = name;
  const size_t bracket = n.find(" [");
  if (bracket != std::string::npos && !n.empty() && n.back() == ']') n.resize(bracket);
  if (n.empty()) return std::nullopt;
  for (ModelEntry& e : list())
    if (e.name == n) return e;
  return std::nullopt;
}

}  // namespace sdpal::server
