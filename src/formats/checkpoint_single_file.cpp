// Mapping and writing single-file SD 1.x / 2.x checkpoints (see checkpoint_keymap.h).
#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "core/error.h"
#include "core/json_file.h"
#include "core/limits.h"
#include "formats/checkpoint_arch.h"
#include "formats/checkpoint_keymap.h"
#include "formats/safetensors.h"

namespace sdpal {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::string_view kUnetPrefix = "model.diffusion_model.";
constexpr std::string_view kVaePrefix = "first_stage_model.";
constexpr std::string_view kClipPrefix = "cond_stage_model.transformer.";
constexpr std::string_view kOpenClipPrefix = "cond_stage_model.model.";
constexpr std::string_view kSdxlPrefix = "conditioner.embedders.";
constexpr std::string_view kTextLayers = "text_model.encoder.layers.";
constexpr int64_t kVitHWidth = 1024;  // OpenCLIP ViT-H/14 text width (SD 2.x)
constexpr int kSd2TextLayers = 23;    // blocks SD 2.x uses of ViT-H's 24

constexpr const char* kSupported =
    "Supported: original-layout (CompVis / A1111) SD 1.x / 2.x .safetensors checkpoints with "
    "model.diffusion_model.*, first_stage_model.* and cond_stage_model.* tensors, or a diffusers "
    "model folder";

enum Component { kUnet = 0, kVae = 1, kText = 2, kComponents = 3 };
constexpr std::array<const char*, kComponents> kComponentNames = {"unet", "vae", "text_encoder"};
constexpr std::array<const char*, kComponents> kConfigKeys = {kUnetConfigKey, kVaeConfigKey,
                                                              kTextEncoderConfigKey};

// Parses "<int>." at the front of the tensor name s after `prefix`; -1 when absent. An index past
// limits::kMaxCheckpointIndex is an error naming the file and tensor: counts and block numbers
// derived from it (index + 1, index * levels) must not overflow.
int leading_index(std::string_view s, std::string_view prefix, const std::string& path) {
  if (!s.starts_with(prefix)) return -1;
  std::string_view rest = s.substr(prefix.size());
  int64_t n = -1;
  auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
  if (ec == std::errc::invalid_argument || p == rest.data() + rest.size() || *p != '.' ||
      rest[0] == '-')
    return -1;
  if (ec != std::errc() || n > limits::kMaxCheckpointIndex)
    fail(path + ": tensor '" + std::string(s) + "' has index " +
         std::string(rest.substr(0, p - rest.data())) + ", beyond the bound " +
         std::to_string(limits::kMaxCheckpointIndex));
  return static_cast<int>(n);
}

// A layer count from a config (an integer JSON value): bounded like the indices in tensor names,
// instead of get<int>() wrapping e.g. 4294967297 around to 1.
int64_t bounded_config_int(const json& v, const std::string& what) {
  const int64_t n = v.get<int64_t>();
  check_bound(n, 0, limits::kMaxCheckpointIndex, what);
  return n;
}

std::string lower_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext;
}

std::string pickle_message(const std::string& path, const std::string& why) {
  return path + " is a pickle checkpoint (" + why +
         "), which can execute code when loaded; it is refused. Convert it to .safetensors "
         "first, e.g. in Python: `from safetensors.torch import save_file; sd = torch.load(p, "
         "map_location='cpu', weights_only=True); save_file(sd.get('state_dict', sd), "
         "'model.safetensors')` (or any checkpoint converter with a safetensors option)";
}

// What the file's tensors look like, for errors about unsupported layouts.
std::string describe_prefixes(const SafetensorsFile& f) {
  std::map<std::string, int> counts;
  for (const TensorView& v : f.tensors()) {
    // The first two name segments, or the first one when the name has only two.
    const size_t first = v.name.find('.');
    const size_t second = first == std::string::npos ? first : v.name.find('.', first + 1);
    const size_t cut = second != std::string::npos ? second : first;
    counts[v.name.substr(0, cut)]++;
  }
  std::vector<std::pair<int, std::string>> top;
  for (const auto& [k, n] : counts) top.emplace_back(-n, k);
  std::sort(top.begin(), top.end());
  std::string s;
  for (size_t i = 0; i < top.size() && i < 6; ++i)
    s += (i ? ", " : "") + top[i].second + ".* (" + std::to_string(-top[i].first) + ")";
  if (top.size() > 6) s += ", ...";
  return s.empty() ? "no tensors" : s;
}

