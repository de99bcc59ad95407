#include "models/lora.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <set>
#include <unordered_map>

#include "core/error.h"
#include "kernels/gemm.h"

namespace sdpal {
namespace {

struct Pending {
  std::string down, up, alpha;  // tensor names in the file
  bool flattened = false;
};

// Splits a tensor name into (component, module key, role) for the known formats; false if the
// name is of none of them.
bool classify(const std::string& name, std::string* component, std::string* module,
              std::string* role, bool* flattened, std::string* format) {
  static const std::regex kohya(
      R"(^lora_(unet|te|te1|te2)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$)");
  static const std::regex procs(
      R"(^unet\.(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$)");
  static const std::regex dotted(
      R"(^(unet|text_encoder|text_encoder_2)\.(.+)\.(lora\.down\.weight|lora\.up\.weight|lora_linear_layer\.down\.weight|lora_linear_layer\.up\.weight|lora_A\.weight|lora_B\.weight|alpha)$)");
  std::smatch m;
  if (std::regex_match(name, m, kohya)) {
    const std::string c = m[1];
    *component = c == "unet" ? "unet" : c == "te2" ? "text_encoder_2" : "text_encoder";
    *module = m[2];
    const std::string r = m[3];
    *role = r == "alpha" ? "alpha" : r == "lora_down.weight" ? "down" : "up";
    *flattened = true;
    *format = "kohya";
    return true;
  }
  if (std::regex_match(name, m, procs)) {
    *component = "unet";
    const std::string proj = m[2];
    *module = std::string(m[1]) + "." + (proj == "to_out" ? "to_out.0" : proj);
    *role = m[3];
    *flattened = false;
    *format = "diffusers";
    return true;
  }
  if (std::regex_match(name, m, dotted)) {
    *component = m[1];
    *module = m[2];
    const std::string r = m[3];
    *role = r == "alpha"                                                    ? "alpha"
            : (r.find("down") != std::string::npos || r == "lora_A.weight") ? "down"
                                                                            : "up";
    *flattened = false;
    *format = (r == "lora_A.weight" || r == "lora_B.weight") ? "peft" : "diffusers";
    return true;
  }
  return false;
}

std::string flatten(std::string s) {
  for (char& c : s)
    if (c == '.') c = '_';
  return s;
}

// SGM/LDM block names of a diffusers UNet attention module path, as SDXL trainers write kohya
// files ("kohya_sgm"): down_blocks.b.attentions.l -> input_blocks.(1 + b(L+1) + l).1,
// mid_block.attentions.0 -> middle_block.1, up_blocks.b.attentions.l -> output_blocks.(b(L+1) +
// l).1, the rest of the path kept (L = layers_per_block). "" for other paths.
std::string sgm_name(const std::string& name, int layers_per_block) {
  static const std::regex down(R"(^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$)");
  static const std::regex up(R"(^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$)");
  static const std::regex mid(R"(^mid_block\.attentions\.0\.(.+)$)");
  std::smatch m;
  const int per = layers_per_block + 1;
  if (std::regex_match(name, m, down))
    return "input_blocks." + std::to_string(1 + std::stoi(m[1]) * per + std::stoi(m[2])) + ".1." +
           std::string(m[3]);
  if (std::regex_match(name, m, up))
    return "output_blocks." + std::to_string(std::stoi(m[1]) * per + std::stoi(m[2])) + ".1." +
           std::string(m[3]);
  if (std::regex_match(name, m, mid)) return "middle_block.1." + std::string(m[1]);
  return "";
}

// layers_per_block of a UNet from its layer names: the resnets of down_blocks.0.
int layers_per_block(const std::vector<WeightLayer*>& layers) {
  static const std::regex resnet(R"(^down_blocks\.0\.resnets\.(\d+)\..+$)");
  int n = 0;
  std::smatch m;
  for (const WeightLayer* l : layers)
    if (std::regex_match(l->name, m, resnet)) n = std::max(n, std::stoi(m[1]) + 1);
  return n;
}

// The weight of a Linear or Conv2d layer (null for other layer kinds).
Param* weight_of(WeightLayer* l) {
  if (auto* lin = dynamic_cast<Linear*>(l)) return &lin->w;
  if (auto* conv = dynamic_cast<Conv2d*>(l)) return &conv->w;
  return nullptr;
}

}  // namespace

std::shared_ptr<const LoraFile> LoraFile::load(const std::string& path) {
  std::shared_ptr<LoraFile> f(new LoraFile());
  f->path_ = path;
  f->name_ = std::filesystem::path(path).stem().string();
  f->store_.add_file(path);
  std::map<std::pair<std::string, std::string>, Pending> pending;
  std::vector<std::string> unknown;
  std::set<std::string> formats;
  for (const std::string& n : f->store_.names()) {
    std::string component, module, role, format;
    bool flat = false;
    if (!classify(n, &component, &module, &role, &flat, &format)) {
      unknown.push_back(n);
      continue;
    }
    formats.insert(format);
    Pending& p = pending[{component, module}];
    p.flattened = flat;
    (role == "down" ? p.down : role == "up" ? p.up : p.alpha) = n;
  }
  if (!unknown.empty()) {
    std::string some;
    for (size_t i = 0; i < unknown.size() && i < 5; ++i) some += (i ? ", " : "") + unknown[i];
    throw Error(path + ": " + std::to_string(unknown.size()) +
                " tensor(s) of no LoRA format sdpal reads (kohya lora_down/lora_up, diffusers, "
                "PEFT lora_A/lora_B; LoHa, LoKr and DoRA are not supported): " +
                some + (unknown.size() > 5 ? ", ..." : ""));
  }
  SDPAL_CHECK(!pending.empty(), path + ": no LoRA tensors in the file");
  f->format_ = formats.size() == 1 ? *formats.begin() : "mixed";
  for (auto& [key, p] : pending) {
    const std::string where = path + ": " + key.first + " " + key.second;
    SDPAL_CHECK(!p.down.empty() && !p.up.empty(),
                where + ": the " + std::string(p.down.empty() ? "down" : "up") +
                    " weight is missing (truncated or damaged file?)");
    Module m;
    m.key = key.second;
    m.flattened = p.flattened;
    m.down = f->store_.param(p.down);
    m.up = f->store_.param(p.up);
    const Shape& d = m.down.shape();
    const Shape& u = m.up.shape();
    SDPAL_CHECK((d.size() == 2 || d.size() == 4) && u.size() == d.size() && d[0] > 0 &&
                    u[1] == d[0] && (u.size() == 2 || (u[2] == 1 && u[3] == 1)),
                where + ": down " + shape_str(d) + " and up " + shape_str(u) +
                    " are not a low-rank pair (down [r, in(, kh, kw)], up [out, r(, 1, 1)])");
    if (!p.alpha.empty()) {
      const Param ap = f->store_.param(p.alpha);
      const float a = ap.numel() == 1 ? ap.f32().get()[0] : NAN;
      SDPAL_CHECK(std::isfinite(a), where + ": alpha is not one finite number");
      m.alpha_over_rank = static_cast<double>(a) / static_cast<double>(d[0]);
    }
    f->components_[key.first].push_back(std::move(m));
  }
  return f;
}

std::string LoraFile::architecture() const {
  bool te2 = components_.count("text_encoder_2") != 0;
  if (te2) return "SDXL";
  if (auto it = components_.find("unet"); it != components_.end())
    for (const Module& m : it->second)
      if (m.key.find(m.flattened ? "attn2_to_k" : "attn2.to_k") != std::string::npos) {
        const int64_t ctx = m.down.shape()[1];
        return ctx == 768 ? "SD 1.x" : ctx == 1024 ? "SD 2.x" : ctx == 2048 ? "SDXL" : "";
      }
  if (auto it = components_.find("text_encoder"); it != components_.end())
    for (const Module& m : it->second)
      if (m.key.find("q_proj") != std::string::npos) {
        const int64_t d = m.down.shape()[1];
        return d == 768 ? "SD 1.x" : d == 1024 ? "SD 2.x" : "";
      }
  return "";
}

std::string LoraFile::short_hash() const {
  std::FILE* fp = std::fopen(path_.c_str(), "rb");
  SDPAL_CHECK(fp, path_ + ": cannot be read for hashing");
  unsigned char len8[8];
  uint64_t n = 0;
  const bool ok = std::fread(len8, 1, 8, fp) == 8;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len8[i];
  if (!ok || std::fseek(fp, static_cast<long>(8 + n), SEEK_SET) != 0) {
    std::fclose(fp);
    fail(path_ + ": cannot be read for hashing");
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<unsigned char> buf(1 << 20);
  size_t got;
  while ((got = std::fread(buf.data(), 1, buf.size(), fp)) > 0)
    EVP_DigestUpdate(ctx, buf.data(), got);
  std::fclose(fp);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_DigestFinal_ex(ctx, md, &md_len);
  EVP_MD_CTX_free(ctx);
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < 6 && i < md_len; ++i) s += {hex[md[i] >> 4], hex[md[i] & 15]};
  return s;
}

LoraAttachReport attach_loras(const std::vector<WeightLayer*>& layers, const std::string& component,
                              const std::vector<LoraUse>& loras, bool merge) {
  std::unordered_map<std::string, WeightLayer*> by_name, by_flat;
  const int lpb = component == "unet" ? layers_per_block(layers) : 0;
  for (WeightLayer* l : layers) {
    by_name[l->name] = l;
    by_flat[flatten(l->name)] = l;
    if (lpb > 0)  // kohya files with SGM block names ("kohya_sgm") name the same layers
      if (const std::string sgm = sgm_name(l->name, lpb); !sgm.empty()) by_flat[flatten(sgm)] = l;
  }
  LoraAttachReport report;
  std::map<WeightLayer*, LowRankBranches> branches;
  for (const LoraUse& use : loras) {
    const LoraFile& f = *use.file;
    auto it = f.components().find(component);
    if (it == f.components().end()) continue;
    const float s = component == "unet" ? use.unet_scale : use.text_encoder_scale;
    for (const LoraFile::Module& m : it->second) {
      auto& index = m.flattened ? by_flat : by_name;
      auto found = index.find(m.key);
      if (found == index.end()) {
        report.unmatched.push_back(f.name() + ": " + component + "." + m.key);
        continue;
      }
      WeightLayer* layer = found->second;
      const Param* w = weight_of(layer);
      SDPAL_CHECK(w, "internal: layer " + layer->name + " has no weight");
      const Shape& ws = w->shape();
      const Shape& d = m.down.shape();
      const Shape& u = m.up.shape();
      const int64_t in = ws[1], out = ws[0];
      const bool fits = u[0] == out && d[1] == in &&
                        (d.size() == 2 || ws.size() == 4 || (d[2] == 1 && d[3] == 1));
      if (!fits) {
        const std::string arch = f.architecture();
        throw Error("LoRA " + f.path() + " does not fit this model: its " + m.key + " maps " +
                    std::to_string(d[1]) + " -> " + std::to_string(u[0]) + " features, the layer " +
                    layer->name + " " + std::to_string(in) + " -> " + std::to_string(out) +
                    (arch.empty() ? std::string(" (another architecture?)")
                                  : "; the file looks like a LoRA for " + arch));
      }
      branches[layer].push_back(
          {m.down, m.up, static_cast<float>(s * m.alpha_over_rank), use.file});
    }
  }
  for (auto& [layer, brs] : branches) {
    Param* w = weight_of(layer);
    const bool dense = !w->compressed() && !layer->int8();
    const Shape& d0 = brs.front().down.shape();
    const bool same_kernel = w->shape().size() == 2 || d0.size() == 2 ||
                             (d0[2] == w->shape()[2] && d0[3] == w->shape()[3]);
    if (merge && dense && same_kernel) {
      // W' = W + sum s * up[out, r] @ down[r, in*kh*kw], in fp32 (diffusers' fuse_lora).
      const int64_t out = w->shape()[0], cols = w->numel() / out;
      Tensor merged = Tensor::from(w->shape(), w->f32().get());
      for (const LowRankBranch& b : brs) {
        const int64_t r = b.up.shape()[1];
        SDPAL_CHECK(b.down.numel() == r * cols, "LoRA " + layer->name +
                                                    ": a convolution LoRA with another kernel "
                                                    "size cannot be merged");
        k::sgemm(false, false, out, cols, r, b.scale, b.up.f32().get(), r, b.down.f32().get(), cols,
                 1.f, merged.data(), cols);
      }
      *w = Param::owned(std::move(merged));
    } else {
      layer->low_rank = std::make_shared<const LowRankBranches>(std::move(brs));
    }
    ++report.adapted;
  }
  return report;
}

}  // namespace sdpal
