// `sdpal compress`: palettizes (k-means LUT + n-bit indices) or linearly quantizes (8-bit) the
// large Linear/Conv weights of a diffusers model into a compressed diffusers folder.
#include <algorithm>
#include <cstdio>
#include <limits>
#include <memory>

#include "compression/compress_model.h"
#include "compression/quality.h"
#include "compression/recipe.h"
#include "core/error.h"
#include "tools/command.h"
#include "tools/options.h"

namespace sdpal {
namespace {

struct Args {
  std::string model, output, mode = "palettize", variant;
  LutGranularityArgs lut;
  int nbits = 0;  // 0: not given
  bool asymmetric = false, force = false, include_embeddings = false;
  std::vector<std::string> components = {"unet", "text_encoder"};
  int64_t min_elements = 100000;
  bool components_given = false, min_elements_given = false;
  int threads = 0;
  std::string recipe, recipe_name;  // mixed-bit recipe file (sdpal analyze / Apple / {layer: bits})
  bool eval = false;                // measure PSNR against the input afterwards
  int eval_steps = 10;
};

// --recipe: exactly the recipe's layers are palettized at their bits, in the components its keys
// name (unprefixed keys: the UNet), with the analysis's LUT granularity unless one is given.
void apply_recipe(const Args& a, CompressOptions& o) {
  SDPAL_CHECK(a.mode == "palettize" && a.nbits == 0,
              "compress: --recipe sets the bits of every layer; drop --nbits / --mode linear8");
  SDPAL_CHECK(!a.components_given && !a.min_elements_given,
              "compress: --recipe decides which layers of which components are compressed (its "
              "keys; unprefixed keys are UNet layers); drop --components / --min-elements");
  const RecipeChoice rc = load_recipe_file(a.recipe, a.recipe_name);
  o.layer_bits = rc.recipe;
  o.min_elements = std::numeric_limits<int64_t>::max();  // nothing outside the recipe
  o.components = {"unet"};
  for (const auto& [key, bits] : rc.recipe)
    if (const size_t slash = key.find('/');
        slash != std::string::npos && std::find(o.components.begin(), o.components.end(),
                                                key.substr(0, slash)) == o.components.end())
      o.components.push_back(key.substr(0, slash));
  if (!a.lut.given() && rc.group_size_known) o.group_size = rc.group_size;
}

CompressOptions to_options(const Args& a) {
  CompressOptions o;
  SDPAL_CHECK(!a.model.empty(), "compress: --model is required");
  SDPAL_CHECK(!a.output.empty(), "compress: --output is required");
  if (a.mode == "palettize") {
    o.mode = CompressMode::Palettize;
    o.nbits = a.nbits ? a.nbits : 4;
    SDPAL_CHECK(!a.asymmetric, "compress: --asymmetric applies to --mode linear8 only");
    o.group_size = resolve_group_size(a.lut, "compress");
  } else {
    o.mode = CompressMode::Linear8;
    SDPAL_CHECK(a.nbits == 0 || a.nbits == 8,
                "compress: --mode linear8 stores 8 bits, not --nbits " + std::to_string(a.nbits));
    SDPAL_CHECK(!a.lut.given(),
                "compress: --mode linear8 is per output channel; --granularity and --group-size "
                "apply to palettize");
    o.symmetric = !a.asymmetric;
  }
  o.components = a.components;
  o.min_elements = a.min_elements;
  o.include_embeddings = a.include_embeddings;
  o.variant = a.variant;
  o.force = a.force;
  if (!a.recipe.empty())
    apply_recipe(a, o);
  else
    SDPAL_CHECK(a.recipe_name.empty(), "compress: --recipe-name needs --recipe");
  o.log = [](const std::string& line) {
    std::printf("  %s\n", line.c_str());
    std::fflush(stdout);
  };
  return o;
}

void run(const Args& a) {
  apply_threads(a.threads);
  const CompressOptions o = to_options(a);
  const std::string what =
      o.mode == CompressMode::Linear8
          ? std::string("linear 8-bit, ") + (o.symmetric ? "symmetric" : "asymmetric")
          : (a.recipe.empty() ? std::to_string(o.nbits) + "-bit palette, "
                              : "mixed-bit recipe " + a.recipe +
                                    (a.recipe_name.empty() ? "" : ":" + a.recipe_name) + ", ") +
                (o.group_size ? "per group of " + std::to_string(o.group_size) + " channels"
                              : std::string("per tensor"));
  std::printf("compressing %s -> %s (%s)\n", a.model.c_str(), a.output.c_str(), what.c_str());
  std::fflush(stdout);
  const CompressSummary s = compress_model(a.model, a.output, o);
  std::printf("compressed %zu tensors (%.2fM parameters) in %.1f s\n", s.tensors.size(),
              s.params_compressed / 1e6, s.seconds);
  std::printf("  compressed tensors: %.2f MB -> %.2f MB (%.2f bits per weight)\n",
              s.bytes_before / 1e6, s.bytes_after / 1e6, s.bits_per_weight());
  std::printf("  weight files:       %.2f MB -> %.2f MB\n", s.weight_file_bytes_before / 1e6,
              s.weight_file_bytes_after / 1e6);
  std::printf("wrote %s\n", a.output.c_str());
  if (a.eval) {
    // The same evaluation as `sdpal compare`: both models, same prompts, seeds and noise.
    ModelArgs ref_args, test_args;
    ref_args.path = a.model;
    ref_args.variant = a.variant;
    test_args.path = a.output;
    auto ref = load_model(ref_args, false);
    auto test = load_model(test_args, false);
    CompareOptions co;
    co.steps = a.eval_steps;
    const CompareResult r = compare_models(*ref, *test, co);
    for (const auto& run : r.runs)
      std::printf("  PSNR latents %6.2f dB, image %6.2f dB  (seed %llu) %s\n", run.psnr_latents,
                  run.psnr_image, static_cast<unsigned long long>(run.seed), run.prompt.c_str());
    std::printf("eval (%d DDIM steps): mean PSNR vs %s: latents %.2f dB, image %.2f dB\n",
                a.eval_steps, a.model.c_str(), r.mean_psnr_latents, r.mean_psnr_image);
  }
}

const bool registered = register_command(
    {"compress",
     "Compress a diffusers model: k-means palettization or linear 8-bit quantization of its "
     "large Linear/Conv weights",
     [](CLI::App& app) {
       auto a = std::make_shared<Args>();
       app.add_option("-m,--model", a->model, "Input diffusers folder (never modified)");
       app.add_option("-o,--output", a->output, "Output folder (written atomically)");
       app.add_option("--mode", a->mode, "palettize (default) or linear8")
           ->check(CLI::IsMember({"palettize", "linear8"}));
       app.add_option("--nbits", a->nbits, "Palette index bits: 1, 2, 4 (default), 6 or 8");
       add_lut_granularity_options(app, a->lut);
       app.add_option("--components", a->components,
                      "Components to compress, comma-separated (default unet,text_encoder; "
                      "vae too if named)")
           ->delimiter(',')
           ->each([a](const std::string&) { a->components_given = true; });
       app.add_option("--min-elements", a->min_elements,
                      "Compress only weights with more elements than this (default 100000)")
           ->each([a](const std::string&) { a->min_elements_given = true; });
       app.add_flag("--asymmetric", a->asymmetric,
                    "linear8: uint8 with per-channel zero points instead of symmetric int8");
       app.add_flag("--include-embeddings", a->include_embeddings,
                    "Also compress token/position embedding tables");
       app.add_option("--variant", a->variant,
                      "Weight files to read, e.g. fp16 (default: as the runtime picks them)");
       app.add_flag("--force", a->force, "Replace a non-empty output folder");
       app.add_option("--recipe", a->recipe,
                      "Mixed-bit recipe: an analysis JSON (sdpal analyze or Apple's pre-analysis) "
                      "or a plain {layer: bits} JSON; only its layers are palettized");
       app.add_option("--recipe-name", a->recipe_name,
                      "Which recipe of the analysis (e.g. recipe_4.52_bit_mixedpalette)");
       app.add_option("-t,--threads", a->threads, "CPU threads (default: all cores)");
       app.add_flag("--eval", a->eval,
                    "Afterwards, generate with both models (default prompts, seed 0) and print the "
                    "PSNR of the compressed model's latents and images, as `sdpal compare` does");
       app.add_option("--eval-steps", a->eval_steps, "DDIM steps per evaluation run")
           ->capture_default_str();
       app.callback([a] { run(*a); });
     }});

}  // namespace
}  // namespace sdpal
