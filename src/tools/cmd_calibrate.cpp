// `sdpal calibrate`: input ranges of the UNet's Linear/Conv2d layers for int8 (W8A8) compute,
// written beside the UNet weights (or to --output) for `generate --int8`.
#include <chrono>
#include <cstdio>

#include "compression/calibrate.h"
#include "core/error.h"
#include "tools/command.h"
#include "tools/options.h"
#include "tools/progress.h"

namespace sdpal {
namespace {

struct CalibrateArgs {
  ModelArgs model;
  std::string prompts_file, output;
  CalibrateOptions o;
  int64_t seed = 0;
  bool quiet = false;
};

void run(CalibrateArgs& a) {
  SDPAL_CHECK(a.seed >= 0, "calibrate: --seed must not be negative");
  apply_threads(a.model.threads);
  if (!a.prompts_file.empty()) a.o.prompts = read_prompts_file(a.prompts_file);
  const auto t0 = std::chrono::steady_clock::now();
  auto m = load_model(a.model, false);
  const std::string out = a.output.empty() ? default_int8_calibration_path(m->path) : a.output;
  a.o.seed = static_cast<uint64_t>(a.seed);
  const int prompts = a.o.prompts.empty() ? static_cast<int>(default_calibration_prompts().size())
                                          : static_cast<int>(a.o.prompts.size());
  Progress bar("calibrating", prompts, !a.quiet);
  a.o.progress = [&](int done, int) { bar.update(done); };
  Int8Calibration c = calibrate_int8(*m, a.o);
  bar.finish();
  write_int8_calibration(out, c);
  if (!a.quiet)
    std::fprintf(stderr, "wrote %s: %zu layers (%lld int8), %d UNet calls at %dx%d, %.1fs\n",
                 out.c_str(), c.layers.size(), static_cast<long long>(c.int8_count()),
                 c.settings["unet_calls"].get<int>(), c.settings["width"].get<int>(),
                 c.settings["height"].get<int>(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

const bool registered = register_command(
    {"calibrate", "Measure the UNet's layer input ranges for int8 (W8A8) compute (generate --int8)",
     [](CLI::App& app) {
       auto a = std::make_shared<CalibrateArgs>();
       add_model_options(app, a->model);
       app.add_option("--prompts", a->prompts_file,
                      "File with one prompt per line (default: 2 built-in prompts)");
       app.add_option("--steps", a->o.steps, "DDIM steps per prompt")->capture_default_str();
       app.add_option("-W,--width", a->o.width, "Width (default: the model's native size)");
       app.add_option("-H,--height", a->o.height, "Height");
       app.add_option("-s,--seed", a->seed, "Seed of the first prompt (the next ones count up)")
           ->capture_default_str();
       app.add_option("--cfg-scale", a->o.cfg_scale, "Guidance scale")->capture_default_str();
       app.add_option("--min-work-share", a->o.min_work_share,
                      "Layers with less of the UNet's Linear/Conv work stay fp32 (0: all int8)")
           ->capture_default_str();
       app.add_option("-o,--output", a->output,
                      "Calibration file (default: <model>/unet/sdpal_int8.json, or "
                      "<checkpoint>.sdpal_int8.json beside a single file)");
       app.add_flag("-q,--quiet", a->quiet, "No progress bar or messages");
       app.callback([a] { run(*a); });
     }});

}  // namespace
}  // namespace sdpal
