#include "pipeline/generate.h"

// Guidance u + g*(c - u) is rounded op by op as torch does it: no fused multiply-adds here (the
// build's -ffp-contract=off already says so; this holds when compiled otherwise).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/limits.h"
#include "models/taesd.h"
#include "pipeline/lora_selection.h"
#include "pipeline/prompt_encoding.h"
#include "pipeline/rng.h"
#include "pipeline/scheduler.h"

namespace sdpal {

namespace {

void validate(const StableDiffusion& m, const GenerateParams& p) {
  SDPAL_CHECK(!p.prompts.empty(), "no prompt given");
  SDPAL_CHECK(p.prompts.size() <= size_t(limits::kMaxBatch),
              "batch of " + std::to_string(p.prompts.size()) + " images exceeds the bound of " +
                  std::to_string(limits::kMaxBatch));
  const int f = vae_scale_factor(m);
  const int mult = std::max(8, f);
  SDPAL_CHECK(p.width > 0 && p.height > 0 && p.width % mult == 0 && p.height % mult == 0,
              "width and height must be positive multiples of " + std::to_string(mult) + ", got " +
                  std::to_string(p.width) + "x" + std::to_string(p.height));
  SDPAL_CHECK(p.width <= limits::kMaxImageSizePixels && p.height <= limits::kMaxImageSizePixels &&
                  int64_t(p.width) * p.height * int64_t(p.prompts.size()) <= (int64_t(1) << 28),
              "image size " + std::to_string(p.width) + "x" + std::to_string(p.height) + " x " +
                  std::to_string(p.prompts.size()) + " images is too large");
  SDPAL_CHECK(p.steps > 0 && p.steps <= limits::kMaxSteps, "steps must be between 1 and " +
                                                               std::to_string(limits::kMaxSteps) +
                                                               ", got " + std::to_string(p.steps));
  SDPAL_CHECK(std::isfinite(p.cfg_scale), "cfg scale must be a finite number");
  SDPAL_CHECK(p.clip_skip >= 1 && p.clip_skip <= m.text_encoder->config().layers,
              "clip skip must be between 1 and " + std::to_string(m.text_encoder->config().layers));
  SDPAL_CHECK(p.negative_prompts.size() <= 1 || p.negative_prompts.size() == p.prompts.size(),
              "give one negative prompt, or one per prompt");
  if (p.init_image)
    SDPAL_CHECK(p.strength > 0.f && p.strength <= 1.f, "strength must be in (0, 1]");
  if (p.mask) {
    SDPAL_CHECK(p.init_image.has_value(), "a mask needs an init image (masked img2img)");
    const Tensor& k = *p.mask;
    SDPAL_CHECK(k.ndim() == 4 && k.dim(0) == 1 && k.dim(1) == 1 && k.dim(2) == p.height &&
                    k.dim(3) == p.width,
                "mask must be [1, 1, " + std::to_string(p.height) + ", " + std::to_string(p.width) +
                    "], got " + shape_str(k.shape()));
  }
  for (const auto& [what, v] : {std::pair{"original width", p.original_width},
                                {"original height", p.original_height},
                                {"target width", p.target_width},
                                {"target height", p.target_height},
                                {"crop top", p.crop_top},
                                {"crop left", p.crop_left}})
    SDPAL_CHECK(v >= 0 && v <= 65536,
                std::string("SDXL ") + what + " must be from 0 to 65536, got " + std::to_string(v));
  if (m.unet->needs_text_time())
    SDPAL_CHECK(!p.init_image, "img2img with SDXL models is not supported yet");
  check_tome_options(p.tome);
}

// Broadcasts [4,h,w] or [1,4,h,w] noise to [B,4,h,w]; checks the shape.
Tensor batch_noise(const Tensor& n, const Shape& want, const std::string& what) {
  Shape s = n.shape();
  if (s.size() == 3) s.insert(s.begin(), 1);
  Shape per = want;
  per[0] = 1;
  if (s == want) return Tensor(n).reshaped(want);
  if (s == per) {
    Tensor r(want);
    const int64_t k = n.numel();
    for (int64_t b = 0; b < want[0]; ++b) std::copy_n(n.data(), k, r.data() + b * k);
    return r;
  }
  fail(what + " has shape " + shape_str(n.shape()) + " but this run needs " + shape_str(want) +
       (per == want ? "" : " (or " + shape_str(per) + ")"));
}

}  // namespace

Tensor init_image_latents(const StableDiffusion& m, const VaeEncoding& e, const Tensor& eps) {
  SDPAL_CHECK(eps.shape() == e.mean.shape(), "posterior noise has shape " + shape_str(eps.shape()) +
                                                 " but the latents are " +
                                                 shape_str(e.mean.shape()));
  const float sf = static_cast<float>(m.vae->config().scaling_factor);
  Tensor x0(e.mean.shape());
  for (int64_t i = 0; i < x0.numel(); ++i)
    x0[i] = (e.mean[i] + std::exp(0.5f * e.logvar[i]) * eps[i]) * sf;
  return x0;
}

std::vector<float> sdxl_time_ids(const GenerateParams& p) {
  auto or_image = [](int v, int image) { return static_cast<float>(v > 0 ? v : image); };
  return {or_image(p.original_height, p.height), or_image(p.original_width, p.width),
          static_cast<float>(p.crop_top),        static_cast<float>(p.crop_left),
          or_image(p.target_height, p.height),   or_image(p.target_width, p.width)};
}

Tensor encode_prompts(const StableDiffusion& m, const std::vector<std::string>& texts,
                      int clip_skip, std::vector<std::string>* warnings) {
  if (m.text_encoder_2) {
    EncodedPrompts e = encode_prompt_batch(m, texts, {clip_skip, /*syntax=*/false});
    if (warnings) warnings->insert(warnings->end(), e.warnings.begin(), e.warnings.end());
    return std::move(e.hidden);
  }
  std::vector<std::vector<int>> ids;
  for (const auto& t : texts) {
    int dropped = 0;
    ids.push_back(m.tokenizer->encode_padded(t, &dropped));
    if (dropped > 0 && warnings)
      warnings->push_back("prompt truncated: " + std::to_string(dropped) +
                          " token(s) beyond the text encoder's 77-token limit were dropped");
  }
  return m.text_encoder->forward(ids, clip_skip - 1).hidden;
}

Tensor decode_latents(const StableDiffusion& m, const Tensor& latents) {
  Tensor z = latents;
  const float sf = static_cast<float>(m.vae->config().scaling_factor);
  for (int64_t i = 0; i < z.numel(); ++i) z[i] /= sf;
  Tensor img = m.vae->decode(z);
  for (int64_t i = 0; i < img.numel(); ++i) img[i] = std::clamp(img[i] / 2.f + 0.5f, 0.f, 1.f);
  return img;
}

Tensor latent_mask(const Tensor& mask, int f) {
  SDPAL_CHECK(mask.ndim() == 4 && mask.dim(0) == 1 && mask.dim(1) == 1 && f > 0 &&
                  mask.dim(2) % f == 0 && mask.dim(3) % f == 0,
              "mask must be [1, 1, H, W] with H and W multiples of " + std::to_string(f) +
                  ", got " + shape_str(mask.shape()));
  const int64_t H = mask.dim(2), W = mask.dim(3), h = H / f, w = W / f;
  Tensor r({1, 1, h, w});
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) r[y * w + x] = mask[(y * f) * W + x * f] >= 0.5f ? 1.f : 0.f;
  return r;
}