// A hint for files that are recognisably something other than an SD 1.x/2.x checkpoint.
std::string layout_hint(const SafetensorsFile& f) {
  for (const TensorView& v : f.tensors()) {
    const std::string& n = v.name;
    if (n.starts_with("lora_") || n.find(".lora_down.") != std::string::npos ||
        n.find(".lora_A.") != std::string::npos)
      return " This looks like a LoRA, not a full model.";
    if (n.starts_with("down_blocks.") || n.starts_with("encoder.down_blocks.") ||
        n.starts_with("text_model."))
      return " This looks like one component in diffusers naming: pass the model folder instead.";
  }
  return "";
}

struct Routed {
  std::array<std::map<std::string, std::string>, kComponents> rename;  // file key -> runtime name
  std::array<ShapeMap, kComponents> shapes;                            // runtime name -> shape
  std::vector<std::string> fused_qkv;  // "text_model.encoder.layers.N.self_attn." with in_proj
  DType text_dtype = DType::F32;
};

void add_route(Routed& r, Component c, const TensorView& v, const std::string& name,
               const std::string& path) {
  auto [it, fresh] = r.rename[c].emplace(v.name, name);
  (void)it;
  SDPAL_CHECK(fresh, "internal: duplicate tensor " + v.name);
  if (!r.shapes[c].emplace(name, v.shape).second)
    fail(path + ": two tensors map to the " + kComponentNames[c] + " tensor '" + name +
         "' (one of them is '" + v.name + "'); the checkpoint is ambiguous");
}

// The number of down levels' layers per block, read off the original numbering: the first
// downsampler sits at input_blocks.{layers_per_block + 1}.
int unet_layers_per_block(const SafetensorsFile& f) {
  const std::string in = std::string(kUnetPrefix) + "input_blocks.";
  int first_down = -1, last = -1;
  for (const TensorView& v : f.tensors()) {
    const int k = leading_index(v.name, in, f.path());
    if (k < 0) continue;
    last = std::max(last, k);
    std::string_view rest = std::string_view(v.name).substr(in.size());
    rest.remove_prefix(rest.find('.') + 1);
    if (rest.starts_with("0.op.") && (first_down < 0 || k < first_down)) first_down = k;
  }
  if (last < 1) fail(f.path() + ": the UNet has no input_blocks.1 (not an SD 1.x/2.x UNet)");
  return first_down > 0 ? first_down - 1 : last;
}

int vae_levels(const SafetensorsFile& f) {
  const std::string down = std::string(kVaePrefix) + "encoder.down.";
  int levels = 0;
  for (const TensorView& v : f.tensors())
    levels = std::max(levels, leading_index(v.name, down, f.path()) + 1);
  if (levels == 0) fail(f.path() + ": the VAE has no encoder.down.0 tensors");
  return levels;
}

bool ignored_openclip_key(std::string_view k) {
  return k == "text_projection" || k == "logit_scale" || k == "attn_mask" ||
         k.starts_with("visual.");
}

std::optional<json> embedded_config(const SafetensorsFile& f, const char* key) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) return std::nullopt;
  try {
    check_json_depth(it->second, key);
    json c = json::parse(it->second);
    if (!c.is_object()) fail("not a JSON object");
    return c;
  } catch (const std::exception& e) {
    fail(f.path() + ": __metadata__ '" + key + "' is not a valid config JSON object (" + e.what() +
         ")");
  }
}

