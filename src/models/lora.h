// LoRA files (safetensors) for SD 1.x / 2.x / SDXL UNets and CLIP text encoders, in the formats
// users have them:
//   kohya / A1111    lora_unet_<module with '.' -> '_'>.lora_down.weight / .lora_up.weight / .alpha
//                    lora_te_ (SD 1/2 text encoder), lora_te1_ / lora_te2_ (SDXL's two);
//                    SDXL UNet attentions also by SGM block names (lora_unet_input_blocks_4_1_...)
//   diffusers 0.2x   unet.<module>.lora.down.weight / .lora.up.weight,
//                    text_encoder[_2].<module>.lora_linear_layer.down.weight / .up.weight
//   PEFT             <component>.<module>.lora_A.weight / .lora_B.weight (optionally .alpha)
//   attn processors  unet.<...>.processor.to_q_lora.down.weight (older diffusers)
// Scale semantics of diffusers 0.24: each adapted layer adds s * (alpha / rank) * up(down(x)),
// alpha per module (factor 1 without one). The weights stay mapped from the file.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/layers.h"
#include "models/weights.h"

namespace sdpal {

class LoraFile {
 public:
  struct Module {
    std::string key;         // module path ("down_blocks.0...to_q"), or kohya's flattened name
    bool flattened = false;  // kohya: '.' replaced by '_'; resolved against the model's names
    Param down, up;
    double alpha_over_rank = 1.0;
  };

  // Parses and validates the file (shapes of each pair, alphas finite); throws sdpal::Error naming
  // the file and the key at fault. Keys of no known LoRA format are an error listing some.
  static std::shared_ptr<const LoraFile> load(const std::string& path);

  const std::string& path() const { return path_; }
  const std::string& name() const { return name_; }      // file name without .safetensors
  const std::string& format() const { return format_; }  // kohya | diffusers | peft
  // Modules per component: "unet", "text_encoder", "text_encoder_2".
  const std::map<std::string, std::vector<Module>>& components() const { return components_; }
  // The architecture the file's shapes say it was trained for ("SD 1.x", "SD 2.x", "SDXL"), or
  // "" when they do not tell.
  std::string architecture() const;
  // A1111's short hash of a LoRA file (its "addnet" hash: SHA-256 of the file after the
  // safetensors header, first 12 hex digits), for the infotext's "Lora hashes".
  std::string short_hash() const;

 private:
  LoraFile() : store_("LoRA") {}
  std::string path_, name_, format_;
  WeightStore store_;
  std::map<std::string, std::vector<Module>> components_;
};

// One LoRA as a generation uses it.
struct LoraUse {
  std::shared_ptr<const LoraFile> file;
  float text_encoder_scale = 1.f, unet_scale = 1.f;
};

struct LoraAttachReport {
  int64_t adapted = 0;                 // layers given a branch (or merged)
  std::vector<std::string> unmatched;  // the file's modules with no layer of that name
};

// Adds each LoRA's modules of `component` to the matching layers (by diffusers module path) as
// low-rank branches, or with merge (only for layers whose weight is neither compressed nor
// int8) into a new in-memory weight W + s * alpha/rank * up @ down. The layers must belong to a
// model copy that no other caller uses. Throws if a module matches a layer of another shape (a
// LoRA for another architecture: the message names the one the file is for).
LoraAttachReport attach_loras(const std::vector<WeightLayer*>& layers, const std::string& component,
                              const std::vector<LoraUse>& loras, bool merge);

}  // namespace sdpal
