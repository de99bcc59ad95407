// `sdpal inspect MODEL`: what each weight of a model (compressed or not) costs: per tensor the
// storage kind, bits and bytes; per component and overall the parameters, bits per weight (over
// all weights and over the compression-candidate layers), size and ratio to fp16.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "compression/compress_model.h"
#include "core/error.h"
#include "formats/compressed_format.h"
#include "formats/safetensors.h"
#include "pipeline/model_files.h"
#include "tools/command.h"

namespace fs = std::filesystem;

namespace sdpal {
namespace {

struct Args {
  std::string model, variant;
  bool json = false, all = false;
  int64_t min_elements = 100000;
};

struct TensorInfo {
  std::string name, kind, granularity;
  int bits = 0;
  int64_t group_size = 0, entries = 0, params = 0, stored_bytes = 0;
  Shape shape;
  bool candidate = false, compressed = false;
};

struct Totals {
  int64_t params = 0, stored_bytes = 0, file_bytes = 0;
  int64_t candidate_params = 0, candidate_bytes = 0;
  int64_t compressed_tensors = 0, compressed_params = 0, compressed_bytes = 0;
  void add(const Totals& o) {
    params += o.params;
    stored_bytes += o.stored_bytes;
    file_bytes += o.file_bytes;
    candidate_params += o.candidate_params;
    candidate_bytes += o.candidate_bytes;
    compressed_tensors += o.compressed_tensors;
    compressed_params += o.compressed_params;
    compressed_bytes += o.compressed_bytes;
  }
  void add(const TensorInfo& t) {
    params += t.params;
    stored_bytes += t.stored_bytes;
    if (t.candidate) {
      candidate_params += t.params;
      candidate_bytes += t.stored_bytes;
    }
    if (t.compressed) {
      ++compressed_tensors;
      compressed_params += t.params;
      compressed_bytes += t.stored_bytes;
    }
  }
};

double bpw(int64_t bytes, int64_t params) { return params ? 8.0 * bytes / params : 0.0; }

struct Component {
  std::string name;
  std::vector<std::pair<std::string, int64_t>> files;  // path, size on disk
  std::vector<TensorInfo> tensors;
  Totals totals;
};

std::string plain_kind(DType t) {
  switch (t) {
    case DType::F16:
      return "fp16";
    case DType::F32:
      return "fp32";
    case DType::BF16:
      return "bf16";
    default: {
      std::string s = dtype_name(t);
      for (auto& c : s) c = static_cast<char>(std::tolower(c));
      return s;
    }
  }
}

void inspect_file(const std::string& path, const Args& a, Component* c) {
  SafetensorsFile f(path);
  const CompressedTensors ct = read_compressed(f);
  c->files.emplace_back(path, static_cast<int64_t>(f.file_size()));
  c->totals.file_bytes += static_cast<int64_t>(f.file_size());
  std::vector<TensorInfo> infos;
  for (const auto& [name, v] : ct.weights) {
    TensorInfo t;
    t.name = name;
    t.compressed = t.candidate = true;
    t.shape = v.shape;
    t.params = v.numel();
    const std::vector<std::string> parts =
        v.kind == CompressedView::Kind::Palette
            ? std::vector<std::string>{lut_tensor_name(name), indices_tensor_name(name)}
            : std::vector<std::string>{q_tensor_name(name), scale_tensor_name(name),
                                       zero_tensor_name(name)};
    for (const auto& p : parts)
      if (const TensorView* pv = f.find(p)) t.stored_bytes += static_cast<int64_t>(pv->nbytes);
    if (v.kind == CompressedView::Kind::Palette) {
      t.kind = "palette";
      t.bits = v.nbits;
      t.group_size = v.group_size;
      t.entries = v.entries;
      t.granularity = v.group_size ? "per-grouped-channel" : "per-tensor";
    } else {
      t.kind = v.symmetric ? "linear8" : "linear8-asym";
      t.bits = 8;
      t.granularity = "per-channel";
    }
    infos.push_back(std::move(t));
  }
  for (const auto& v : f.tensors()) {
    if (ct.component_tensor_names.count(v.name)) continue;
    TensorInfo t;
    t.name = v.name;
    t.kind = plain_kind(v.dtype);
    t.bits = static_cast<int>(dtype_size(v.dtype) * 8);
    t.shape = v.shape;
    t.params = v.numel();
    t.stored_bytes = static_cast<int64_t>(v.nbytes);
    t.candidate = is_compression_candidate(v.name, v.shape, v.dtype, a.min_elements, false);
    infos.push_back(std::move(t));
  }
  std::sort(infos.begin(), infos.end(),
            [](const TensorInfo& x, const TensorInfo& y) { return x.name < y.name; });
  for (auto& t : infos) {
    c->totals.add(t);
    c->tensors.push_back(std::move(t));
  }
}

std::vector<Component> inspect(const Args& a) {
  const fs::path p(a.model);
  if (!fs::exists(p)) fail("model not found: " + a.model);
  std::vector<Component> out;
  if (!fs::is_directory(p)) {
    Component c;
    c.name = p.stem().string();
    inspect_file(a.model, a, &c);
    out.push_back(std::move(c));
    return out;
  }
  if (!fs::exists(p / "model_index.json") && !fs::exists(p / "unet"))
    fail(a.model + " is not a diffusers model folder (no model_index.json, no unet/)");
  for (const auto& mc : model_components()) {
    if (!fs::exists(p / mc.name)) continue;
    Component c;
    c.name = mc.name;
    for (const auto& f : component_files(p / mc.name, mc.stem, a.variant, mc.what))
      inspect_file(f, a, &c);
    out.push_back(std::move(c));
  }
  SDPAL_CHECK(!out.empty(), a.model + ": no component folders with weights");
  return out;
}

nlohmann::ordered_json totals_json(const Totals& t) {
  nlohmann::ordered_json j;
  j["parameters"] = t.params;
  j["stored_bytes"] = t.stored_bytes;
  j["file_bytes"] = t.file_bytes;
  j["mb"] = t.file_bytes / 1e6;
  j["bits_per_weight"] = bpw(t.stored_bytes, t.params);
  j["ratio_to_fp16"] = t.params ? static_cast<double>(t.stored_bytes) / (2.0 * t.params) : 0.0;
  j["candidate_parameters"] = t.candidate_params;
  j["candidate_stored_bytes"] = t.candidate_bytes;
  j["candidate_bits_per_weight"] = bpw(t.candidate_bytes, t.candidate_params);
  j["compressed_tensors"] = t.compressed_tensors;
  j["compressed_parameters"] = t.compressed_params;
  j["compressed_stored_bytes"] = t.compressed_bytes;
  return j;
}

void print_json(const Args& a, const std::vector<Component>& comps) {
  nlohmann::ordered_json j;
  j["model"] = a.model;
  j["min_elements"] = a.min_elements;
  Totals all;
  nlohmann::ordered_json cj = nlohmann::ordered_json::array();
  for (const auto& c : comps) {
    nlohmann::ordered_json x;
    x["name"] = c.name;
    x["files"] = nlohmann::ordered_json::array();
    for (const auto& [path, bytes] : c.files)
      x["files"].push_back({{"path", path}, {"bytes", bytes}});
    const nlohmann::ordered_json totals = totals_json(c.totals);
    for (const auto& [k, v] : totals.items()) x[k] = v;
    x["tensors"] = nlohmann::ordered_json::array();
    for (const auto& t : c.tensors) {
      if (!a.all && !t.candidate) continue;
      nlohmann::ordered_json tj;
      tj["name"] = t.name;
      tj["kind"] = t.kind;
      tj["bits"] = t.bits;
      if (!t.granularity.empty()) tj["granularity"] = t.granularity;
      if (t.group_size) tj["group_size"] = t.group_size;
      if (t.entries) tj["entries"] = t.entries;
      tj["shape"] = t.shape;
      tj["parameters"] = t.params;
      tj["stored_bytes"] = t.stored_bytes;
      tj["candidate"] = t.candidate;
      tj["compressed"] = t.compressed;
      x["tensors"].push_back(std::move(tj));
    }
    cj.push_back(std::move(x));
    all.add(c.totals);
  }
  j["components"] = std::move(cj);
  j["total"] = totals_json(all);
  std::printf("%s\n", j.dump(2).c_str());
}

void print_totals(const char* label, const Totals& t) {
  std::printf(
      "  %-14s %9.2fM params  %9.2f MB  %6.2f bits/weight  (candidates %.2fM params, %.2f "
      "bits/weight)  %.3fx fp16  %lld compressed\n",
      label, t.params / 1e6, t.file_bytes / 1e6, bpw(t.stored_bytes, t.params),
      t.candidate_params / 1e6, bpw(t.candidate_bytes, t.candidate_params),
      t.params ? static_cast<double>(t.stored_bytes) / (2.0 * t.params) : 0.0,
      static_cast<long long>(t.compressed_tensors));
}

void print_text(const Args& a, const std::vector<Component>& comps) {
  std::printf("%s\n", a.model.c_str());
  Totals all;
  for (const auto& c : comps) {
    std::printf("\n%s:", c.name.c_str());
    for (const auto& [path, bytes] : c.files)
      std::printf(" %s (%.2f MB)", fs::path(path).filename().c_str(), bytes / 1e6);
    std::printf("\n  %-64s %-12s %4s %-19s %-20s %10s\n", "tensor", "kind", "bits", "granularity",
                "shape", "bytes");
    for (const auto& t : c.tensors) {
      if (!a.all && !t.candidate) continue;
      std::string gran = t.granularity;
      if (t.group_size) gran = "group " + std::to_string(t.group_size);
      std::printf("  %-64s %-12s %4d %-19s %-20s %10lld\n", t.name.c_str(), t.kind.c_str(), t.bits,
                  gran.empty() ? "-" : gran.c_str(), shape_str(t.shape).c_str(),
                  static_cast<long long>(t.stored_bytes));
    }
    print_totals(c.name.c_str(), c.totals);
    all.add(c.totals);
  }
  std::printf("\n");
  print_totals("total", all);
}

const bool registered = register_command(
    {"inspect",
     "Show how a model's weights are stored (compressed or not): per tensor and per component "
     "bits per weight, size and ratio to fp16",
     [](CLI::App& app) {
       auto a = std::make_shared<Args>();
       app.add_option("model", a->model, "Diffusers folder or one .safetensors file")->required();
       app.add_flag("--json", a->json, "Machine-readable output");
       app.add_flag("--all", a->all, "List every tensor, not only candidates and compressed ones");
       app.add_option("--min-elements", a->min_elements,
                      "Candidate layers have more elements than this (default 100000)");
       app.add_option("--variant", a->variant, "Weight files to read, e.g. fp16");
       app.callback([a] {
         const auto comps = inspect(*a);
         if (a->json)
           print_json(*a, comps);
         else
           print_text(*a, comps);
       });
     }});

}  // namespace
}  // namespace sdpal
