#include "pipeline/embeddings.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "formats/safetensors.h"

namespace sdpal {
namespace {

Tensor as_vectors(const SafetensorsFile& f, const std::string& name, const std::string& path) {
  Tensor t = f.to_f32(name);
  if (t.ndim() == 1) t.reshape_inplace({1, t.dim(0)});
  SDPAL_CHECK(t.ndim() == 2 && t.dim(0) > 0 && t.dim(0) <= 75,
              path + ": '" + name + "' has shape " + shape_str(t.shape()) +
                  "; an embedding is [vectors, width] with 1 to 75 vectors");
  for (int64_t i = 0; i < t.numel(); ++i)
    SDPAL_CHECK(std::isfinite(t[i]), path + ": '" + name + "' holds a value that is not finite");
  return t;
}

}  // namespace

EmbeddingLibrary EmbeddingLibrary::load_dir(const std::string& dir, const ClipTokenizer& tok) {
  SDPAL_CHECK(std::filesystem::is_directory(dir), "embeddings folder " + dir + " does not exist");
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  EmbeddingLibrary lib;
  for (const auto& p : files) {
    const std::string path = p.string();
    const SafetensorsFile f(path);
    TextualInversion ti;
    ti.name = p.stem().string();
    ti.path = path;
    if (f.has("clip_l") && f.has("clip_g")) {
      ti.vectors = as_vectors(f, "clip_l", path);
      ti.vectors_g = as_vectors(f, "clip_g", path);
      SDPAL_CHECK(ti.vectors.dim(0) == ti.vectors_g.dim(0),
                  path + ": clip_l and clip_g have different numbers of vectors");
    } else {
      SDPAL_CHECK(f.tensors().size() == 1,
                  path + ": an embedding file holds one tensor (or clip_l and clip_g), this one " +
                      std::to_string(f.tensors().size()));
      ti.vectors = as_vectors(f, f.tensors()[0].name, path);
    }
    ti.ids = tok.tokenize(ti.name);
    if (ti.ids.empty()) continue;  // a name of nothing but spaces cannot appear in a prompt
    lib.all_.push_back(std::move(ti));
  }
  for (size_t i = 0; i < lib.all_.size(); ++i) lib.by_first_[lib.all_[i].ids[0]].push_back(i);
  for (auto& [first, list] : lib.by_first_)
    std::stable_sort(list.begin(), list.end(), [&](size_t a, size_t b) {
      return lib.all_[a].ids.size() > lib.all_[b].ids.size();
    });
  return lib;
}

const TextualInversion* EmbeddingLibrary::find_at(const std::vector<int>& tokens,
                                                  size_t pos) const {
  auto it = by_first_.find(tokens[pos]);
  if (it == by_first_.end()) return nullptr;
  for (size_t i : it->second) {
    const auto& ids = all_[i].ids;
    if (pos + ids.size() <= tokens.size() &&
        std::equal(ids.begin(), ids.end(), tokens.begin() + pos))
      return &all_[i];
  }
  return nullptr;
}

}  // namespace sdpal
