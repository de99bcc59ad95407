// `sdpal compare`: PSNR of a (compressed) model's outputs against a reference model.
#include <cmath>
#include <cstdio>
#include <fstream>

#include "compression/quality.h"
#include "core/error.h"
#include "core/format.h"
#include "tools/command.h"
#include "tools/options.h"

namespace sdpal {
namespace {

struct CompareArgs {
  ModelArgs reference, test;
  std::string prompts_file;
  std::vector<uint64_t> seeds{0};
  int steps = 10, width = 0, height = 0;
  float cfg = 7.5f;
};

void run(const CompareArgs& a) {
  apply_threads(a.reference.threads);
  auto ref = load_model(a.reference, false);
  auto test = load_model(a.test, false);
  CompareOptions o;
  if (!a.prompts_file.empty()) o.prompts = read_prompts_file(a.prompts_file);
  o.seeds = a.seeds;
  o.steps = a.steps;
  o.width = a.width;
  o.height = a.height;
  o.cfg_scale = a.cfg;
  CompareResult r = compare_models(*ref, *test, o);
  std::printf("PSNR of %s against %s (%d DDIM steps; peak = max |test output|)\n",
              test->path.c_str(), ref->path.c_str(), o.steps);
  std::printf("%-10s %-10s %6s  %s\n", "latents", "image", "seed", "prompt");
  for (const auto& run : r.runs)
    std::printf("%-10s %-10s %6llu  %s\n", fixed(run.psnr_latents).c_str(),
                fixed(run.psnr_image).c_str(), static_cast<unsigned long long>(run.seed),
                run.prompt.c_str());
  std::printf("mean: latents %s dB, image %s dB\n", fixed(r.mean_psnr_latents).c_str(),
              fixed(r.mean_psnr_image).c_str());
}

const bool registered = register_command(
    {"compare", "PSNR of a model's outputs against a reference model (same prompts, seeds, noise)",
     [](CLI::App& app) {
       auto a = std::make_shared<CompareArgs>();
       app.add_option("-r,--reference", a->reference.path, "Reference (uncompressed) model")
           ->required();
       app.add_option("-m,--model", a->test.path, "Model to measure (e.g. compressed)")->required();
       app.add_option("--prompts", a->prompts_file, "File with one prompt per line");
       app.add_option("--seeds", a->seeds, "Seeds (each prompt runs with each seed)");
       app.add_option("--steps", a->steps, "DDIM steps per run")->capture_default_str();
       app.add_option("-W,--width", a->width, "Width (default: the model's native size)");
       app.add_option("-H,--height", a->height, "Height");
       app.add_option("--cfg-scale", a->cfg, "Guidance scale")->capture_default_str();
       app.add_option("--tokenizer", a->reference.tokenizer, "Tokenizer folder for single files");
       app.add_option("-t,--threads", a->reference.threads, "CPU threads");
       app.callback([a] {
         a->test.tokenizer = a->reference.tokenizer;
         run(*a);
       });
     }});

}  // namespace
}  // namespace sdpal
