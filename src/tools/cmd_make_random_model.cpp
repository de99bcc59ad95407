// `sdpal make-random-model`: a full-size Stable Diffusion folder with random weights (real
// architecture and configs), for benchmarks and tests without downloading a model.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "formats/checkpoint_keymap.h"
#include "models/clip_text.h"
#include "models/random_model.h"
#include "models/unet.h"
#include "models/vae.h"
#include "tools/command.h"

namespace sdpal {
namespace {

struct Options {
  std::string arch = "sd15", like, output, dtype = "fp16", single_file, tokenizer, tokenizer_2;
  uint64_t seed = 0;
  bool force = false, count_only = false;
};

std::string default_tokenizer(const std::string& arch, const char* sub = "tokenizer") {
  // The real CLIP tokenizer files (SD2's and SDXL's tokenizer_2 pad with '!') ship with the
  // golden fixtures.
  const std::string fixture = arch == "sd21"   ? "tiny-sd2"
                              : arch == "sdxl" ? "tiny-sdxl"
                                               : "tiny-sd1";
  return (std::filesystem::path(SDPAL_SOURCE_DIR) / ".." / "shared" / "fixtures" / fixture /
          "model" / sub)
      .lexically_normal()
      .string();
}

void print_counts(int64_t unet, int64_t vae, int64_t te, int64_t te2) {
  std::printf("parameters: unet %lld, vae %lld, text_encoder %lld", static_cast<long long>(unet),
              static_cast<long long>(vae), static_cast<long long>(te));
  if (te2 > 0) std::printf(", text_encoder_2 %lld", static_cast<long long>(te2));
  std::printf(", total %lld\n", static_cast<long long>(unet + vae + te + te2));
}

void run(const Options& o) {
  const ModelConfigs configs =
      o.like.empty() ? builtin_model_configs(o.arch) : model_configs_from_folder(o.like);
  if (o.count_only) {
    print_counts(parameter_count(unet_tensor_specs(UNetConfig::from_json(configs.unet, "unet"))),
                 parameter_count(vae_tensor_specs(VaeConfig::from_json(configs.vae, "vae"))),
                 parameter_count(clip_text_tensor_specs(
                     ClipTextConfig::from_json(configs.text_encoder, "text_encoder"))),
                 configs.text_encoder_2.is_null()
                     ? 0
                     : parameter_count(clip_text_tensor_specs(
                           ClipTextConfig::from_json(configs.text_encoder_2, "text_encoder_2"))));
    return;
  }
  if (o.output.empty()) fail("make-random-model: --output is required");
  SDPAL_CHECK(o.single_file.empty() || configs.text_encoder_2.is_null(),
              "make-random-model: --single-file is not supported for SDXL yet");
  RandomModelOptions opt;
  opt.dtype = o.dtype == "fp32" ? DType::F32 : DType::F16;
  opt.seed = o.seed;
  opt.force = o.force;
  opt.tokenizer_dir = !o.tokenizer.empty() ? o.tokenizer
                      : o.like.empty()     ? default_tokenizer(o.arch)
                                           : o.like + "/tokenizer";
  if (!configs.text_encoder_2.is_null())
    opt.tokenizer_2_dir = !o.tokenizer_2.empty() ? o.tokenizer_2
                          : o.like.empty()       ? default_tokenizer(o.arch, "tokenizer_2")
                                                 : o.like + "/tokenizer_2";
  opt.log = [](const std::string& line) {
    std::printf("  %s\n", line.c_str());
    std::fflush(stdout);
  };
  std::printf("writing %s (%s, %s, seed %llu)\n", o.output.c_str(),
              o.like.empty() ? o.arch.c_str() : ("like " + o.like).c_str(), o.dtype.c_str(),
              static_cast<unsigned long long>(o.seed));
  const auto t0 = std::chrono::steady_clock::now();
  const RandomModelSummary s = write_random_model(configs, o.output, opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  print_counts(s.unet_params, s.vae_params, s.text_encoder_params, s.text_encoder_2_params);
  std::printf("wrote %.2f GB of weights in %.1f s\n", s.bytes / 1e9, secs);
  if (!o.single_file.empty()) {
    const auto t1 = std::chrono::steady_clock::now();
    write_single_file(o.output, o.single_file, /*embed_configs=*/true);
    std::printf("wrote single-file checkpoint %s in %.1f s\n", o.single_file.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
  }
}

const bool registered = register_command(
    {"make-random-model",
     "Write a diffusers folder with random weights and the real SD 1.5 / 2.1 / SDXL architecture",
     [](CLI::App& app) {
       auto o = std::make_shared<Options>();
       app.add_option("--arch", o->arch, "Architecture: sd15 (default), sd21 or sdxl (base 1.0)")
           ->check(CLI::IsMember(builtin_archs()));
       app.add_option("--like", o->like,
                      "Take the configs (and tokenizer) of this diffusers folder instead of --arch")
           ->check(CLI::ExistingDirectory);
       app.add_option("--output", o->output, "Output folder (created atomically)");
       app.add_option("--dtype", o->dtype, "Weight dtype: fp16 (default) or fp32")
           ->check(CLI::IsMember({"fp16", "fp32"}));
       app.add_option("--seed", o->seed, "Random seed (default 0)");
       app.add_option("--single-file", o->single_file,
                      "Also write an original-layout single-file .safetensors checkpoint here");
       app.add_option("--tokenizer", o->tokenizer,
                      "Folder with the CLIP tokenizer files (default: the fixtures' real ones)");
       app.add_option("--tokenizer-2", o->tokenizer_2,
                      "SDXL: folder with the tokenizer_2 files (default: the fixtures' real ones)");
       app.add_flag("--force", o->force, "Replace a non-empty output folder");
       app.add_flag("--count-only", o->count_only,
                    "Only print the parameter counts of the architecture; write nothing");
       app.callback([o] { run(*o); });
     }});

}  // namespace
}  // namespace sdpal
