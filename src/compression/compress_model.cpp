#include "compression/compress_model.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "compression/palettize.h"
#include "compression/quantize.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/compressed_format.h"
#include "formats/safetensors.h"
#include "models/config.h"
#include "pipeline/model_files.h"

namespace fs = std::filesystem;

namespace sdpal {

namespace {

// Tensors at least this large are compressed one at a time with all threads inside (palettize and
// quantize parallelise themselves); smaller ones run side by side, one thread each.
constexpr int64_t kSerialTensorElements = int64_t(1) << 23;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_float_dtype(DType t) { return t == DType::F16 || t == DType::F32 || t == DType::BF16; }

// Files in a component folder that hold weights (any framework or variant): the compressor writes
// the chosen ones itself and leaves the others out.
bool is_weight_file(const std::string& name) {
  for (const char* ext : {".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx",
                          ".h5", ".pb", ".onnx_data"})
    if (ends_with(name, ext)) return true;
  return ends_with(name, ".safetensors.index.json") || ends_with(name, ".bin.index.json") ||
         ends_with(name, ".msgpack.index.json");
}

// What happens to one tensor.
struct TensorPlan {
  size_t tensor = 0;  // index in the file's tensors()
  CompressMode mode = CompressMode::Palettize;
  int nbits = 0;
  int64_t group_size = 0;
};

struct FilePlan {
  std::string src;
  std::shared_ptr<SafetensorsFile> file;
  std::vector<TensorPlan> compress;  // in file order
};

struct ComponentPlan {
  ModelComponent component;
  fs::path dir;
  bool compress = false;
  std::vector<std::string> files;  // weight files (copied as they are when !compress)
  std::string index_file;          // shard index, or ""
  std::vector<FilePlan> plans;     // when compress
};

// A path's components start with all of `prefix`'s.
bool is_within(const fs::path& p, const fs::path& prefix) {
  auto a = p.begin(), b = prefix.begin();
  for (; b != prefix.end(); ++a, ++b)
    if (a == p.end() || *a != *b) return false;
  return true;
}

void check_options(const CompressOptions& o) {
  if (o.mode == CompressMode::Palettize)
    SDPAL_CHECK(valid_palette_bits(o.nbits), "compress: --nbits " + std::to_string(o.nbits) +
                                                 " is not supported (1, 2, 4, 6 or 8)");
  SDPAL_CHECK(o.group_size >= 0, "compress: --group-size must not be negative");
  SDPAL_CHECK(o.min_elements >= 0, "compress: --min-elements must not be negative");
  SDPAL_CHECK(!o.components.empty(), "compress: no components to compress");
  for (const auto& c : o.components) {
    bool known = false;
    for (const auto& mc : model_components()) known = known || c == mc.name;
    SDPAL_CHECK(known, "compress: unknown component '" + c + "' (unet, text_encoder, vae)");
  }
  for (const auto& [layer, bits] : o.layer_bits) {
    if (o.mode == CompressMode::Linear8)
      SDPAL_CHECK(bits == 8 || bits == kKeepLayer, "compress: per-layer setting " +
                                                       std::to_string(bits) + " for '" + layer +
                                                       "' is not 8 or 16 (linear8 mode)");
    else
      SDPAL_CHECK(valid_palette_bits(bits) || bits == kKeepLayer,
                  "compress: per-layer setting " + std::to_string(bits) + " for '" + layer +
                      "' is not 1, 2, 4, 6, 8 or 16");
  }
}

// Decides the fate of every tensor of a chosen component's file. `used_keys` collects the
// per-layer keys that matched.
FilePlan plan_file(const std::string& path, const std::string& component, const CompressOptions& o,
                   std::set<std::string>* used_keys) {
  FilePlan fp;
  fp.src = path;
  fp.file = std::make_shared<SafetensorsFile>(path);
  if (is_compressed_file(*fp.file))
    fail(path + " is already compressed (" + kCompressedFormatVersion +
         "); compress the original model instead");
  const auto& tensors = fp.file->tensors();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorView& t = tensors[i];
    const std::string what = path + ": tensor '" + t.name + "'";
    int bits = 0;  // 0: keep
    bool explicit_setting = false;
    if (ends_with(t.name, ".weight")) {
      const std::string layer = t.name.substr(0, t.name.size() - 7);
      auto it = o.layer_bits.find(component + "/" + layer);
      if (it == o.layer_bits.end()) it = o.layer_bits.find(layer);
      if (it != o.layer_bits.end()) {
        used_keys->insert(it->first);
        explicit_setting = true;
        if (it->second != kKeepLayer) {
          SDPAL_CHECK((t.shape.size() == 2 || t.shape.size() == 4) && is_float_dtype(t.dtype),
                      what + " (per-layer setting '" + it->first + "') is " + dtype_name(t.dtype) +
                          " " + shape_str(t.shape) + ", not a Linear or Conv weight");
          bits = it->second;
        }
      }
    }
    if (!explicit_setting &&
        is_compression_candidate(t.name, t.shape, t.dtype, o.min_elements, o.include_embeddings))
      bits = o.mode == CompressMode::Linear8 ? 8 : o.nbits;
    if (bits == 0) continue;
    TensorPlan tp;
    tp.tensor = i;
    tp.mode = o.mode;
    tp.nbits = bits;
    if (o.mode == CompressMode::Palettize) {
      tp.group_size = o.group_size;
      if (o.group_size > 0 && t.shape[0] % o.group_size != 0)
        fail(what + " has " + std::to_string(t.shape[0]) +
             " output channels, not divisible by --group-size " + std::to_string(o.group_size));
    }
    fp.compress.push_back(tp);
  }
  return fp;
}

CompressedEntry compress_tensor(const SafetensorsFile& f, const TensorView& t, const TensorPlan& tp,
                                bool symmetric) {
  const Tensor w = f.to_f32(t.name);
  CompressedEntry e{t.name, t};
  if (tp.mode == CompressMode::Palettize)
    e.value = palettize(w.data(), t.shape, t.dtype, tp.nbits, tp.group_size);
  else
    e.value = quantize_linear8(w.data(), t.shape, t.dtype, symmetric);
  return e;
}

int64_t stored_bytes(const CompressedEntry& e) {
  if (const auto* p = std::get_if<PalettizedWeight>(&e.value))
    return static_cast<int64_t>(p->lut.size() * 2 + p->indices.size());
  if (const auto* l = std::get_if<Linear8Weight>(&e.value))
    return static_cast<int64_t>(l->q.size() + l->scale.size() * 4 + l->zero.size());
  return static_cast<int64_t>(std::get<TensorView>(e.value).nbytes);
}

// The stored tensors of a compressed entry (its component tensors).
std::vector<std::string> component_names(const CompressedEntry& e) {
  if (std::holds_alternative<PalettizedWeight>(e.value))
    return {lut_tensor_name(e.name), indices_tensor_name(e.name)};
  if (std::get<Linear8Weight>(e.value).symmetric)
    return {q_tensor_name(e.name), scale_tensor_name(e.name)};
  return {q_tensor_name(e.name), scale_tensor_name(e.name), zero_tensor_name(e.name)};
}

// Compresses the planned tensors of one file and writes it to `dst`; returns the stored bytes.
int64_t compress_file(const FilePlan& fp, const std::string& component, const std::string& dst,
                      const CompressOptions& o, CompressSummary* summary,
                      std::map<std::string, std::vector<std::string>>* parts) {
  const auto& tensors = fp.file->tensors();
  std::vector<CompressedEntry> entries;
  entries.reserve(tensors.size());
  for (const auto& t : tensors) entries.push_back({t.name, t});

  // Largest first: the big ones one at a time with all threads, then the rest side by side.
  std::vector<const TensorPlan*> order;
  for (const auto& tp : fp.compress) order.push_back(&tp);
  std::stable_sort(order.begin(), order.end(), [&](const TensorPlan* a, const TensorPlan* b) {
    return tensors[a->tensor].numel() > tensors[b->tensor].numel();
  });
  size_t n_serial = 0;
  while (n_serial < order.size() &&
         tensors[order[n_serial]->tensor].numel() >= kSerialTensorElements)
    ++n_serial;
  for (size_t i = 0; i < n_serial; ++i) {
    const TensorPlan& tp = *order[i];
    entries[tp.tensor] = compress_tensor(*fp.file, tensors[tp.tensor], tp, o.symmetric);
  }
  std::exception_ptr error;
  std::mutex error_mutex;
  const int64_t n_rest = static_cast<int64_t>(order.size() - n_serial);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n_rest; ++i) {
    const TensorPlan& tp = *order[n_serial + i];
    try {
      entries[tp.tensor] = compress_tensor(*fp.file, tensors[tp.tensor], tp, o.symmetric);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);

  std::map<std::string, std::string> metadata;
  for (const auto& [k, v] : fp.file->metadata())
    if (k.rfind(kCompressedKeyPrefix, 0) != 0) metadata[k] = v;
  write_compressed_safetensors(dst, entries, metadata);

  int64_t total = 0;
  for (const auto& tp : fp.compress) {
    const TensorView& t = tensors[tp.tensor];
    CompressedTensorInfo info;
    info.component = component;
    info.name = t.name;
    info.kind = tp.mode == CompressMode::Palettize ? CompressedView::Kind::Palette
                                                   : CompressedView::Kind::Linear8;
    info.nbits = tp.mode == CompressMode::Palettize ? tp.nbits : 8;
    info.group_size = tp.group_size;
    info.params = t.numel();
    info.bytes_before = static_cast<int64_t>(t.nbytes);
    info.bytes_after = stored_bytes(entries[tp.tensor]);
    summary->params_compressed += info.params;
    summary->bytes_before += info.bytes_before;
    summary->bytes_after += info.bytes_after;
    summary->tensors.push_back(info);
    (*parts)[t.name] = component_names(entries[tp.tensor]);
  }
  for (const auto& e : entries) total += stored_bytes(e);
  return total;
}

// The shard index with each compressed weight replaced by its component tensors.
void write_index(const std::string& src, const std::string& dst,
                 const std::map<std::string, std::vector<std::string>>& parts, int64_t total_size) {
  nlohmann::json idx = read_json_file(src);
  nlohmann::json map = nlohmann::json::object();
  for (const auto& [name, file] : idx["weight_map"].items()) {
    auto it = parts.find(name);
    if (it == parts.end())
      map[name] = file;
    else
      for (const auto& p : it->second) map[p] = file;
  }
  idx["weight_map"] = map;
  if (!idx.contains("metadata") || !idx["metadata"].is_object())
    idx["metadata"] = nlohmann::json::object();
  idx["metadata"]["total_size"] = total_size;
  const std::string text = idx.dump(2) + "\n";
  write_file_atomic(dst, [&](std::FILE* f) {
    if (std::fwrite(text.data(), 1, text.size(), f) != text.size()) fail("cannot write " + dst);
  });
}

// Copies a file into the temp folder; the copy has the default mode (the user's to change or
// delete, whatever the source's). Plain reads and writes, not fs::copy_file: its sendfile reports a
// full disk as "Input/output error".
void copy_file_writable(const fs::path& from, const fs::path& to) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> in(std::fopen(from.c_str(), "rb"), std::fclose);
  if (!in) fail("compress: cannot read " + from.string() + ": " + std::strerror(errno));
  std::FILE* out = std::fopen(to.c_str(), "wb");
  if (!out) fail("compress: cannot write " + to.string() + ": " + std::strerror(errno));
  std::vector<char> buf(1 << 20);
  int err = 0;
  size_t n = 0;
  while (!err && (n = std::fread(buf.data(), 1, buf.size(), in.get())) > 0)
    if (std::fwrite(buf.data(), 1, n, out) != n) err = errno;
  const bool read_failed = std::ferror(in.get()) != 0;
  if (std::fclose(out) != 0 && !err) err = errno;
  if (err) fail("compress: " + write_error_message(to.string(), err));
  if (read_failed) fail("compress: cannot read " + from.string());
}

