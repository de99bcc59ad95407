#include "server/generator.h"

#include <omp.h>

#include <charconv>
#include <ctime>
#include <filesystem>

#include "core/error.h"
#include "formats/png.h"
#include "models/taesd.h"
#include "pipeline/generate.h"
#include "pipeline/generation_settings.h"
#include "pipeline/infotext.h"

namespace sdpal::server {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Thrown from the step callback when the job is interrupted: the latents reached so far.
struct Interrupted {
  Tensor latents;
};

std::string utc_stamp(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

// A mask image as [1, 1, H, W] in [0, 1]: its luminance as PIL's convert("L") computes it
// (ITU-R 601-2 weights in 16-bit fixed point), white = repaint unless inverted.
Tensor mask_tensor(const Image& m, bool invert) {
  Tensor t({1, 1, m.height, m.width});
  for (int64_t i = 0; i < int64_t(m.width) * m.height; ++i) {
    const uint8_t* px = &m.rgb[i * 3];
    const uint32_t l = (px[0] * 19595u + px[1] * 38470u + px[2] * 7471u + 0x8000u) >> 16;
    const float v = static_cast<float>(l) / 255.f;
    t[i] = invert ? 1.f - v : v;
  }
  return t;
}

Tensor decode(const StableDiffusion& m, const Taesd* taesd, const Tensor& latents) {
  if (!taesd) return decode_latents(m, latents);
  Tensor img = taesd->decode(latents);
  for (int64_t i = 0; i < img.numel(); ++i) img[i] = std::clamp(img[i], 0.f, 1.f);
  return img;
}

// A float setting as the infotext writes it (0.6, not 0.6000000238418579).
json number(float v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return json::parse(std::string(buf, r.ptr));
}

}  // namespace

Generator::Generator(ModelCatalog catalog, ModelLoadSettings load, std::string version,
                     std::string save_dir)
    : catalog_(std::move(catalog)),
      load_(std::move(load)),
      version_(std::move(version)),
      save_dir_(std::move(save_dir)) {
  const auto models = catalog_.list();
  SDPAL_CHECK(!models.empty(), "no model to serve: give --model or a --models-dir with models");
  this->load(models.front(), load_.int8);
}

Generator::~Generator() = default;

void Generator::load(const ModelEntry& e, bool int8) {
  LoadOptions o;
  o.variant = load_.variant;
  o.prediction_type = load_.prediction_type;
  o.tokenizer_dir = load_.tokenizer;
  o.load_vae_encoder = true;  // img2img requests need it
  o.int8 = int8;
  // A calibration file given at startup belongs to the startup model only.
  if (int8 && model_name_.empty()) o.int8_calibration = load_.int8_calibration;
  std::unique_ptr<StableDiffusion> m = StableDiffusion::load(e.path, o);
  std::shared_ptr<const Taesd> taesd;
  const std::string taesd_dir = !load_.taesd.empty() ? load_.taesd
                                : fs::is_directory(fs::path(e.path) / "taesd")
                                    ? (fs::path(e.path) / "taesd").string()
                                    : "";
  if (!taesd_dir.empty()) {
    auto t = std::make_shared<Taesd>(Taesd::load(taesd_dir));
    if (t->has_decoder()) taesd = std::move(t);
  }
  model_ = std::move(m);
  std::lock_guard lock(mu_);
  model_name_ = e.name;
  int8_ = int8;
  taesd_ = std::move(taesd);
}

void Generator::switch_to(const std::string& name, std::optional<bool> int8) {
  const std::optional<ModelEntry> e = catalog_.find(name);
  if (!e)
    throw RequestError(
        400, "model_not_found",
        "no model named '" + name.substr(0, 128) + "' (GET /sdapi/v1/sd-models lists them)");
  const bool want_int8 = int8.value_or(current_int8());
  if (e->name == current_model() && want_int8 == current_int8()) return;
  try {
    load(*e, want_int8);
  } catch (const Error& err) {
    throw RequestError(want_int8 ? 400 : 500, "model_load_failed", err.what());
  }
}

std::string Generator::current_model() const {
  std::lock_guard lock(mu_);
  return model_name_;
}

bool Generator::current_int8() const {
  std::lock_guard lock(mu_);
  return int8_;
}

ProgressSnapshot Generator::progress() const {
  std::lock_guard lock(mu_);
  ProgressSnapshot s = progress_;
  if (s.active)
    s.elapsed_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  return s;
}

GeneratedImages Generator::run(const GenerationRequest& r, Job& job) {
  if (load_.threads > 0) omp_set_num_threads(load_.threads);
  if (!r.model.empty() || r.int8) {
    std::string name = r.model.empty() ? current_model() : r.model;
    // OpenAI clients send their own model names ("dall-e-2"): those mean the current model.
    if (r.style == ResponseStyle::openai && !catalog_.find(name)) name = current_model();
    switch_to(name, r.int8);
  }
  const StableDiffusion& m = *model_;
  std::shared_ptr<const Taesd> taesd;
  {
    std::lock_guard lock(mu_);
    taesd = taesd_;
  }
  if (r.taesd_decode && !taesd)
    throw RequestError(400, "not_supported",
                       "sdpal_taesd_decode: no TAESD decoder for this model (start the server "
                       "with --taesd DIR, or put one in <model>/taesd)");
  GenerationSettings s = r.settings;
  s.lora_dir = load_.lora_dir;
  s.embeddings_dir = load_.embeddings_dir;
  const uint64_t seed = resolve_seed(s.seed);
  const bool img2img = r.init_image.has_value();
  const std::string stamp = utc_stamp("%Y%m%d%H%M%S");
  {
    std::lock_guard lock(mu_);
    progress_ = {};
    progress_.active = true;
    progress_.steps = s.steps;
    progress_.batches = r.n_iter;
    progress_.job_timestamp = stamp;
    progress_.previewer = taesd;
    started_ = std::chrono::steady_clock::now();
  }
  struct ProgressDone {
    Generator* g;
    ~ProgressDone() {
      std::lock_guard lock(g->mu_);
      g->progress_ = {};
    }
  } progress_done{this};

  GeneratedImages out;
  json all_prompts = json::array(), all_negative = json::array(), infotexts = json::array();
  GenerationInfo first_info;
  for (int k = 0; k < r.n_iter && !out.interrupted; ++k) {
    // A1111: batch k of n_iter uses seed + k * batch_size.
    const uint64_t batch_seed = seed + static_cast<uint64_t>(k) * s.batch;
    GenerateParams p = make_generate_params(s, m, batch_seed);
    if (img2img) {
      try {
        p.init_image =
            image_to_tensor(fit_image(*r.init_image, p.width, p.height, r.resize_mode, nullptr));
        if (r.mask)
          p.mask = mask_tensor(fit_image(*r.mask, p.width, p.height, r.resize_mode, nullptr),
                               r.invert_mask);
      } catch (const Error& e) {
        throw RequestError(400, "invalid_image", e.what());
      }
    }
    if (r.taesd_decode) p.taesd_decoder = taesd.get();
    {
      std::lock_guard lock(mu_);
      progress_.batch = k;
      progress_.step = 0;
    }
    p.on_step = [&](int done, int total, const Tensor& latents) {
      {
        std::lock_guard lock(mu_);
        progress_.step = done;
        progress_.steps = total;
        if (taesd) {
          progress_.latents = latents;
          progress_.latents_step = done;
        }
      }
      if (job.interrupted()) throw Interrupted{latents};
    };
    Tensor image01;
    GenerateResult result;
    try {
      result = generate(m, p);
      image01 = result.image01;
    } catch (Interrupted& i) {
      // A1111 answers an interrupted job with the images of the latents reached so far.
      image01 = decode(m, r.taesd_decode ? taesd.get() : nullptr, i.latents);
      out.interrupted = true;
    } catch (const Error& e) {
      throw RequestError(400, "invalid_request", e.what());
    }
    GenerationInfo info = make_generation_info(s, p, m, version_, img2img);
    add_result_fields(info, result);
    if (k == 0) first_info = info;
    for (int i = 0; i < s.batch; ++i) {
      const std::string text = image_infotext(info, s.batch, i);
      const Image img = tensor_to_image(image01, i);
      out.pngs.push_back(encode_png(img.rgb.data(), img.width, img.height, {{"parameters", text}}));
      if (!save_dir_.empty()) {
        const std::string name = stamp + "-" + std::to_string(++saved_count_) + "-" +
                                 std::to_string(batch_seed) + "-" + std::to_string(i) + ".png";
        write_png((fs::path(save_dir_) / name).string(), img.rgb.data(), img.width, img.height,
                  {{"parameters", text}});
      }
      out.infotexts.push_back(text);
      out.seeds.push_back(batch_seed);
      infotexts.push_back(text);
      all_prompts.push_back(s.prompt);
      all_negative.push_back(s.negative_prompt);
    }
  }
  const GenerationInfo& fi = first_info;
  out.info = {{"prompt", s.prompt},
              {"all_prompts", all_prompts},
              {"negative_prompt", s.negative_prompt},
              {"all_negative_prompts", all_negative},
              {"seed", seed},
              {"all_seeds", out.seeds},
              {"subseed", -1},
              {"all_subseeds", json::array()},
              {"subseed_strength", 0},
              {"width", fi.width},
              {"height", fi.height},
              {"sampler_name", fi.sampler},
              {"scheduler", fi.schedule_type},
              {"cfg_scale", number(s.cfg)},
              {"steps", s.steps},
              {"batch_size", s.batch},
              {"restore_faces", false},
              {"face_restoration_model", nullptr},
              {"sd_model_name", m.name},
              {"sd_model_hash", nullptr},
              {"sd_vae_name", nullptr},
              {"sd_vae_hash", nullptr},
              {"seed_resize_from_w", -1},
              {"seed_resize_from_h", -1},
              {"denoising_strength", img2img ? number(s.strength) : json(nullptr)},
              {"extra_generation_params", json::object()},
              {"index_of_first_image", 0},
              {"infotexts", infotexts},
              {"styles", json::array()},
              {"job_timestamp", stamp},
              {"clip_skip", s.clip_skip},
              {"is_using_inpainting_conditioning", false},
              {"interrupted", out.interrupted},
              {"version", version_}};
  out.parameters = {{"prompt", s.prompt},
                    {"negative_prompt", s.negative_prompt},
                    {"seed", seed},
                    {"sampler_name", fi.sampler},
                    {"scheduler", fi.schedule_type},
                    {"batch_size", s.batch},
                    {"n_iter", r.n_iter},
                    {"steps", s.steps},
                    {"cfg_scale", number(s.cfg)},
                    {"width", fi.width},
                    {"height", fi.height},
                    {"eta", number(s.eta)},
                    {"denoising_strength", img2img ? number(s.strength) : json(nullptr)},
                    {"override_settings",
                     {{"sd_model_checkpoint", current_model()},
                      {"CLIP_stop_at_last_layers", s.clip_skip},
                      {"token_merging_ratio", s.tome.ratio},
                      {"sdpal_int8", current_int8()},
                      {"sdpal_taesd_decode", r.taesd_decode}}}};
  return out;
}

}  // namespace sdpal::server
