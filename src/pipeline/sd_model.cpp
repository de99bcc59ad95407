#include "pipeline/sd_model.h"

#include <filesystem>

#include "core/error.h"
#include "formats/checkpoint_keymap.h"
#include "formats/safetensors.h"
#include "models/config.h"
#include "models/int8_calibration.h"
#include "models/single_file_loader.h"
#include "pipeline/model_files.h"
#include "pipeline/scheduler.h"

namespace fs = std::filesystem;

namespace sdpal {

namespace {

void check_all_used(const WeightStore& ws) {
  auto unused = ws.unused();
  if (unused.empty()) return;
  std::string names;
  for (size_t i = 0; i < unused.size() && i < 3; ++i) names += (i ? ", " : "") + unused[i];
  fail(ws.label() + ": " + std::to_string(unused.size()) + " unknown tensor(s) in " + ws.source() +
       " that the config's architecture does not use (" + names +
       (unused.size() > 3 ? ", ..." : "") + "); the weights and config.json do not match");
}

void apply_prediction_type(StableDiffusion& m, const std::string& pt) {
  if (pt.empty()) return;
  SDPAL_CHECK(pt == "epsilon" || pt == "v_prediction" || pt == "v" || pt == "sample",
              "unknown prediction type '" + pt + "' (epsilon, v_prediction)");
  m.scheduler_config["prediction_type"] = pt == "v" ? "v_prediction" : pt;
}

// SD 1.5's scheduler config (PNDM), used for single files, which carry none.
nlohmann::json default_scheduler_config() {
  return {{"_class_name", "PNDMScheduler"},
          {"beta_start", 0.00085},
          {"beta_end", 0.012},
          {"beta_schedule", "scaled_linear"},
          {"num_train_timesteps", 1000},
          {"prediction_type", "epsilon"},
          {"set_alpha_to_one", false},
          {"skip_prk_steps", true},
          {"steps_offset", 1},
          {"clip_sample", false},
          {"timestep_spacing", "leading"}};
}

// SD 2.x single files do not say whether they predict v (768-v models) or epsilon (512-base).
// A1111's test (sd_models_config.is_using_v_parameterization_for_sd2): the UNet's output at
// t = 999 for a constant 0.5 input and context, minus the input, averages below -1 for v models.
bool uses_v_prediction(const UNet& unet) {
  const Tensor x = Tensor::full({1, unet.config().in_channels, 8, 8}, 0.5f);
  const Tensor ctx = Tensor::full({1, 2, unet.config().cross_attention_dim[0]}, 0.5f);
  const Tensor out = unet.forward(x, {999.0}, ctx);
  double mean = 0;
  for (int64_t i = 0; i < out.numel(); ++i) mean += double(out[i]) - x[i];
  return mean / out.numel() < -1;
}

// SDXL's second tokenizer and text encoder (CLIPTextModelWithProjection) from a diffusers folder,
// and the pipeline's force_zeros_for_empty_prompt.
void load_second_text_encoder(StableDiffusion& m, const fs::path& p, const LoadOptions& opt) {
  m.kind = "sdxl";
  m.te2_ws = std::make_unique<WeightStore>("text_encoder_2");
  for (const auto& f :
       component_files(p / "text_encoder_2", "model", opt.variant, "second text encoder"))
    m.te2_ws->add_file(f);
  const std::string where = (p / "text_encoder_2" / "config.json").string();
  const ClipTextConfig cfg = ClipTextConfig::from_json(read_json_file(where), where);
  SDPAL_CHECK(cfg.projection_dim > 0,
              where +
                  ": SDXL's text_encoder_2 must be a CLIPTextModelWithProjection "
                  "(config \"architectures\")");
  m.text_encoder_2 = std::make_unique<ClipTextModel>(*m.te2_ws, cfg);
  m.tokenizer_2 =
      std::make_unique<ClipTokenizer>(ClipTokenizer::load((p / "tokenizer_2").string()));
  // diffusers' StableDiffusionXLPipeline registers it with default true.
  const fs::path index = p / "model_index.json";
  m.force_zeros_for_empty_prompt =
      fs::exists(index) ? cfg_bool(read_json_file(index.string()), "force_zeros_for_empty_prompt",
                                   true, index.string())
                        : true;
}

// The UNet's add_embedding must take text_encoder_2's projection plus 6 embedded time ids.
void check_sdxl_conditioning(const StableDiffusion& m) {
  const UNetConfig& u = m.unet->config();
  SDPAL_CHECK(u.addition_embed_type == "text_time",
              m.path +
                  ": a model with text_encoder_2 needs a UNet with addition_embed_type "
                  "\"text_time\" (SDXL)");
  const int64_t want = m.text_encoder_2->config().projection_dim + 6 * u.addition_time_embed_dim;
  SDPAL_CHECK(u.projection_class_embeddings_input_dim == want,
              m.path + ": the UNet's projection_class_embeddings_input_dim is " +
                  std::to_string(u.projection_class_embeddings_input_dim) +
                  " but text_encoder_2's projection_dim + 6 x addition_time_embed_dim is " +
                  std::to_string(want) + " (an SDXL refiner is not supported yet)");
}

}  // namespace

std::string shipped_path(const std::string& rel) {
#ifdef SDPAL_SOURCE_DIR
  const fs::path src = fs::path(SDPAL_SOURCE_DIR) / "models" / rel;
  if (fs::exists(src)) return src.string();
#endif
  for (const char* d : {"models", "/usr/local/share/sdpal/models"})
    if (fs::exists(fs::path(d) / rel)) return fs::absolute(fs::path(d) / rel).string();
  return "";
}

std::unique_ptr<StableDiffusion> StableDiffusion::load(const std::string& path,
                                                       const LoadOptions& opt) {
  auto m = std::make_unique<StableDiffusion>();
  m->path = path;
  m->te_ws = std::make_unique<WeightStore>("text_encoder");
  m->unet_ws = std::make_unique<WeightStore>("unet");
  m->vae_ws = std::make_unique<WeightStore>("vae");
  const fs::path p(path);
  if (!fs::exists(p)) fail("model not found: " + path);
  nlohmann::json te_cfg, unet_cfg, vae_cfg;
  // Where config errors point: the config.json files of a folder, the components of a single file.
  std::string te_where = path + " text_encoder config", unet_where = path + " unet config",
              vae_where = path + " vae config";
  std::string tok_dir, tok_config_dir;
  if (fs::is_directory(p)) {
    m->name = p.filename().empty() ? p.parent_path().filename().string() : p.filename().string();
    if (!fs::exists(p / "model_index.json") && !fs::exists(p / "unet"))
      fail(path + " is not a diffusers model folder (no model_index.json, no unet/)");
    for (const auto& f :
         component_files(p / "unet", "diffusion_pytorch_model", opt.variant, "UNet"))
      m->unet_ws->add_file(f);
    for (const auto& f : component_files(p / "vae", "diffusion_pytorch_model", opt.variant, "VAE"))
      m->vae_ws->add_file(f);
    for (const auto& f : component_files(p / "text_encoder", "model", opt.variant, "text encoder"))
      m->te_ws->add_file(f);
    unet_cfg = read_json_file((p / "unet" / "config.json").string());
    vae_cfg = read_json_file((p / "vae" / "config.json").string());
    te_cfg = read_json_file((p / "text_encoder" / "config.json").string());
    unet_where = (p / "unet" / "config.json").string();
    vae_where = (p / "vae" / "config.json").string();
    te_where = (p / "text_encoder" / "config.json").string();
    // Checked to be an object here (naming the file), not by a type_error deep in generate().
    m->scheduler_config =
        load_scheduler_config((p / "scheduler" / "scheduler_config.json").string());
    tok_dir = opt.tokenizer_dir.empty() ? (p / "tokenizer").string() : opt.tokenizer_dir;
    m->kind = cfg_str(te_cfg, "hidden_act", "quick_gelu", "text_encoder") == "gelu" ? "sd2" : "sd1";
    if (fs::exists(p / "text_encoder_2")) load_second_text_encoder(*m, p, opt);
  } else {
    refuse_pickle_checkpoint(path);
    m->name = p.stem().string();
    load_single_file(path, *m->unet_ws, *m->vae_ws, *m->te_ws, &unet_cfg, &vae_cfg, &te_cfg,
                     &m->kind);
    m->scheduler_config = default_scheduler_config();
    if (opt.tokenizer_dir.empty()) {
      // CLIP's vocabulary (the demo model's) with the architecture's special tokens.
      tok_dir = default_model_path() + "/tokenizer";
      tok_config_dir = m->kind == "sd2" ? shipped_path("tokenizers/sd2") : tok_dir;
      SDPAL_CHECK(!default_model_path().empty() && !tok_config_dir.empty(),
                  path +
                      ": a single-file checkpoint needs a tokenizer, and the one shipped with "
                      "sdpal (models/) was not found; pass --tokenizer DIR");
    } else {
      tok_dir = tok_config_dir = opt.tokenizer_dir;
    }
  }
  if (tok_config_dir.empty()) tok_config_dir = tok_dir;
  m->tokenizer = std::make_unique<ClipTokenizer>(ClipTokenizer::load(tok_dir, tok_config_dir));
  m->text_encoder =
      std::make_unique<ClipTextModel>(*m->te_ws, ClipTextConfig::from_json(te_cfg, te_where));
  m->unet = std::make_unique<UNet>(*m->unet_ws, UNetConfig::from_json(unet_cfg, unet_where));
  m->vae = std::make_unique<Vae>(*m->vae_ws, VaeConfig::from_json(vae_cfg, vae_where),
                                 opt.load_vae_encoder);
  const int64_t context_width =
      m->text_encoder->config().hidden +
      (m->text_encoder_2 ? m->text_encoder_2->config().hidden : int64_t{0});
  SDPAL_CHECK(context_width == m->unet->config().cross_attention_dim[0],
              path + ": the text encoder" + (m->text_encoder_2 ? "s are " : " is ") +
                  std::to_string(context_width) +
                  " wide but the UNet expects cross-attention dim " +
                  std::to_string(m->unet->config().cross_attention_dim[0]));
  if (m->text_encoder_2) check_sdxl_conditioning(*m);
  SDPAL_CHECK(m->text_encoder_2 || !m->unet->needs_text_time(),
              path +
                  ": the UNet has SDXL's added conditions (addition_embed_type \"text_time\") "
                  "but the model has no text_encoder_2");
  SDPAL_CHECK(m->unet->config().in_channels == m->vae->config().latent_channels,
              path + ": the UNet takes " + std::to_string(m->unet->config().in_channels) +
                  " input channels but the VAE has " +
                  std::to_string(m->vae->config().latent_channels) +
                  " latent channels (inpainting/depth models are not supported yet)");
  check_all_used(*m->te_ws);
  if (m->te2_ws) check_all_used(*m->te2_ws);
  check_all_used(*m->unet_ws);
  if (opt.load_vae_encoder) check_all_used(*m->vae_ws);
  if (!fs::is_directory(p) && opt.prediction_type.empty()) {
    // A single file's prediction type: its ModelSpec metadata if it has one; else, for SD 2.x
    // (512-base epsilon or 768-v), A1111's test of the weights; SD 1.x is epsilon.
    const SafetensorsFile f(path);
    const auto meta = f.metadata().find("modelspec.prediction_type");
    if (meta != f.metadata().end()) {
      SDPAL_CHECK(meta->second == "epsilon" || meta->second == "v",
                  path + ": __metadata__ modelspec.prediction_type is '" + meta->second +
                      "' (expected epsilon or v); pass --prediction-type to choose");
      apply_prediction_type(*m, meta->second);
    } else if (m->kind == "sd2")
      m->scheduler_config["prediction_type"] =
          uses_v_prediction(*m->unet) ? "v_prediction" : "epsilon";
  }
  apply_prediction_type(*m, opt.prediction_type);
  if (opt.int8) {
    const std::string cal =
        opt.int8_calibration.empty() ? default_int8_calibration_path(path) : opt.int8_calibration;
    SDPAL_CHECK(fs::exists(cal),
                "int8: no calibration file " + cal + "; run `sdpal calibrate --model " + path +
                    "` first" +
                    (opt.int8_calibration.empty() ? "" : " (with --output " + cal + ")"));
    m->int8_layers = apply_int8_calibration(*m->unet, read_int8_calibration(cal), cal);
  }
  return m;
}

std::string default_model_path() {
#ifdef SDPAL_SOURCE_DIR
  const fs::path src = fs::path(SDPAL_SOURCE_DIR) / "models" / "demo-fashion";
  if (fs::exists(src / "model_index.json")) return src.string();
#endif
  for (const char* d : {"models/demo-fashion", "/usr/local/share/sdpal/models/demo-fashion"})
    if (fs::exists(fs::path(d) / "model_index.json")) return fs::absolute(d).string();
  return "";
}

}  // namespace sdpal