// Copies everything except the weight files of the known component folders. Destinations are
// built lexically from the path inside the input (a symbolic link, as the Hugging Face cache makes
// of every file, keeps its own name and place, never its target's), and the link's target's
// contents are copied, not the link. Nothing is ever written outside `out`.
void copy_non_weight_files(const fs::path& in, const fs::path& out) {
  std::set<std::string> component_dirs;
  for (const auto& c : model_components()) component_dirs.insert(c.name);
  for (auto it =
           fs::recursive_directory_iterator(in, fs::directory_options::follow_directory_symlink);
       it != fs::recursive_directory_iterator(); ++it) {
    const fs::path rel = it->path().lexically_relative(in);
    SDPAL_CHECK(!rel.empty() && rel.is_relative() && *rel.begin() != "..",
                "compress: " + it->path().string() + " is not inside the input folder " +
                    in.string());
    const fs::path dst = (out / rel).lexically_normal();
    const fs::path inside = dst.lexically_relative(out);
    SDPAL_CHECK(!inside.empty() && *inside.begin() != "..",
                "compress: refusing to write " + dst.string() + " outside the output folder");
    if (it->is_symlink() && !fs::exists(it->path()))
      fail("compress: " + it->path().string() + " is a broken symbolic link (to " +
           fs::read_symlink(it->path()).string() + "); fix or remove it and run again");
    if (it->is_directory()) {
      fs::create_directories(dst);
      continue;
    }
    if (!it->is_regular_file()) continue;
    const bool in_component =
        std::distance(rel.begin(), rel.end()) == 2 && component_dirs.count(rel.begin()->string());
    if (in_component && is_weight_file(rel.filename().string())) continue;
    fs::create_directories(dst.parent_path());
    copy_file_writable(it->path(), dst);
  }
}