// Sorts the file's tensors into the three components with runtime names. Throws for layouts this
// loader does not understand, listing what was found.
Routed route_tensors(const SafetensorsFile& f, bool* sd2) {
  const std::string& path = f.path();
  int unet_n = 0, vae_n = 0, clip_n = 0, openclip_n = 0, sdxl_n = 0;
  for (const TensorView& v : f.tensors()) {
    std::string_view n = v.name;
    unet_n += n.starts_with(kUnetPrefix);
    vae_n += n.starts_with(kVaePrefix);
    clip_n += n.starts_with(kClipPrefix);
    openclip_n += n.starts_with(kOpenClipPrefix);
    sdxl_n += n.starts_with(kSdxlPrefix);
  }
  if (sdxl_n)
    fail(path + ": this is an SDXL-style checkpoint (" + std::to_string(sdxl_n) +
         " conditioner.embedders.* tensors); single-file loading supports SD 1.x / 2.x only, "
         "use the model's diffusers folder");
  if (!unet_n)
    fail(path +
         ": not an SD 1.x / 2.x single-file checkpoint: no model.diffusion_model.* "
         "tensors (found " +
         describe_prefixes(f) + ")." + layout_hint(f) + " " + kSupported);
  if (!vae_n)
    fail(path + ": the checkpoint has a UNet but no VAE (first_stage_model.* tensors). " +
         kSupported);
  if (!clip_n && !openclip_n)
    fail(path +
         ": the checkpoint has no text encoder (cond_stage_model.transformer.* for SD 1.x "
         "or cond_stage_model.model.* for SD 2.x). " +
         kSupported);
  if (clip_n && openclip_n)
    fail(path +
         ": the checkpoint has both CLIP (cond_stage_model.transformer.*) and OpenCLIP "
         "(cond_stage_model.model.*) text encoder tensors; cannot tell SD 1.x from 2.x");
  *sd2 = openclip_n > 0;

  const int layers_per_block = unet_layers_per_block(f);
  const int levels = vae_levels(f);
  Routed r;
  std::vector<std::string> unknown;
  for (const TensorView& v : f.tensors()) {
    std::string_view n = v.name;
    std::optional<std::string> name;
    Component c;
    if (n.starts_with(kUnetPrefix)) {
      c = kUnet;
      name = unet_key_to_diffusers(std::string(n.substr(kUnetPrefix.size())), layers_per_block);
    } else if (n.starts_with(kVaePrefix)) {
      c = kVae;
      std::string_view k = n.substr(kVaePrefix.size());
      if (k.starts_with("loss.")) continue;  // training-only discriminator / LPIPS weights
      name = vae_key_to_diffusers(std::string(k), levels);
      if (name && is_vae_attention_conv_weight(*name) && v.shape.size() == 4) {
        if (v.shape[2] != 1 || v.shape[3] != 1)
          fail(path + ": VAE attention weight '" + v.name + "' has shape " + shape_str(v.shape) +
               ", expected [C, C, 1, 1] or [C, C]");
      }
    } else if (n.starts_with(kClipPrefix)) {
      c = kText;
      std::string_view k = n.substr(kClipPrefix.size());
      if (k.ends_with("position_ids")) continue;  // a buffer: positions are 0..N-1
      name = clip_key_to_diffusers(std::string(k));
    } else if (n.starts_with(kOpenClipPrefix)) {
      c = kText;
      std::string_view k = n.substr(kOpenClipPrefix.size());
      if (ignored_openclip_key(k)) continue;
      name = openclip_key_to_diffusers(std::string(k));
    } else {
      continue;  // EMA copies, noise-schedule buffers and other training state
    }
    if (!name) {
      unknown.push_back(v.name);
      continue;
    }
    if (c == kText && name->ends_with("token_embedding.weight")) r.text_dtype = v.dtype;
    add_route(r, c, v, *name, path);
  }
  if (!unknown.empty()) {
    std::string eg;
    for (size_t i = 0; i < unknown.size() && i < 4; ++i) eg += (i ? ", " : "") + unknown[i];
    fail(path + ": " + std::to_string(unknown.size()) +
         " tensors have no counterpart in an SD 1.x / 2.x model (e.g. " + eg +
         "); this architecture is not supported by single-file loading. " + kSupported);
  }
  return r;
}

