// Mixed-bit recipes: per-layer bit widths chosen from a pre-analysis's cumulative curves, with the
// rule of Apple's mixed_bit_compression_pre_analysis.py, and recipe files for `compress --recipe`.
//
// Rule: for a PSNR threshold T, each candidate layer gets the smallest nbits whose cumulative
// curve, at that layer's position in the curve's order, has a mean PSNR (over the runs) above T;
// a layer no curve keeps above T stays 16-bit (not palettized).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compression/analysis.h"

namespace sdpal {

// The recipe for threshold `threshold` (needs every cumulative curve complete).
Recipe build_recipe(const Analysis& a, double threshold);

// The thresholds of the recipe series, evenly spaced from (top - 1 dB) down to (linear 8-bit + 5
// dB), `count` of them (count 1: just the first), as numpy.linspace spaces them. top is the
// original's PSNR or, when lower, the PSNR of uniform palettization at the most bits analysed
// (8): sdpal's runtime is deterministic, so the original's rerun is identical (recorded as
// 200 dB) where Apple's GPU reruns measured a noise floor (~82 dB for SDXL) about as high as
// uniform 8-bit palettization's; a top near 200 dB would only give recipes of almost 16 bits.
std::vector<double> recipe_thresholds(const Analysis& a, int count);

// Every threshold at which the recipe changes, ascending: -infinity (each layer at the smallest
// nbits) and each distinct cumulative mean (the largest keeps every layer at 16 bits). Recipes
// get more bits (or as many) as the threshold rises.
std::vector<double> distinct_thresholds(const Analysis& a);

// --target-bits: the threshold of the highest-quality recipe whose average bits per weight is at
// most `bits`. Throws when even the smallest-nbits recipe averages more.
double threshold_for_bits(const Analysis& a, double bits);

// A recipe read from a file for `compress --recipe`.
struct RecipeChoice {
  std::string name;        // the recipe's name ("" for a plain {layer: bits} file)
  Recipe recipe;           // {layer: bits}, bits in {1, 2, 4, 6, 8, 16}
  int64_t group_size = 0;  // from the analysis settings when present, else 0 (per tensor)
  bool group_size_known = false;
};

// Reads an analysis file (sdpal's or Apple's pre-analysis JSON: the recipe `name`, or the only
// one when `name` is empty) or a plain {layer: bits} JSON object (`name` must be empty). Every
// value must be one of 1, 2, 4, 6, 8, 16. Throws sdpal::Error naming the file and the problem.
RecipeChoice load_recipe_file(const std::string& path, const std::string& name);

}  // namespace sdpal