std::string mb(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MB", bytes / 1e6);
  return buf;
}

}  // namespace

bool is_embedding_table(const std::string& name) {
  std::string module = ends_with(name, ".weight") ? name.substr(0, name.size() - 7) : name;
  const size_t dot = module.rfind('.');
  const std::string leaf = dot == std::string::npos ? module : module.substr(dot + 1);
  return ends_with(leaf, "embedding") || ends_with(leaf, "embeddings") || leaf == "embed_tokens" ||
         leaf == "embed_positions" || leaf == "wte" || leaf == "wpe";
}

bool is_compression_candidate(const std::string& name, const Shape& shape, DType dtype,
                              int64_t min_elements, bool include_embeddings) {
  if (!ends_with(name, ".weight") || (shape.size() != 2 && shape.size() != 4)) return false;
  if (!is_float_dtype(dtype) || shape_numel(shape) <= min_elements) return false;
  return include_embeddings || !is_embedding_table(name);
}

CompressSummary compress_model(const std::string& in, const std::string& out,
                               const CompressOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  auto log = [&](const std::string& line) {
    if (o.log) o.log(line);
  };
  check_options(o);
  if (!fs::exists(in)) fail("model not found: " + in);
  if (!fs::is_directory(in))
    fail(in +
         " is not a diffusers model folder (compress takes a folder; single files are not "
         "supported)");
  if (!fs::exists(fs::path(in) / "model_index.json") && !fs::exists(fs::path(in) / "unet"))
    fail(in + " is not a diffusers model folder (no model_index.json, no unet/)");
  SDPAL_CHECK(!out.empty(), "compress: --output is required");
  const fs::path src = fs::canonical(in);
  fs::path dst = fs::weakly_canonical(fs::absolute(out));
  if (dst.filename().empty()) dst = dst.parent_path();
  if (is_within(dst, src) || is_within(src, dst))
    fail("compress: the output folder " + out + " and the model folder " + in +
         " must not contain each other");
  if (fs::exists(dst)) {
    if (!fs::is_directory(dst)) fail("compress: output " + out + " exists and is not a folder");
    if (!fs::is_empty(dst) && !o.force)
      fail("compress: output folder " + out +
           " exists and is not empty (use --force to replace it)");
  }

  // Plan everything (and find every error) before writing anything.
  std::vector<ComponentPlan> plans;
  std::set<std::string> used_keys;
  for (const auto& c : model_components()) {
    ComponentPlan cp;
    cp.component = c;
    cp.dir = src / c.name;
    cp.compress = std::find(o.components.begin(), o.components.end(), c.name) != o.components.end();
    if (!cp.compress && !fs::exists(cp.dir)) continue;
    cp.files = component_files(cp.dir, c.stem, o.variant, c.what);
    cp.index_file = component_index_file(cp.dir, c.stem, o.variant);
    if (cp.compress)
      for (const auto& f : cp.files) cp.plans.push_back(plan_file(f, c.name, o, &used_keys));
    plans.push_back(std::move(cp));
  }
  for (const auto& [key, bits] : o.layer_bits)
    if (!used_keys.count(key))
      fail("compress: per-layer setting for '" + key + "' matches no weight '" + key +
           ".weight' in the chosen components");

  // Built under a temp name and swapped in whole: a kill leaves the previous output or the new.
  const fs::path tmp = temp_folder_for(dst);
  CompressSummary summary;
  try {
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    copy_non_weight_files(src, tmp);
    for (const auto& cp : plans) {
      const fs::path odir = tmp / cp.component.name;
      fs::create_directories(odir);
      for (const auto& f : cp.files) summary.weight_file_bytes_before += fs::file_size(f);
      if (!cp.compress) {
        for (const auto& f : cp.files) copy_file_writable(f, odir / fs::path(f).filename());
        if (!cp.index_file.empty())
          copy_file_writable(cp.index_file, odir / fs::path(cp.index_file).filename());
        log(std::string(cp.component.name) + ": copied");
        continue;
      }
      std::map<std::string, std::vector<std::string>> parts;
      int64_t total_size = 0;
      for (const auto& fp : cp.plans) {
        const size_t before = summary.tensors.size();
        const std::string name = fs::path(fp.src).filename().string();
        total_size +=
            compress_file(fp, cp.component.name, (odir / name).string(), o, &summary, &parts);
        int64_t b0 = 0, b1 = 0;
        for (size_t i = before; i < summary.tensors.size(); ++i) {
          b0 += summary.tensors[i].bytes_before;
          b1 += summary.tensors[i].bytes_after;
        }
        log(std::string(cp.component.name) + "/" + name + ": " +
            std::to_string(summary.tensors.size() - before) + " of " +
            std::to_string(fp.file->tensors().size()) + " tensors compressed, " + mb(b0) + " -> " +
            mb(b1));
      }
      if (!cp.index_file.empty()) {
        write_index(cp.index_file, (odir / fs::path(cp.index_file).filename()).string(), parts,
                    total_size);
      }
    }
    for (const auto& cp : plans)
      for (const auto& f : cp.files)
        summary.weight_file_bytes_after +=
            fs::file_size(tmp / cp.component.name / fs::path(f).filename());
    // A source truncated meanwhile was read as zeros (core/file_mapping.h): fail, keep no output.
    for (const auto& cp : plans)
      for (const auto& fp : cp.plans) fp.file->check_intact();
    replace_folder_atomic(tmp, dst);  // an old output (empty, or --force) is removed
  } catch (const fs::filesystem_error& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    const int err = e.code().value();
    if (err == ENOSPC || err == EDQUOT || err == EFBIG)
      fail("compress: " + write_error_message(out, err));
    fail("compress: cannot write " + out + ": " + e.what());
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

}  // namespace sdpal
