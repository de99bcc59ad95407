// Compressed weight files (format "sdpal-compressed/1", see docs/compressed-format.md): ordinary
// safetensors files in which a compressed weight W is stored as component tensors (W.lut +
// W.indices for a palette, W.q + W.scale [+ W.zero] for linear 8-bit) and described by a JSON
// string in __metadata__ under "sdpal:W". Uncompressed tensors are stored unchanged.
#pragma once
#include <map>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/compressed_weight.h"
#include "formats/safetensors.h"

namespace sdpal {

// File-level metadata key and the version this code reads and writes.
inline constexpr const char* kCompressedFormatKey = "sdpal:format";
inline constexpr const char* kCompressedFormatVersion = "sdpal-compressed/1";
// Per-weight metadata keys are this prefix + the weight's name.
inline constexpr const char* kCompressedKeyPrefix = "sdpal:";

// Component tensor names of compressed weight `w`.
inline std::string lut_tensor_name(const std::string& w) { return w + ".lut"; }
inline std::string indices_tensor_name(const std::string& w) { return w + ".indices"; }
inline std::string q_tensor_name(const std::string& w) { return w + ".q"; }
inline std::string scale_tensor_name(const std::string& w) { return w + ".scale"; }
inline std::string zero_tensor_name(const std::string& w) { return w + ".zero"; }

// One tensor to write: a plain tensor copied byte for byte (its view's data must stay valid until
// the write returns; the view's own name is ignored) or a compressed weight.
struct CompressedEntry {
  std::string name;
  std::variant<TensorView, PalettizedWeight, Linear8Weight> value;
};

// Writes `entries` (in order, each compressed weight as its component tensors) atomically.
// `metadata` is copied into __metadata__ (keys starting with "sdpal:" are reserved). Every
// compressed weight is validated first (same checks as the reader); throws naming path and tensor.
void write_compressed_safetensors(const std::string& path,
                                  const std::vector<CompressedEntry>& entries,
                                  const std::map<std::string, std::string>& metadata = {});

struct CompressedTensors {
  // Compressed weights by original name; the views point into the mapped file.
  std::map<std::string, CompressedView> weights;
  // Stored tensors that are parts of compressed weights (W.lut, W.indices, ...): not weights.
  std::set<std::string> component_tensor_names;
};

// True if the file declares the compressed format (has "sdpal:format" in its metadata).
bool is_compressed_file(const SafetensorsFile& f);

// Reads and validates the compressed weights of `f` (none for a plain safetensors file): metadata,
// component dtypes and shapes, and every palette index. Throws sdpal::Error naming the file and
// the tensor.
CompressedTensors read_compressed(const SafetensorsFile& f);

// Checks a compressed weight for internal consistency (nbits, LUT size, groups vs rows, index
// bytes, every index < entries, scale/zero lengths, finite LUT and scales). `what` names it in the
// error ("file.safetensors: tensor 'x.weight'").
void validate_compressed(const CompressedView& v, const std::string& what);

// The JSON description stored under "sdpal:<name>" (exposed for tools and tests).
std::string describe_compressed(const CompressedView& v);

}  // namespace sdpal
