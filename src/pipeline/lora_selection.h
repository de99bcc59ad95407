// Which LoRAs a generation uses, and the model copies that carry them. LoRAs come from the
// command line / request (GenerateParams::loras) and from <lora:name:te[:unet]> tags in the
// prompts, looked up as <lora_dir>/<name>.safetensors (a name, never a path). The UNet and text
// encoder are copied for the generation (weights shared, not duplicated) and the LoRA branches
// attached to the copies, so the loaded model stays as it is for other generations.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/lora.h"
#include "pipeline/extra_networks.h"
#include "pipeline/sd_model.h"

namespace sdpal {

// The LoRAs named by the "lora" tags among `tags`, loaded from `lora_dir`. Throws sdpal::Error
// for a tag with a bad name or multiplier, or a file that is not there.
std::vector<LoraUse> loras_from_tags(const std::vector<ExtraNetworkTag>& tags,
                                     const std::string& lora_dir);

struct AdaptedModel {
  std::optional<UNet> unet;                     // set when a LoRA adapts the UNet
  std::optional<ClipTextModel> text_encoder;    // set when a LoRA adapts the text encoder
  std::optional<ClipTextModel> text_encoder_2;  // SDXL: set when a LoRA adapts text_encoder_2
  std::vector<std::string> warnings;            // modules that matched no layer
};

// Copies of m's UNet and text encoder(s) with `loras` attached (merged into dense weights when
// `merge`; compressed and int8 layers always get branches).
AdaptedModel adapt_model(const StableDiffusion& m, const std::vector<LoraUse>& loras, bool merge);

// "name: hash, ..." for the infotext's "Lora hashes" (A1111's format).
std::string lora_hashes(const std::vector<LoraUse>& loras);

}  // namespace sdpal
