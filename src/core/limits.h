// Bounds on sizes and counts read from untrusted input (model files, configs, recipes, images,
// prompts, command lines, requests). Every parser rejects a value past its bound with an error
// naming the value and the bound, before it allocates anything for it. docs/limits.md lists each
// bound, why it is what it is, and where it is checked. Checked arithmetic for sizes computed
// from such values lives here too, so that no product or sum can wrap around before a check.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sdpal::limits {

// --- JSON (every parser of JSON text) ---
// Nesting depth of arrays/objects: our documents need at most 5 levels.
inline constexpr int kMaxJsonDepth = 64;
// Size of a JSON document read from a file (configs, recipes, analyses, calibrations, vocab).
inline constexpr uint64_t kMaxJsonFileBytes = uint64_t(256) << 20;

// --- safetensors ---
// Header length: the reference implementation's bound.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = uint64_t(100) << 20;
// Tensors in one file (SD 1.5 single-file checkpoints hold ~1,100; SDXL ~2,500).
inline constexpr int64_t kMaxSafetensorsTensors = int64_t(1) << 17;
// Dimensions of one tensor.
inline constexpr size_t kMaxTensorRank = 16;
// One dimension, and the product of all of them (elements per tensor: 2^40 = 4 TiB of fp32).
inline constexpr int64_t kMaxTensorDim = int64_t(1) << 40;
inline constexpr int64_t kMaxTensorElements = int64_t(1) << 40;

// --- model configs (config.json integers: channels, layers, heads, sizes) ---
inline constexpr int64_t kMaxConfigInt = int64_t(1) << 24;
// Block / level / layer indices in checkpoint tensor names (SD uses at most 32).
inline constexpr int kMaxCheckpointIndex = 1 << 16;

// --- images ---
// Side of a decoded PNG (init images, masks) and its pixel count (16384^2 RGBA8 = 1 GiB).
inline constexpr uint32_t kMaxImageSide = 16384;
inline constexpr uint64_t kMaxImagePixels = uint64_t(1) << 28;

// --- generation ---
inline constexpr int kMaxImageSizePixels = 8192;  // --width / --height
inline constexpr int kMaxSteps = 1000;            // sampling steps
inline constexpr int kMaxBatch = 64;              // images per generation
// Bytes of one prompt (UTF-8): a long prompt is a few KB; the tokenizer is linear in this.
inline constexpr size_t kMaxPromptBytes = size_t(256) << 10;
// Open emphasis brackets at once in a prompt: each close multiplies every run after its opening,
// so the parser's work is this times the prompt's runs (1.1^256 is already 4e10).
inline constexpr size_t kMaxPromptBracketDepth = 256;

}  // namespace sdpal::limits

namespace sdpal {

// a * b, a + b for non-negative sizes; throws sdpal::Error "<what>: a x b overflows 64 bits"
// instead of wrapping around.
int64_t checked_mul(int64_t a, int64_t b, const std::string& what);
int64_t checked_add(int64_t a, int64_t b, const std::string& what);
uint64_t checked_mul_u64(uint64_t a, uint64_t b, const std::string& what);
uint64_t checked_add_u64(uint64_t a, uint64_t b, const std::string& what);

// The product of `dims` (each >= 0), which must not exceed `max_elements`; checked before every
// multiplication, so huge dimensions cannot wrap around to a small (or zero) size.
int64_t checked_numel(const std::vector<int64_t>& dims, int64_t max_elements,
                      const std::string& what);

// Throws "<what> <value> is out of range [lo, hi]" unless lo <= value <= hi.
void check_bound(int64_t value, int64_t lo, int64_t hi, const std::string& what);

// A number given as a JSON double or integer that must be an integer in [lo, hi]; throws naming
// `what`, the value and the bound (no undefined float -> int conversion of e.g. 1e30 or NaN).
int64_t integral_in_range(double value, int64_t lo, int64_t hi, const std::string& what);

}  // namespace sdpal
