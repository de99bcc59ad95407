// A1111's extra-network tags in prompts, `<type:arg1:arg2...>` (e.g. <lora:name:0.8>,
// <hypernet:name:1>): stable-diffusion-webui's extra_networks.parse_prompt, regex
// <(\w+):([^>]+)>. The tags are removed from the text before it is encoded; the generation's
// infotext keeps the prompt as the user wrote it.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace sdpal {

struct ExtraNetworkTag {
  std::string type;               // "lora", "hypernet", ...
  std::vector<std::string> args;  // the text after the first ':' split at ':' (A1111's items)
  bool operator==(const ExtraNetworkTag&) const = default;
};

// Returns `prompt` with every tag removed, appending the tags (in order) to `tags`.
std::string strip_extra_networks(std::string_view prompt, std::vector<ExtraNetworkTag>* tags);

}  // namespace sdpal