int vae_scale_factor(const StableDiffusion& m) {
  return 1 << (m.vae->config().block_out_channels.size() - 1);
}

int default_image_size(const StableDiffusion& m) {
  return static_cast<int>(m.unet->config().sample_size) * vae_scale_factor(m);
}

namespace {

// Scheduler setup, initial latents (txt2img noise or img2img encoding) and the denoising loop of
// generate(), with `unet` in place of the model's own. `context` as encode_prompts() gives it:
// [uncond..., cond...] when guidance is on.
Tensor run_denoising(const StableDiffusion& m, const UNet& unet, const Tensor& context,
                     const Tensor* pooled, const GenerateParams& p, int* unet_calls) {
  const int64_t B = p.prompts.size();
  const int f = vae_scale_factor(m);
  const int64_t h = p.height / f, w = p.width / f, L = m.unet->config().in_channels;
  const Shape lat_shape{B, L, h, w};
  const bool cfg = p.cfg_scale > 1.f;
  const ToMe tome(p.tome);  // this generation's setting and random stream
  SchedulerOptions so;
  so.name = p.sampler;
  so.karras = p.karras;
  so.eta = p.eta;
  if (!p.timestep_spacing.empty()) so.config_overrides["timestep_spacing"] = p.timestep_spacing;
  auto sched = make_scheduler(so, m.scheduler_config);
  sched->set_timesteps(p.steps);
  TorchCpuRng rng(p.seed);

  // SDXL: pooled text embeddings and the same time ids for every UNet row.
  std::optional<TextTimeCond> added;
  if (unet.needs_text_time()) {
    SDPAL_CHECK(pooled && pooled->ndim() == 2 && pooled->dim(0) == context.dim(0),
                "SDXL needs pooled text embeddings, one row per context row");
    const std::vector<float> ids = sdxl_time_ids(p);
    const int64_t rows = context.dim(0), n = static_cast<int64_t>(ids.size());
    added.emplace();
    added->text_embeds = *pooled;
    added->time_ids = Tensor({rows, n});
    for (int64_t r = 0; r < rows; ++r) std::copy_n(ids.data(), n, added->time_ids.data() + r * n);
  }

  Tensor latents;
  int first = 0;
  // Masked img2img: the clean init latents, the start noise and the latent mask (1 = repaint).
  std::optional<Tensor> keep_x0, keep_noise, lmask;
  if (p.init_image) {
    // img2img: encode, sample the posterior (first RNG draw), then noise to the start timestep.
    const Tensor& img = *p.init_image;
    SDPAL_CHECK(
        img.ndim() == 4 && img.dim(1) == 3 && img.dim(2) == p.height && img.dim(3) == p.width,
        "init image must be " + std::to_string(p.width) + "x" + std::to_string(p.height) +
            ", got " + shape_str(img.shape()));
    const VaeEncoding e = m.vae->encode(img);
    Tensor x0 = init_image_latents(m, e, rng.randn(e.mean.shape()));
    x0 = batch_noise(x0, lat_shape, "encoded init image");
    first = sched->img2img_start(p.steps, p.strength);
    Tensor noise =
        p.init_noise ? batch_noise(*p.init_noise, lat_shape, "--init-noise") : rng.randn(lat_shape);
    latents = sched->add_noise(x0, noise, first);
    if (p.mask) {
      lmask = latent_mask(*p.mask, f);
      keep_x0 = std::move(x0);
      keep_noise = std::move(noise);
    }
  } else {
    latents =
        p.init_noise ? batch_noise(*p.init_noise, lat_shape, "--init-noise") : rng.randn(lat_shape);
    const float s = sched->init_noise_sigma();
    for (int64_t i = 0; i < latents.numel(); ++i) latents[i] *= s;
  }

  const auto& ts = sched->timesteps();
  const int total = static_cast<int>(ts.size()) - first;
  if (p.step_noise) {
    const Tensor& sn = *p.step_noise;
    SDPAL_CHECK(sn.ndim() >= 4 && sn.dim(0) >= total,
                "--step-noise has shape " + shape_str(sn.shape()) + " but needs " +
                    std::to_string(total) + " steps of " + shape_str(lat_shape));
  }
  for (int i = first; i < static_cast<int>(ts.size()); ++i) {
    Tensor x = sched->scale_model_input(latents, i);
    Tensor xin = cfg ? concat0({&x, &x}) : x;
    Tensor out = unet.forward(xin, {ts[i]}, context, &tome, added ? &*added : nullptr);
    if (unet_calls) ++*unet_calls;
    Tensor guided = cfg ? out.slice0(B, 2 * B) : std::move(out);
    if (cfg) {
      const int64_t n = guided.numel();
      const float* u = out.data();
      for (int64_t j = 0; j < n; ++j) guided[j] = u[j] + p.cfg_scale * (guided[j] - u[j]);
    }
    std::optional<Tensor> noise;
    if (sched->needs_noise()) {
      if (p.step_noise) {
        const int k = i - first;
        Tensor one = p.step_noise->slice0(k, k + 1);
        Shape s = one.shape();
        s.erase(s.begin());
        noise = batch_noise(std::move(one).reshaped(s), lat_shape, "--step-noise entry");
      } else {
        noise = rng.randn(lat_shape);
      }
    }
    latents = sched->step(guided, i, latents, noise ? &*noise : nullptr);
    if (lmask) {
      // diffusers: latents = (1 - mask) * init_latents_proper + mask * latents.
      const bool last = i + 1 == static_cast<int>(ts.size());
      const Tensor proper = last ? *keep_x0 : sched->add_noise(*keep_x0, *keep_noise, i + 1);
      const int64_t cells = h * w, per = L * cells;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < L; ++c)
          for (int64_t j = 0; j < cells; ++j) {
            const float m1 = (*lmask)[j];
            const int64_t at = b * per + c * cells + j;
            latents[at] = (1.f - m1) * proper[at] + m1 * latents[at];
          }
    }
    if (p.on_step) p.on_step(i - first + 1, total, latents);
  }
  return latents;
}

