#include "pipeline/lora_selection.h"

#include <charconv>
#include <cmath>
#include <filesystem>

#include "core/error.h"

namespace sdpal {
namespace {

float multiplier(const std::string& s, const std::string& tag) {
  float v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  SDPAL_CHECK(ec == std::errc() && end == s.data() + s.size() && std::isfinite(v),
              "prompt tag " + tag + ": the multiplier '" + s + "' is not a number");
  return v;
}

std::string show(const ExtraNetworkTag& t) {
  std::string s = "<" + t.type;
  for (const auto& a : t.args) s += ":" + a;
  return s + ">";
}

}  // namespace

std::vector<LoraUse> loras_from_tags(const std::vector<ExtraNetworkTag>& tags,
                                     const std::string& lora_dir) {
  std::vector<LoraUse> out;
  for (const ExtraNetworkTag& t : tags) {
    if (t.type != "lora") continue;
    const std::string shown = show(t);
    const std::string& name = t.args.at(0);
    SDPAL_CHECK(!name.empty() && name.find('/') == std::string::npos &&
                    name.find('\\') == std::string::npos && name != "." && name != "..",
                "prompt tag " + shown +
                    ": a LoRA is named by its file name in the LoRA folder, "
                    "without a path");
    SDPAL_CHECK(!lora_dir.empty(),
                "prompt tag " + shown + " names a LoRA but no LoRA folder is set (--lora-dir)");
    const std::string path = (std::filesystem::path(lora_dir) / (name + ".safetensors")).string();
    SDPAL_CHECK(std::filesystem::is_regular_file(path),
                "prompt tag " + shown + ": no file " + path);
    LoraUse use;
    use.file = LoraFile::load(path);
    // A1111: <lora:name:te[:unet]>, also te=/unet= named; unet defaults to te.
    std::optional<float> te, unet;
    for (size_t i = 1; i < t.args.size(); ++i) {
      const std::string& a = t.args[i];
      if (a.rfind("te=", 0) == 0)
        te = multiplier(a.substr(3), shown);
      else if (a.rfind("unet=", 0) == 0)
        unet = multiplier(a.substr(5), shown);
      else if (i == 1)
        te = multiplier(a, shown);
      else if (i == 2)
        unet = multiplier(a, shown);
      else if (a.rfind("dyn=", 0) != 0)
        throw Error("prompt tag " + shown + ": unexpected argument '" + a + "'");
    }
    use.text_encoder_scale = te.value_or(1.f);
    use.unet_scale = unet.value_or(use.text_encoder_scale);
    out.push_back(std::move(use));
  }
  return out;
}

AdaptedModel adapt_model(const StableDiffusion& m, const std::vector<LoraUse>& loras, bool merge) {
  AdaptedModel a;
  if (loras.empty()) return a;
  for (const LoraUse& u : loras)
    for (const auto& [component, modules] : u.file->components())
      if (component != "unet" && component != "text_encoder" &&
          !(component == "text_encoder_2" && m.text_encoder_2)) {
        const std::string arch = u.file->architecture();
        throw Error("LoRA " + u.file->path() + " adapts " + component + ", which this model (" +
                    m.kind + ") does not have" +
                    (arch.empty() ? "" : ": it is a LoRA for " + arch));
      }
  a.unet.emplace(*m.unet);
  const LoraAttachReport ru = attach_loras(a.unet->weight_layers(), "unet", loras, merge);
  a.text_encoder.emplace(*m.text_encoder);
  const LoraAttachReport rt =
      attach_loras(a.text_encoder->weight_layers(), "text_encoder", loras, merge);
  LoraAttachReport rt2;
  if (m.text_encoder_2) {
    a.text_encoder_2.emplace(*m.text_encoder_2);
    rt2 = attach_loras(a.text_encoder_2->weight_layers(), "text_encoder_2", loras, merge);
  }
  std::vector<std::string> unmatched = ru.unmatched;
  unmatched.insert(unmatched.end(), rt.unmatched.begin(), rt.unmatched.end());
  unmatched.insert(unmatched.end(), rt2.unmatched.begin(), rt2.unmatched.end());
  if (ru.adapted == 0 && rt.adapted == 0 && rt2.adapted == 0 && !unmatched.empty()) {
    std::string arch;
    for (const LoraUse& u : loras)
      if (!u.file->architecture().empty()) arch = u.file->architecture();
    throw Error("none of the LoRA modules matches a layer of this model (" + m.kind + "), e.g. " +
                unmatched.front() +
                (arch.empty() ? "" : "; the file looks like a LoRA for " + arch));
  }
  if (!unmatched.empty()) {
    std::string some;
    for (size_t i = 0; i < unmatched.size() && i < 5; ++i) some += (i ? ", " : "") + unmatched[i];
    a.warnings.push_back(std::to_string(unmatched.size()) +
                         " LoRA module(s) match no layer of this model and were ignored: " + some +
                         (unmatched.size() > 5 ? ", ..." : ""));
  }
  if (ru.adapted == 0) a.unet.reset();
  if (rt.adapted == 0) a.text_encoder.reset();
  if (rt2.adapted == 0) a.text_encoder_2.reset();
  return a;
}

std::string lora_hashes(const std::vector<LoraUse>& loras) {
  std::string s;
  for (const LoraUse& u : loras) {
    std::string name = u.file->name();
    std::erase(name, ':');
    std::erase(name, ',');
    s += (s.empty() ? "" : ", ") + name + ": " + u.file->short_hash();
  }
  return s;
}

}  // namespace sdpal
