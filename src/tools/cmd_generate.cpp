// `sdpal generate`: prompt -> PNG (txt2img, or img2img with --init-image).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <tuple>

#include "core/cpu.h"
#include "core/error.h"
#include "core/limits.h"
#include "formats/png.h"
#include "formats/safetensors.h"
#include "kernels/int8_linear.h"
#include "models/taesd.h"
#include "pipeline/generate.h"
#include "pipeline/generation_settings.h"
#include "pipeline/infotext.h"
#include "pipeline/lora_selection.h"
#include "tools/command.h"
#include "tools/options.h"
#include "tools/progress.h"
#include "tools/version.h"

namespace sdpal {
namespace {

struct GenerateArgs {
  ModelArgs model;
  std::string prompt, negative_prompt, output = "out.png", sampler = "euler_a",
                                       schedule = "default", timestep_spacing;
  int width = 0, height = 0, steps = 20, batch = 1, clip_skip = 1;
  float cfg = 7.5f, strength = 0.75f, eta = 0.f;
  int64_t seed = -1;
  std::string init_noise, step_noise, save_latents, init_image, taesd, preview,
      resize_mode = "crop";
  bool quiet = false, no_prompt_syntax = false, lora_merge = false;
  bool negative_given = false;  // -n "" differs from no -n for SDXL (force_zeros_for_empty_prompt)
  std::string original_size, crop, target_size;  // SDXL micro-conditioning
  std::vector<std::string> loras;
  std::string lora_dir, embeddings_dir;
  ToMeOptions tome;
};

// "A<sep>B" with two non-negative integers (e.g. "1024x768", "0,0"); for flag messages.
std::pair<int, int> parse_pair(const std::string& text, char sep, const char* flag,
                               const char* form) {
  const size_t at = text.find(sep);
  int a = -1, b = -1;
  size_t used_a = 0, used_b = 0;
  try {
    if (at != std::string::npos) {
      a = std::stoi(text.substr(0, at), &used_a);
      b = std::stoi(text.substr(at + 1), &used_b);
    }
  } catch (const std::exception&) {
    a = b = -1;
  }
  SDPAL_CHECK(
      at != std::string::npos && used_a == at && used_b == text.size() - at - 1 && a >= 0 &&
          b >= 0 && a <= 65536 && b <= 65536,
      std::string(flag) + " must be " + form + " (integers from 0 to 65536), got '" + text + "'");
  return {a, b};
}

// The tensor named `preferred`, else the file's only tensor.
Tensor read_tensor_file(const std::string& path, const std::string& preferred, const char* flag) {
  SafetensorsFile f(path);
  if (f.has(preferred)) return f.to_f32(preferred);
  if (f.tensors().size() == 1) return f.to_f32(f.tensors()[0].name);
  fail(std::string(flag) + " " + path + ": no tensor named '" + preferred + "' and " +
       std::to_string(f.tensors().size()) + " tensors to choose from");
}

// out.png -> out.png (one image) or out-1.png, out-2.png, ... (a batch).
std::string output_name(const std::string& out, int i, int n) {
  if (n == 1) return out;
  std::filesystem::path p(out);
  return (p.parent_path() /
          (p.stem().string() + "-" + std::to_string(i + 1) + p.extension().string()))
      .string();
}

// --lora FILE[:WEIGHT]: the weight is the part after the last ':' when it is a number.
LoraUse parse_lora_spec(const std::string& spec) {
  std::string path = spec;
  float w = 1.f;
  if (const size_t c = spec.rfind(':'); c != std::string::npos && c + 1 < spec.size()) {
    char* end = nullptr;
    const std::string num = spec.substr(c + 1);
    const float v = std::strtof(num.c_str(), &end);
    if (end && *end == '\0' && std::isfinite(v)) {
      path = spec.substr(0, c);
      w = v;
    }
  }
  SDPAL_CHECK(std::filesystem::is_regular_file(path), "--lora " + spec + ": no file " + path);
  return {LoraFile::load(path), w, w};
}

GenerationSettings settings_of(const GenerateArgs& a) {
  GenerationSettings s;
  s.prompt = a.prompt;
  s.negative_prompt = a.negative_prompt;
  s.negative_prompt_given = a.negative_given;
  s.width = a.width;
  s.height = a.height;
  s.steps = a.steps;
  s.cfg = a.cfg;
  s.sampler = a.sampler;
  s.karras = a.schedule == "karras";
  s.timestep_spacing = a.timestep_spacing;
  s.eta = a.eta;
  s.seed = a.seed;
  s.batch = a.batch;
  s.clip_skip = a.clip_skip;
  s.tome = a.tome;
  s.strength = a.strength;
  s.prompt_syntax = !a.no_prompt_syntax;
  s.lora_dir = a.lora_dir;
  s.lora_merge = a.lora_merge;
  s.embeddings_dir = a.embeddings_dir;
  return s;
}

// Flags checked before the model is loaded, so that a typo fails at once and names the flag.
void check_flags(const GenerateArgs& a) {
  // SDXL conditions: parsed again where used; here so that a typo fails before loading.
  if (!a.original_size.empty()) parse_pair(a.original_size, 'x', "--original-size", "WIDTHxHEIGHT");
  if (!a.target_size.empty()) parse_pair(a.target_size, 'x', "--target-size", "WIDTHxHEIGHT");
  if (!a.crop.empty()) parse_pair(a.crop, ',', "--crop", "TOP,LEFT");
  for (const auto& [flag, v] : {std::pair{"--width", a.width}, std::pair{"--height", a.height}})
    SDPAL_CHECK(v == 0 || (v > 0 && v % 8 == 0 && v <= limits::kMaxImageSizePixels),
                std::string(flag) + " must be a multiple of 8 from 8 to " +
                    std::to_string(limits::kMaxImageSizePixels) + ", got " + std::to_string(v));
  SDPAL_CHECK(a.steps >= 1 && a.steps <= limits::kMaxSteps, "--steps must be from 1 to " +
                                                                std::to_string(limits::kMaxSteps) +
                                                                ", got " + std::to_string(a.steps));
  SDPAL_CHECK(std::isfinite(a.tome.ratio) && a.tome.ratio >= 0 && a.tome.ratio <= 0.9,
              "--tome must be from 0 (off) to 0.9, the fraction of tokens merged away, got " +
                  a1111_number(a.tome.ratio));
  SDPAL_CHECK(
      a.tome.max_downsample == 1 || a.tome.max_downsample == 2 || a.tome.max_downsample == 4 ||
          a.tome.max_downsample == 8,
      "--tome-max-downsample must be 1, 2, 4 or 8, got " + std::to_string(a.tome.max_downsample));
}

// An output file must go into an existing folder and must not be a folder itself; checked before
// sampling so that a failing run spends no time and leaves nothing behind.
void check_output_path(const std::string& path, const char* flag) {
  const auto dir = std::filesystem::absolute(path).parent_path();
  SDPAL_CHECK(
      std::filesystem::is_directory(dir),
      std::string(flag) + " " + path + ": output folder " + dir.string() + " does not exist");
  SDPAL_CHECK(!std::filesystem::is_directory(path),
              std::string(flag) + " " + path + " is a folder, not a file name");
}

void run(const GenerateArgs& a) {
  check_flags(a);
  // Validate the output locations before spending time on loading and sampling.
  for (int i = 0; i < a.batch; ++i)
    check_output_path(output_name(a.output, i, a.batch), "--output");
  if (!a.save_latents.empty()) check_output_path(a.save_latents, "--save-latents");
  if (!a.preview.empty()) {
    SDPAL_CHECK(!a.taesd.empty(),
                "--preview needs --taesd DIR: previews are decoded with TAESD's fast decoder "
                "after every step (the full VAE would cost more than the step itself)");
    check_output_path(a.preview, "--preview");
  }
  apply_threads(a.model.threads);
  const auto t0 = std::chrono::steady_clock::now();
  auto model = load_model(a.model, /*need_encoder=*/!a.init_image.empty());
  // Even with -q: the choice of --int8 is what makes this run slow, and the user should know.
  if (model->int8_layers > 0) {
    const std::string slow = k::int8_speed_warning(cpu::level());
    if (!slow.empty()) std::fprintf(stderr, "sdpal: warning: %s\n", slow.c_str());
  }
  SDPAL_CHECK(a.schedule == "default" || a.schedule == "karras",
              "unknown --schedule '" + a.schedule + "' (default or karras)");
  const GenerationSettings settings = settings_of(a);
  GenerateParams p = make_generate_params(settings, *model, resolve_seed(a.seed));
  if (!a.original_size.empty())
    std::tie(p.original_width, p.original_height) =
        parse_pair(a.original_size, 'x', "--original-size", "WIDTHxHEIGHT");
  if (!a.target_size.empty())
    std::tie(p.target_width, p.target_height) =
        parse_pair(a.target_size, 'x', "--target-size", "WIDTHxHEIGHT");
  if (!a.crop.empty())
    std::tie(p.crop_top, p.crop_left) = parse_pair(a.crop, ',', "--crop", "TOP,LEFT");
  for (const std::string& spec : a.loras) p.loras.push_back(parse_lora_spec(spec));
  if (!a.init_noise.empty()) p.init_noise = read_tensor_file(a.init_noise, "noise", "--init-noise");
  if (!a.step_noise.empty())
    p.step_noise = read_tensor_file(a.step_noise, "step_noise", "--step-noise");
  if (!a.init_image.empty()) {
    const ResizeMode mode = a.resize_mode == "stretch" ? ResizeMode::stretch
                            : a.resize_mode == "fill"  ? ResizeMode::fill
                                                       : ResizeMode::crop;
    std::string what;
    const Image img = fit_image(read_png(a.init_image), p.width, p.height, mode, &what);
    if (!what.empty() && !a.quiet)
      std::fprintf(stderr, "sdpal: --init-image %s: %s\n", a.init_image.c_str(), what.c_str());
    p.init_image = image_to_tensor(img);
  }
  std::unique_ptr<Taesd> taesd;
  if (!a.taesd.empty()) {
    taesd = std::make_unique<Taesd>(Taesd::load(a.taesd));
    SDPAL_CHECK(taesd->has_decoder(), a.taesd + ": no TAESD decoder weights found");
    if (a.preview.empty()) p.taesd_decoder = taesd.get();
  }
  Progress bar("sampling", a.steps, !a.quiet);
  p.on_step = [&](int done, int total, const Tensor& latents) {
    bar.set_total(total);
    bar.update(done);
    if (taesd && !a.preview.empty()) {
      Tensor img = taesd->decode(latents);
      for (int64_t i = 0; i < img.numel(); ++i) img[i] = std::clamp(img[i], 0.f, 1.f);
      write_png(a.preview, tensor_to_image(img, 0));
    }
  };
  const auto t1 = std::chrono::steady_clock::now();
  GenerateResult r = generate(*model, p);
  bar.finish();
  for (const auto& w : r.warnings)
    if (!a.quiet) std::fprintf(stderr, "sdpal: warning: %s\n", w.c_str());

  if (!a.save_latents.empty()) write_safetensors_f32(a.save_latents, {{"latents", &r.latents}});
  GenerationInfo info = make_generation_info(
      settings, p, *model, std::string("sdpal ") + SDPAL_VERSION, p.init_image.has_value(),
      !a.init_noise.empty() || !a.step_noise.empty());
  add_result_fields(info, r);
  for (int i = 0; i < a.batch; ++i) {
    const std::string name = output_name(a.output, i, a.batch);
    write_png(name, tensor_to_image(r.image01, i),
              {{"parameters", image_infotext(info, a.batch, i)}});
    if (!a.quiet) std::fprintf(stderr, "wrote %s\n", name.c_str());
  }
  const auto t2 = std::chrono::steady_clock::now();
  if (!a.quiet)
    std::fprintf(stderr, "seed %llu, %d UNet calls, load %.2fs, generate %.2fs\n",
                 static_cast<unsigned long long>(p.seed), r.unet_calls,
                 std::chrono::duration<double>(t1 - t0).count(),
                 std::chrono::duration<double>(t2 - t1).count());
}

const bool registered = register_command(
    {"generate", "Generate images from a text prompt (txt2img, or img2img with --init-image)",
     [](CLI::App& app) {
       auto a = std::make_shared<GenerateArgs>();
       add_model_options(app, a->model);
       add_int8_options(app, a->model);
       app.add_option("-p,--prompt", a->prompt, "What to draw")->required();
       CLI::Option* negative = app.add_option(
           "-n,--negative-prompt", a->negative_prompt,
           "What to avoid (SDXL: without it the unconditional embeddings are zeros, as "
           "diffusers does; an explicit \"\" is encoded)");
       app.add_option("-W,--width", a->width,
                      "Image width in pixels, a multiple of 8 "
                      "(default: the model's native size)");
       app.add_option("-H,--height", a->height, "Image height in pixels, a multiple of 8");
       app.add_option("--steps", a->steps, "Sampling steps")->capture_default_str();
       app.add_option("--cfg-scale", a->cfg, "Classifier-free guidance scale (<= 1: off)")
           ->capture_default_str();
       app.add_option("--sampler", a->sampler,
                      "euler_a | euler | ddim | dpmpp_2m | dpmpp_2m_sde | pndm")
           ->capture_default_str()
           ->check(CLI::IsMember({"euler_a", "euler", "ddim", "dpmpp_2m", "dpmpp_2m_sde", "pndm"}));
       app.add_option("--schedule", a->schedule, "Sigma schedule: default | karras")
           ->capture_default_str();
       app.add_option("--timestep-spacing", a->timestep_spacing,
                      "leading | linspace | trailing (default: the model's scheduler config, "
                      "else the sampler's own default)")
           ->check(CLI::IsMember({"leading", "linspace", "trailing"}));
       app.add_option("--eta", a->eta, "DDIM eta (0 = deterministic)");
       app.add_option("-s,--seed", a->seed, "Seed (-1: random); same seed, same image")
           ->capture_default_str();
       app.add_option("-b,--batch-size", a->batch, "Images to generate from the prompt")
           ->capture_default_str()
           ->check(CLI::Range(1, limits::kMaxBatch));
       app.add_option(
              "--clip-skip", a->clip_skip,
              "Use the output of the Nth-from-last text encoder layer (1 = last, A1111 style)")
           ->capture_default_str();
       app.add_flag("--no-prompt-syntax", a->no_prompt_syntax,
                    "Encode prompts as diffusers does: no (emphasis:1.2), [less], BREAK or "
                    "<lora:...> syntax, truncated at 77 tokens (default: A1111 syntax, prompts "
                    "of any length in 75-token chunks; docs/prompts.md)");
       app.add_option("--lora", a->loras,
                      "LoRA file to apply, FILE or FILE:WEIGHT (repeatable; weight 1 by default); "
                      "it runs beside the weights, whatever their form")
           ->type_name("FILE[:WEIGHT]");
       app.add_option("--lora-dir", a->lora_dir,
                      "Folder of LoRA files for <lora:name:weight> tags in the prompt");
       app.add_flag("--lora-merge", a->lora_merge,
                    "Merge LoRAs into the (uncompressed) weights for this run: faster steps, more "
                    "memory; compressed layers keep the low-rank branch");
       app.add_option("--embeddings-dir", a->embeddings_dir,
                      "Folder of textual-inversion embeddings (.safetensors), used where their "
                      "file names appear in the prompt");
       app.add_option("-o,--output", a->output, "Output PNG (a batch adds -1, -2, ...)")
           ->capture_default_str();
       app.add_option("--init-image", a->init_image, "img2img: start from this PNG");
       app.add_option("--strength", a->strength, "img2img: how much to change the init image (0-1]")
           ->capture_default_str();
       app.add_option("--init-noise", a->init_noise,
                      "safetensors with the initial latent noise [1,4,h,w] (tensor 'noise')");
       app.add_option("--step-noise", a->step_noise,
                      "safetensors with per-step noise for ancestral samplers [steps,1,4,h,w]");
       app.add_option("--save-latents", a->save_latents,
                      "Also write the final latents (tensor 'latents') to this safetensors file");
       app.add_option("--taesd", a->taesd, "TAESD folder: decode with the tiny autoencoder");
       app.add_option("--resize-mode", a->resize_mode,
                      "How --init-image is fitted to --width/--height when its size differs: "
                      "crop (keep aspect, cut the overhang) | fill (keep aspect, pad with edge "
                      "pixels) | stretch (ignore aspect)")
           ->capture_default_str()
           ->check(CLI::IsMember({"crop", "fill", "stretch"}));
       app.add_option("--preview", a->preview,
                      "With --taesd: write a live preview PNG here after every step "
                      "(the final image then uses the full VAE)");
       app.add_option("--tome", a->tome.ratio,
                      "Token merging (ToMe): fraction of tokens merged away before "
                      "self-attention, 0 (off) to 0.9; faster, slightly different images")
           ->capture_default_str();
       app.add_option("--tome-max-downsample", a->tome.max_downsample,
                      "ToMe in blocks at most this far below full resolution: 1, 2, 4 or 8")
           ->capture_default_str();
       app.add_flag("--tome-random", a->tome.random,
                    "ToMe: pick each 2x2 cell's destination token at random (seeded by "
                    "--tome-seed; with an odd UNet batch, i.e. no guidance and one image, the "
                    "top-left token as without it, as tomesd does)");
       app.add_option("--tome-seed", a->tome.seed, "Seed for --tome-random")->capture_default_str();
       app.add_option("--original-size", a->original_size,
                      "SDXL: the original_size condition, WIDTHxHEIGHT (default: the image size)");
       app.add_option("--crop", a->crop,
                      "SDXL: the crop top-left condition, TOP,LEFT in pixels (default: 0,0)");
       app.add_option("--target-size", a->target_size,
                      "SDXL: the target_size condition, WIDTHxHEIGHT (default: the image size)");
       app.add_flag("-q,--quiet", a->quiet, "No progress bar or messages");
       app.callback([a, negative] {
         a->negative_given = negative->count() > 0;
         run(*a);
       });
     }});

}  // namespace
}  // namespace sdpal