// SD2: diffusers' text encoder stops at the penultimate OpenCLIP block, so only blocks below
// `keep` are mapped; fused in_proj tensors are routed to the q_proj names (split after mapping).
void fit_openclip_blocks(Routed& r, const std::optional<json>& text_cfg, const std::string& path) {
  int blocks = 0;
  for (const auto& [name, shape] : r.shapes[kText])
    blocks = std::max(blocks, leading_index(name, kTextLayers, path) + 1);
  int keep = blocks - 1;
  // OpenCLIP ViT-H has 24 blocks and SD 2.x uses 23; files converted from diffusers folders often
  // lack the unused 24th, and then all of their 23 blocks are used.
  auto tokens = r.shapes[kText].find("text_model.embeddings.token_embedding.weight");
  const bool vit_h = tokens != r.shapes[kText].end() && tokens->second.size() == 2 &&
                     tokens->second[1] == kVitHWidth;
  if (vit_h && blocks == kSd2TextLayers) keep = blocks;
  if (text_cfg && text_cfg->contains("num_hidden_layers") &&
      (*text_cfg)["num_hidden_layers"].is_number_integer())
    keep = static_cast<int>(bounded_config_int((*text_cfg)["num_hidden_layers"],
                                               path + ": text config num_hidden_layers"));
  if (keep < 1 || keep > blocks)
    fail(path + ": the OpenCLIP text encoder has " + std::to_string(blocks) +
         " blocks, cannot use " + std::to_string(keep) + " of them");
  auto& rename = r.rename[kText];
  for (auto it = rename.begin(); it != rename.end();) {
    const int layer = leading_index(it->second, kTextLayers, path);
    if (layer >= keep) {
      r.shapes[kText].erase(it->second);
      it = rename.erase(it);
      continue;
    }
    for (const char* part : {"weight", "bias"}) {
      const std::string fused = std::string(".self_attn.in_proj_") + part;
      if (!it->second.ends_with(fused)) continue;
      const std::string prefix = it->second.substr(0, it->second.size() - fused.size());
      const Shape shape = r.shapes[kText].at(it->second);
      if (shape.empty() || shape[0] % 3 != 0)
        fail(path + ": OpenCLIP in_proj tensor '" + it->first + "' has shape " + shape_str(shape) +
             ", expected [3C, ...]");
      r.shapes[kText].erase(it->second);
      Shape one = shape;
      one[0] /= 3;
      for (const char* qkv : {"q", "k", "v"})
        r.shapes[kText][prefix + ".self_attn." + qkv + "_proj." + part] = one;
      it->second = prefix + ".self_attn.q_proj." + part;
      if (std::string(part) == "weight") r.fused_qkv.push_back(prefix + ".self_attn.");
    }
    ++it;
  }
}

json read_config(const fs::path& p) {
  return parse_json_text(read_text_file(p.string(), limits::kMaxJsonFileBytes, "config"),
                         p.string());
}

// The component's weights: fp32 first, the fp16 variant if that is all there is.
fs::path component_weights(const fs::path& dir, const char* stem) {
  for (const std::string& name :
       {std::string(stem) + ".safetensors", std::string(stem) + ".fp16.safetensors"}) {
    if (fs::is_regular_file(dir / name)) return dir / name;
  }
  fail(dir.string() + ": no " + stem + ".safetensors (nor its .fp16 variant)");
}

// Tensors of the output file; fused buffers live here until the file is written.
struct OutputTensors {
  std::map<std::string, TensorToWrite> tensors;
  std::deque<std::vector<uint8_t>> buffers;
  void add(const std::string& name, const TensorView& v, Shape shape = {}) {
    TensorToWrite t{name, v.dtype, shape.empty() ? v.shape : shape, v.data};
    SDPAL_CHECK(tensors.emplace(name, t).second, "internal: tensor " + name + " written twice");
  }
};

void write_unet(const SafetensorsFile& f, const json& cfg, OutputTensors& out) {
  if (!cfg.value("layers_per_block", json()).is_number_integer() ||
      !cfg.value("up_block_types", json()).is_array())
    fail(f.path() + ": the unet config needs an integer layers_per_block and up_block_types");
  const int layers = static_cast<int>(
      bounded_config_int(cfg["layers_per_block"], f.path() + ": unet config layers_per_block"));
  std::vector<bool> up_attention;
  for (const auto& t : cfg["up_block_types"])
    up_attention.push_back(t.is_string() &&
                           t.get<std::string>().find("CrossAttn") != std::string::npos);
  for (const TensorView& v : f.tensors()) {
    auto orig = unet_key_to_original(v.name, layers, up_attention);
    if (!orig)
      fail(f.path() + ": unet tensor '" + v.name +
           "' has no original-layout name (only SD 1.x / 2.x UNets can be written)");
    out.add(std::string(kUnetPrefix) + *orig, v);
  }
}

