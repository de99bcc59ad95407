// Single-file checkpoints (formats/checkpoint_keymap.h, checkpoint_arch.h): tensor-name mapping
// from the original CompVis/OpenCLIP layout to diffusers names and architecture inference from
// shapes. The input is a text listing of a checkpoint's header, one entry per line:
//   <tensor name> <dtype> <d0>,<d1>,...     a tensor (an empty shape list: a scalar)
//   @<key>=<value>                          a __metadata__ entry (e.g. sdpal.unet_config)
// The harness writes it as a safetensors file whose data region is a sparse hole of the right
// size (zeros: nothing real is allocated), so real SD shapes cost nothing. Invariants: every
// mapped name is a tensor of the file, no two file tensors map to one runtime name, the kind is
// sd1 or sd2, inferred configs are objects that the model config readers accept or reject with
// sdpal::Error, and UNet/VAE names map back to the original name (or to one with the same
// diffusers name: leading zeros in indices are the only other spelling).
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "formats/checkpoint_keymap.h"
#include "fuzz/fuzz_support.h"
#include "models/clip_text.h"
#include "models/unet.h"
#include "models/vae.h"

using namespace sdpal;
using nlohmann::json;

namespace {

constexpr uint64_t kMaxSparseBytes = uint64_t(1) << 36;  // 64 GiB of hole at most

// Builds the safetensors file; false if the listing does not describe one we can write.
bool write_checkpoint(std::string_view listing, const std::string& path) {
  json header = json::object();
  json metadata = json::object();
  uint64_t offset = 0;
  std::istringstream in{std::string(listing)};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '@') {
      const size_t eq = line.find('=');
      if (eq == std::string::npos) continue;
      metadata[line.substr(1, eq - 1)] = line.substr(eq + 1);
      continue;
    }
    std::istringstream l(line);
    std::string name, dtype, dims;
    l >> name >> dtype >> dims;
    if (name.empty() || dtype.empty()) continue;
    DType dt;
    if (!parse_dtype(dtype, &dt)) dt = DType::F16;
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    std::istringstream d(dims);
    std::string tok;
    while (std::getline(d, tok, ',')) {
      char* end = nullptr;
      const long long v = std::strtoll(tok.c_str(), &end, 10);
      if (end == tok.c_str() || v < 0 || v > (int64_t(1) << 32)) return false;
      if (v && numel > kMaxSparseBytes / static_cast<uint64_t>(v)) return false;
      numel *= static_cast<uint64_t>(v);
      shape.push_back(v);
    }
    const uint64_t nbytes = numel * dtype_size(dt);
    if (nbytes > kMaxSparseBytes - offset) return false;
    header[name] = {
        {"dtype", dtype_name(dt)}, {"shape", shape}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  const std::string h = header.dump(-1, ' ', false, json::error_handler_t::replace);
  const uint64_t hlen = h.size();
  std::string head(reinterpret_cast<const char*>(&hlen), 8);
  head += h;
  fuzz::scratch().write(std::filesystem::path(path).filename().string(), head);
  if (::truncate(path.c_str(), static_cast<off_t>(head.size() + offset)) != 0) return false;
  return true;
}

// The names a listing declares (the oracle for "mapped names are tensors of the file").
std::set<std::string> declared_names(const std::string& path) {
  std::set<std::string> r;
  const SafetensorsFile f(path);
  for (const auto& t : f.tensors()) r.insert(t.name);
  return r;
}

void check_component(const std::map<std::string, std::string>& m, const std::string& prefix,
                     const std::set<std::string>& names, const char* what) {
  std::set<std::string> targets;
  for (const auto& [file_key, runtime] : m) {
    FUZZ_CHECK(names.count(file_key),
               std::string(what) + ": mapped key not in the file: " + file_key);
    FUZZ_CHECK(file_key.rfind(prefix, 0) == 0 || prefix.empty(),
               std::string(what) + ": key outside its component: " + file_key);
    FUZZ_CHECK(targets.insert(runtime).second,
               std::string(what) + ": two file tensors map to " + runtime);
  }
}

void check_key_round_trips(const std::string& key) {
  for (int lpb = 1; lpb <= 3; ++lpb) {
    const auto d = unet_key_to_diffusers(key, lpb);
    if (!d) continue;
    for (const std::vector<bool>& up :
         {std::vector<bool>{true, true, true, false}, std::vector<bool>{false, true, true, true}}) {
      const auto o = unet_key_to_original(*d, lpb, up);
      if (!o) continue;  // the attention layout differs from this guess
      const auto again = unet_key_to_diffusers(*o, lpb);
      FUZZ_CHECK(again && *again == *d,
                 "unet key " + key + " -> " + *d + " -> " + *o + " does not map back");
    }
  }
  for (int levels = 1; levels <= 4; ++levels) {
    const auto d = vae_key_to_diffusers(key, levels);
    if (!d) continue;
    const auto o = vae_key_to_original(*d, levels);
    FUZZ_CHECK(o.has_value(), "vae key " + key + " -> " + *d + " has no original name");
    const auto again = vae_key_to_diffusers(*o, levels);
    FUZZ_CHECK(again && *again == *d, "vae key " + key + " -> " + *d + " -> " + *o);
  }
  if (const auto d = openclip_key_to_diffusers(key)) {
    if (const auto o = openclip_key_to_original(*d)) {
      const auto again = openclip_key_to_diffusers(*o);
      FUZZ_CHECK(again && *again == *d, "openclip key " + key + " -> " + *d + " -> " + *o);
    }
  }
  (void)clip_key_to_diffusers(key);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = fuzz::as_text(data, size);
  {
    std::istringstream in{std::string(text)};
    std::string line;
    // The first lines only: a whole header listing (~700 keys) would make each run slow, and
    // map_single_file below maps every key anyway.
    for (int n = 0; n < 64 && std::getline(in, line); ++n) {
      std::istringstream l(line);
      std::string name;
      l >> name;
      for (const char* p : {"model.diffusion_model.", "first_stage_model.",
                            "cond_stage_model.model.", "cond_stage_model.transformer."})
        if (name.rfind(p, 0) == 0) name = name.substr(std::strlen(p));
      FUZZ_EXPECT_ERRORS(check_key_round_trips(name));
    }
  }
  const std::string path = (fuzz::scratch().path() / "model.safetensors").string();
  if (!write_checkpoint(text, path)) return 0;
  FUZZ_EXPECT_ERRORS({
    json unet, vae, te;
    const SingleFileMap m = map_single_file(path, &unet, &vae, &te);
    FUZZ_CHECK(m.kind == "sd1" || m.kind == "sd2", "kind " + m.kind);
    const std::set<std::string> names = declared_names(path);
    check_component(m.unet, "model.diffusion_model.", names, "unet");
    check_component(m.vae, "first_stage_model.", names, "vae");
    check_component(m.text_encoder, "cond_stage_model.", names, "text encoder");
    FUZZ_CHECK(unet.is_object() && vae.is_object() && te.is_object(), "config not an object");
    FUZZ_EXPECT_ERRORS(UNetConfig::from_json(unet, "unet"));
    FUZZ_EXPECT_ERRORS(VaeConfig::from_json(vae, "vae"));
    FUZZ_EXPECT_ERRORS(ClipTextConfig::from_json(te, "text_encoder"));
  });
  return 0;
}
