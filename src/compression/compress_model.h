// Model-level compression: reads a diffusers folder, palettizes or linearly quantizes the large
// Linear/Conv weights of the chosen components, and writes a compressed diffusers folder (format
// "sdpal-compressed/1", docs/compressed-format.md) atomically beside the target.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/compressed_weight.h"
#include "core/tensor.h"

namespace sdpal {

enum class CompressMode { Palettize, Linear8 };

// Per-layer setting value meaning "leave this layer uncompressed".
inline constexpr int kKeepLayer = 16;

struct CompressOptions {
  CompressMode mode = CompressMode::Palettize;
  int nbits = 4;           // palette index width: 1, 2, 4, 6 or 8
  int64_t group_size = 0;  // output channels per LUT; 0 = one LUT per tensor
  bool symmetric = true;   // linear8: int8 with scales, or uint8 with scales and zero points
  std::vector<std::string> components = {"unet", "text_encoder"};  // unet, text_encoder, vae
  int64_t min_elements = 100000;    // candidates have more elements than this
  bool include_embeddings = false;  // also compress token/position embedding tables
  std::string variant;              // weight files: "" (as the runtime picks them) or "fp16"
  bool force = false;               // replace a non-empty output folder
  // Per-layer overrides of the uniform setting. Key: the diffusers module path without ".weight"
  // ("down_blocks.0.attentions.0.proj_in"), optionally prefixed with "<component>/" to tell
  // components apart ("text_encoder/text_model.encoder.layers.0.mlp.fc1"). Value: palette bits
  // 1, 2, 4, 6, 8 (in linear8 mode only 8), or kKeepLayer (16) to keep the layer as it is. A named
  // layer is compressed even below min_elements (or if it is an embedding); every key must name a
  // 2-D or 4-D weight of a chosen component.
  std::map<std::string, int> layer_bits;
  std::function<void(const std::string&)> log;  // progress lines (optional)
};

struct CompressedTensorInfo {
  std::string component, name;
  CompressedView::Kind kind = CompressedView::Kind::Palette;
  int nbits = 0;
  int64_t group_size = 0;
  int64_t params = 0, bytes_before = 0, bytes_after = 0;
};

struct CompressSummary {
  std::vector<CompressedTensorInfo> tensors;  // every compressed tensor
  int64_t params_compressed = 0;
  int64_t bytes_before = 0, bytes_after = 0;  // of the compressed tensors
  // All weight files of the model (copied components included), before and after.
  int64_t weight_file_bytes_before = 0, weight_file_bytes_after = 0;
  double seconds = 0;
  double bits_per_weight() const {
    return params_compressed ? 8.0 * bytes_after / params_compressed : 0;
  }
};

// True for a weight that compression considers by default: a Linear or Conv weight (name ending
// in ".weight", 2-D or 4-D, a float dtype) with more than min_elements elements that is not an
// embedding table (unless include_embeddings).
bool is_compression_candidate(const std::string& name, const Shape& shape, DType dtype,
                              int64_t min_elements, bool include_embeddings);
// Token/position/class embedding tables (module names ending in "embedding(s)"/"embed_tokens"...).
bool is_embedding_table(const std::string& name);

// Compresses the diffusers folder `in` into the folder `out` (never modifying `in`). Every check
// (options, group sizes against every candidate, per-layer keys) runs before anything is written;
// the output is built in a temp folder beside `out` and renamed at the end. Throws sdpal::Error.
CompressSummary compress_model(const std::string& in, const std::string& out,
                               const CompressOptions& opt);

}  // namespace sdpal