void write_vae(const SafetensorsFile& f, const json& cfg, OutputTensors& out) {
  if (!cfg.value("block_out_channels", json()).is_array())
    fail(f.path() + ": the vae config has no block_out_channels list");
  const int levels = static_cast<int>(cfg["block_out_channels"].size());
  for (const TensorView& v : f.tensors()) {
    auto orig = vae_key_to_original(v.name, levels);
    if (!orig) fail(f.path() + ": vae tensor '" + v.name + "' has no original-layout name");
    Shape shape = v.shape;
    if (is_vae_attention_conv_weight(v.name) && shape.size() == 2)
      shape = {shape[0], shape[1], 1, 1};
    out.add(std::string(kVaePrefix) + *orig, v, shape);
  }
}

// OpenCLIP layout: q/k/v fused into in_proj, plus a copy of the last block as the extra final block
// that real OpenCLIP checkpoints carry (diffusers drops it).
void write_openclip(const SafetensorsFile& f, const json& cfg, OutputTensors& out) {
  const std::string pre(kOpenClipPrefix);
  if (!cfg.value("num_hidden_layers", json()).is_number_integer())
    fail(f.path() + ": the text_encoder config has no integer num_hidden_layers");
  const int layers = static_cast<int>(bounded_config_int(
      cfg["num_hidden_layers"], f.path() + ": text_encoder config num_hidden_layers"));
  std::vector<std::pair<std::string, const TensorView*>> block_tensors;  // original names
  for (const TensorView& v : f.tensors()) {
    if (v.name.ends_with("position_ids")) continue;
    if (v.name.find(".self_attn.q_proj.") != std::string::npos ||
        v.name.find(".self_attn.k_proj.") != std::string::npos ||
        v.name.find(".self_attn.v_proj.") != std::string::npos)
      continue;  // fused below
    auto orig = openclip_key_to_original(v.name);
    if (!orig) fail(f.path() + ": text encoder tensor '" + v.name + "' has no OpenCLIP name");
    if (leading_index(v.name, kTextLayers, f.path()) >= layers)
      fail(f.path() + ": text encoder tensor '" + v.name + "' lies beyond num_hidden_layers " +
           std::to_string(layers) + " of its config");
    out.add(pre + *orig, v);
    if (leading_index(v.name, kTextLayers, f.path()) == layers - 1)
      block_tensors.emplace_back(*orig, &v);
  }
  for (int n = 0; n < layers; ++n) {
    const std::string layer = std::string(kTextLayers) + std::to_string(n) + ".self_attn.";
    for (const char* part : {"weight", "bias"}) {
      const TensorView* q = f.find(layer + "q_proj." + part);
      const TensorView* k = f.find(layer + "k_proj." + part);
      const TensorView* v = f.find(layer + "v_proj." + part);
      if (!q || !k || !v)
        fail(f.path() + ": text encoder layer " + std::to_string(n) + " lacks q/k/v_proj." + part);
      if (q->dtype != k->dtype || q->dtype != v->dtype || q->shape != k->shape ||
          q->shape != v->shape)
        fail(f.path() + ": text encoder layer " + std::to_string(n) +
             " has q/k/v projections of different shapes or dtypes");
      std::vector<uint8_t>& buf = out.buffers.emplace_back(q->nbytes * 3);
      std::memcpy(buf.data(), q->data, q->nbytes);
      std::memcpy(buf.data() + q->nbytes, k->data, k->nbytes);
      std::memcpy(buf.data() + 2 * q->nbytes, v->data, v->nbytes);
      TensorView fused = *q;
      fused.shape[0] *= 3;
      fused.data = buf.data();
      fused.nbytes = buf.size();
      const std::string name =
          "transformer.resblocks." + std::to_string(n) + ".attn.in_proj_" + part;
      out.add(pre + name, fused);
      if (n == layers - 1) {
        std::string extra =
            "transformer.resblocks." + std::to_string(layers) + ".attn.in_proj_" + part;
        out.add(pre + extra, fused);
      }
    }
  }
  const std::string last = "transformer.resblocks." + std::to_string(layers - 1) + ".";
  const std::string extra = "transformer.resblocks." + std::to_string(layers) + ".";
  for (const auto& [orig, view] : block_tensors)
    out.add(pre + extra + orig.substr(last.size()), *view);
}

void write_clip(const SafetensorsFile& f, OutputTensors& out) {
  for (const TensorView& v : f.tensors()) out.add(std::string(kClipPrefix) + v.name, v);
}

}  // namespace