// A model file truncated or rewritten during the run was read as zeros (core/file_mapping.h).
void check_model_files(const StableDiffusion& m) {
  for (const WeightStore* ws : {m.te_ws.get(), m.unet_ws.get(), m.vae_ws.get()})
    if (ws) ws->check_files();
}

}  // namespace

Tensor denoise_latents(const StableDiffusion& m, const UNet& unet, const Tensor& context,
                       const GenerateParams& p, int* unet_calls, const Tensor* pooled) {
  validate(m, p);
  const int64_t rows = static_cast<int64_t>(p.prompts.size()) * (p.cfg_scale > 1.f ? 2 : 1);
  SDPAL_CHECK(context.ndim() == 3 && context.dim(0) == rows,
              "denoise_latents: context has shape " + shape_str(context.shape()) + ", expected " +
                  std::to_string(rows) + " rows");
  Tensor latents = run_denoising(m, unet, context, pooled, p, unet_calls);
  check_model_files(m);
  return latents;
}

GenerateResult generate(const StableDiffusion& m, const GenerateParams& p) {
  validate(m, p);
  GenerateResult res;
  const int64_t B = p.prompts.size();
  const bool cfg = p.cfg_scale > 1.f;

  std::vector<std::string> neg(B, p.negative_prompts.empty() ? "" : p.negative_prompts[0]);
  if (p.negative_prompts.size() == static_cast<size_t>(B)) neg = p.negative_prompts;

  // LoRAs: given ones and those the prompts' tags name, on copies of the UNet and text encoder.
  res.loras = p.loras;
  if (p.prompt_syntax) {
    std::vector<ExtraNetworkTag> tags;
    for (const auto& t : p.prompts) strip_extra_networks(t, &tags);
    for (const auto& t : neg) strip_extra_networks(t, &tags);
    for (const auto& t : tags)
      if (t.type != "lora")
        res.warnings.push_back("prompt tag <" + t.type +
                               ":...> was removed from the text: sdpal "
                               "does not support this kind of extra network");
    for (auto& u : loras_from_tags(tags, p.lora_dir)) res.loras.push_back(std::move(u));
  }
  const AdaptedModel adapted = adapt_model(m, res.loras, p.lora_merge);
  res.warnings.insert(res.warnings.end(), adapted.warnings.begin(), adapted.warnings.end());
  const UNet& unet = adapted.unet ? *adapted.unet : *m.unet;

  // Text: [uncond..., cond...] as diffusers concatenates them; with prompt syntax on, the shorter
  // side is padded with empty-prompt chunks to the same number of context tokens.
  PromptEncodingOptions eo{p.clip_skip, p.prompt_syntax};
  if (adapted.text_encoder) eo.text_encoder = &*adapted.text_encoder;
  if (adapted.text_encoder_2) eo.text_encoder_2 = &*adapted.text_encoder_2;
  EmbeddingLibrary embeddings;
  if (p.prompt_syntax && !p.embeddings_dir.empty()) {
    embeddings = EmbeddingLibrary::load_dir(p.embeddings_dir, *m.tokenizer);
    eo.embeddings = &embeddings;
  }
  EncodedPrompts cond = encode_prompt_batch(m, p.prompts, eo);
  Tensor context = cond.hidden, pooled = cond.pooled;
  res.warnings.insert(res.warnings.end(), cond.warnings.begin(), cond.warnings.end());
  if (cfg) {
    EncodedPrompts uncond;
    if (m.force_zeros_for_empty_prompt && p.negative_prompts.empty()) {
      // diffusers' SDXL with negative_prompt None: zeros_like(prompt_embeds / pooled).
      uncond.hidden = Tensor::zeros(cond.hidden.shape());
      uncond.pooled = Tensor::zeros(cond.pooled.shape());
    } else {
      uncond = encode_prompt_batch(m, neg, eo);
    }
    res.warnings.insert(res.warnings.end(), uncond.warnings.begin(), uncond.warnings.end());
    const int64_t T = std::max(cond.hidden.dim(1), uncond.hidden.dim(1));
    const Tensor c = pad_with_empty_chunks(m, cond.hidden, T, eo);
    const Tensor u = pad_with_empty_chunks(m, uncond.hidden, T, eo);
    context = concat0({&u, &c});
    if (m.text_encoder_2) pooled = concat0({&uncond.pooled, &cond.pooled});
  }

  const Tensor latents =
      run_denoising(m, unet, context, m.text_encoder_2 ? &pooled : nullptr, p, &res.unet_calls);
  res.latents = latents;
  if (p.taesd_decoder) {
    res.image01 = p.taesd_decoder->decode(latents);
    for (int64_t i = 0; i < res.image01.numel(); ++i)
      res.image01[i] = std::clamp(res.image01[i], 0.f, 1.f);
  } else {
    res.image01 = decode_latents(m, latents);
  }
  check_model_files(m);
  return res;
}

}  // namespace sdpal
