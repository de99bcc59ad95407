// AUTOMATIC1111-style "infotext": the generation parameters stored in a PNG's `parameters`
// text chunk, readable by A1111's "PNG Info" tab and by most SD tools.
//
// Layout (A1111 modules/processing.py create_infotext):
//   <prompt>
//   Negative prompt: <negative prompt>          (only when non-empty)
//   Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.5, Seed: 42,
//   Size: 512x512, Model hash: 6ce0161689, Model: v1-5, Denoising strength: 0.75,
//   Clip skip: 2, Token merging ratio: 0.5, RNG: CPU, <extra...>, Version: sdpal 0.1.0
// (the last line is one line). Fields with no value are left out. A value containing ',', ':'
// or a newline is written as a JSON string ("a, b" with \" and \\ escapes), as A1111 does.
// Numbers are written as A1111's files show them: integral values without a fraction
// ("CFG scale: 7"), others with the shortest round-trip digits like Python's repr (7.5, 0.75).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sdpal {

struct GenerationInfo {
  std::string prompt;
  std::string negative_prompt;
  int steps = 0;
  std::string sampler;        // A1111 display name: "Euler a", "Euler", "DDIM", "DPM++ 2M", "PLMS"
  std::string schedule_type;  // "Automatic", "Karras"; empty: left out
  double cfg_scale = 7.0;
  uint64_t seed = 0;
  int width = 0;
  int height = 0;
  std::string model_hash;  // A1111 short hash (first 10 hex digits of the file's sha256); optional
  std::string model;       // model name; optional
  std::optional<double> denoising_strength;  // img2img only
  int clip_skip = 1;  // A1111 numbering: 1 = last layer (left out), 2 = one layer skipped
  double token_merging_ratio = 0;  // ToMe ratio; 0 (off) is left out
  std::string rng;  // A1111 "RNG" source, e.g. "CPU"; empty: left out (A1111's GPU default)
  std::vector<std::pair<std::string, std::string>> extra;  // other "Key: value" fields, in order
  std::string version;                                     // e.g. "sdpal 0.1.0"; empty: left out

  bool operator==(const GenerationInfo&) const = default;
};

// The `parameters` text for a PNG.
std::string a1111_parameters(const GenerationInfo& info);

// Parses text written by a1111_parameters or by A1111 itself (A1111's
// parse_generation_parameters rules: the last line holds the fields if it has at least three
// "Key: value" pairs; lines are stripped). Unknown fields go to `extra`. Throws sdpal::Error
// if a known numeric field (Steps, CFG scale, Seed, Size, Denoising strength, Clip skip, Token
// merging ratio) is malformed, not finite, or out of the format's range (Clip skip below 1, a
// negative ratio).
GenerationInfo parse_a1111_parameters(const std::string& text);

// A number as written in infotext: "7", "7.5", "0.75", "1e-05" (see above).
std::string a1111_number(double value);

}  // namespace sdpal