void refuse_pickle_checkpoint(const std::string& path) {
  const std::string ext = lower_extension(path);
  for (const char* pickle_ext : {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"})
    if (ext == pickle_ext) fail(pickle_message(path, ext + " file"));
  // torch.save writes a zip archive (or, before torch 1.6, a raw pickle stream).
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return;  // SafetensorsFile reports unreadable files
  unsigned char head[4] = {};
  const size_t n = std::fread(head, 1, 4, f);
  std::fclose(f);
  if (n == 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4)
    fail(pickle_message(path, "a torch zip archive despite its extension"));
  if (n == 4 && head[0] == 0x80 && head[1] == 0x02 && head[2] == 0x8a && head[3] == 0x0a)
    fail(pickle_message(path, "a legacy torch pickle despite its extension"));
}

SingleFileMap map_single_file(const std::string& path, json* unet_config, json* vae_config,
                              json* text_config) {
  refuse_pickle_checkpoint(path);
  Routed r;
  bool sd2 = false;
  std::array<std::optional<json>, kComponents> embedded;
  {
    const SafetensorsFile f(path);
    r = route_tensors(f, &sd2);
    for (int c = 0; c < kComponents; ++c) embedded[c] = embedded_config(f, kConfigKeys[c]);
  }
  if (sd2) fit_openclip_blocks(r, embedded[kText], path);

  json* configs[kComponents] = {unet_config, vae_config, text_config};
  for (int c = 0; c < kComponents; ++c) {
    if (!configs[c]) continue;
    if (embedded[c]) {
      *configs[c] = *embedded[c];
    } else if (c == kUnet) {
      *configs[c] = infer_unet_config(r.shapes[kUnet], sd2, path);
    } else if (c == kVae) {
      *configs[c] = infer_vae_config(r.shapes[kVae], sd2, path);
    } else {
      *configs[c] = infer_text_encoder_config(r.shapes[kText], sd2, r.text_dtype, path);
    }
  }

  SingleFileMap m;
  m.kind = sd2 ? "sd2" : "sd1";
  m.unet = std::move(r.rename[kUnet]);
  m.vae = std::move(r.rename[kVae]);
  m.text_encoder = std::move(r.rename[kText]);
  m.fused_qkv = std::move(r.fused_qkv);
  return m;
}

void write_single_file(const std::string& model_dir, const std::string& out_path,
                       bool embed_configs) {
  const fs::path dir(model_dir);
  const json unet_cfg = read_config(dir / "unet" / "config.json");
  const json vae_cfg = read_config(dir / "vae" / "config.json");
  const json text_cfg = read_config(dir / "text_encoder" / "config.json");
  const SafetensorsFile unet_f(component_weights(dir / "unet", "diffusion_pytorch_model").string());
  const SafetensorsFile vae_f(component_weights(dir / "vae", "diffusion_pytorch_model").string());
  const SafetensorsFile text_f(component_weights(dir / "text_encoder", "model").string());

  OutputTensors out;
  write_unet(unet_f, unet_cfg, out);
  write_vae(vae_f, vae_cfg, out);
  // OpenCLIP ViT-H (SD 2.x) uses exact GELU; OpenAI CLIP ViT-L (SD 1.x) quick_gelu.
  if (text_cfg.value("hidden_act", std::string()) == "gelu") {
    write_openclip(text_f, text_cfg, out);
  } else {
    write_clip(text_f, out);
  }

  std::map<std::string, std::string> metadata = {{"format", "pt"}};
  // What the file predicts, in Stability's ModelSpec metadata (as their own releases and kohya's
  // tools write it): a single file has no scheduler config to say so.
  const fs::path sched = dir / "scheduler" / "scheduler_config.json";
  if (fs::exists(sched)) {
    const std::string pt = read_config(sched).value("prediction_type", std::string("epsilon"));
    metadata["modelspec.prediction_type"] = pt == "v_prediction" ? "v" : pt;
  }
  if (embed_configs) {
    metadata[kUnetConfigKey] = unet_cfg.dump();
    metadata[kVaeConfigKey] = vae_cfg.dump();
    metadata[kTextEncoderConfigKey] = text_cfg.dump();
  }
  std::vector<TensorToWrite> tensors;
  tensors.reserve(out.tensors.size());
  for (auto& [name, t] : out.tensors) tensors.push_back(t);
  write_safetensors(out_path, tensors, metadata);
}

}  // namespace sdpal
