// img2img and TAESD decoding through the pipeline: the parts of diffusers' img2img that apply to
// SD 1/2 (VAE posterior sample of the init image, strength truncation, noise at the start
// timestep) against tiny-inpaint's golden cases, whose VAE is tiny-sd1's; and diffusers'
// semantics end to end (schedule truncation, determinism, closeness at low strength).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "models/taesd.h"
#include "pipeline/generate.h"
#include "pipeline/scheduler.h"
#include "support/fixtures.h"

using namespace sdpal;
using namespace sdpal::test;

namespace {

double psnr01(const Tensor& a, const Tensor& b) {
  double se = 0;
  for (int64_t i = 0; i < a.numel(); ++i) se += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return 10 * std::log10(1.0 / (se / a.numel() + 1e-20));
}

GenerateParams base() {
  GenerateParams p;
  p.prompts = {"a photo of a sneaker"};
  p.width = p.height = 32;
  p.steps = 10;
  p.cfg_scale = 4.5f;
  p.sampler = "ddim";
  p.seed = 7;
  return p;
}

// tiny-inpaint's strength-0.75 cases encode the init image (image_latents = posterior sample with
// vae_sample_noise[0]) and noise it at the first kept timestep (init_latents) exactly as
// StableDiffusionImg2ImgPipeline does; its VAE and scheduler configs are tiny-sd1's.
TEST(Img2Img, InitLatentsMatchDiffusers) {
  SDPAL_REQUIRE_FIXTURES();
  auto m = StableDiffusion::load(model_dir("tiny-sd1"));
  for (const char* id : {"pipeline_ddim_strength075", "pipeline_euler_strength075"}) {
    SCOPED_TRACE(id);
    Case c = load_case("tiny-inpaint", id);
    const Tensor u8 = c.in("image_u8");
    Tensor img(u8.shape());
    for (int64_t i = 0; i < img.numel(); ++i) img[i] = u8[i] / 255.f * 2 - 1;
    const Tensor vae_noise = c.in("vae_sample_noise");
    Shape one = vae_noise.shape();
    one.erase(one.begin());
    const Tensor x0 =
        init_image_latents(*m, m->vae->encode(img), vae_noise.slice0(0, 1).reshaped(one));
    expect_close(x0, c.aux("image_latents"), c.atol("aux.image_latents"), 1e-4, "image_latents");

    SchedulerOptions o;
    o.name = c.params()["scheduler_class"] == "DDIMScheduler" ? "ddim" : "euler";
    auto sched = make_scheduler(o, c.params()["scheduler_config"]);
    const int steps = c.params()["num_inference_steps"];
    sched->set_timesteps(steps);
    const int first = sched->img2img_start(steps, c.params()["strength"].get<float>());
    EXPECT_EQ(first, steps - static_cast<int>(steps * 0.75));
    const Tensor unet_t = c.aux("unet_t");
    EXPECT_FLOAT_EQ(static_cast<float>(sched->timesteps()[first]), unet_t[0]);
    // One init image, a batch of prompts: the image latents repeat along the batch.
    const Tensor noise = c.in("noise");
    Tensor rep(noise.shape());
    for (int64_t b = 0; b < noise.dim(0); ++b)
      std::copy_n(x0.data(), x0.numel(), rep.data() + b * x0.numel());
    expect_close(sched->add_noise(rep, noise, first), c.aux("init_latents"),
                 c.atol("aux.init_latents"), 1e-4, "init_latents");
  }
}

TEST(Img2Img, RunsTheTailOfTheScheduleAndStaysCloseAtLowStrength) {
  SDPAL_REQUIRE_FIXTURES();
  auto m = StableDiffusion::load(model_dir("demo-fashion"));
  GenerateResult src = generate(*m, base());
  // The generated image, as [-1, 1], is the init image.
  Tensor init = src.image01;
  for (int64_t i = 0; i < init.numel(); ++i) init[i] = init[i] * 2 - 1;

  double prev_psnr = 1e9;
  for (float strength : {0.3f, 0.6f, 1.0f}) {
    GenerateParams p = base();
    p.init_image = init;
    p.strength = strength;
    p.prompts = {"a dress"};
    GenerateResult r = generate(*m, p);
    EXPECT_EQ(r.unet_calls, static_cast<int>(10 * strength + 1e-6)) << strength;
    const double q = psnr01(r.image01, src.image01);
    EXPECT_LT(q, prev_psnr) << "more strength must change the image more, strength " << strength;
    prev_psnr = q;
    // Deterministic for a seed.
    GenerateResult again = generate(*m, p);
    EXPECT_EQ(max_abs_diff(again.image01, r.image01), 0.0);
  }
}

TEST(Img2Img, RejectsBadStrengthAndSize) {
  SDPAL_REQUIRE_FIXTURES();
  auto m = StableDiffusion::load(model_dir("demo-fashion"));
  GenerateParams p = base();
  p.init_image = Tensor::zeros({1, 3, 32, 32});
  p.strength = 0.f;
  EXPECT_THROW(generate(*m, p), Error);
  p.strength = 0.5f;
  p.init_image = Tensor::zeros({1, 3, 64, 32});
  EXPECT_THROW(generate(*m, p), Error);
}

TEST(Taesd, PipelineDecodesWithTaesdWhenAsked) {
  SDPAL_REQUIRE_FIXTURES();
  auto m = StableDiffusion::load(model_dir("tiny-sd1"));
  Taesd t = Taesd::load(fixtures_dir() + "/taesd/weights/taesd");
  GenerateParams p = base();
  p.width = 128;
  p.height = 64;
  p.steps = 2;
  p.taesd_decoder = &t;
  GenerateResult r = generate(*m, p);
  Tensor want = t.decode(r.latents);
  for (int64_t i = 0; i < want.numel(); ++i) want[i] = std::clamp(want[i], 0.f, 1.f);
  EXPECT_EQ(max_abs_diff(r.image01, want), 0.0);
  EXPECT_EQ(r.image01.dim(2), 64);
  EXPECT_EQ(r.image01.dim(3), 128);
}

}  // namespace
