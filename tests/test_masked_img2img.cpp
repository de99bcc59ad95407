// Masked img2img with a plain (4-channel) UNet, as diffusers' StableDiffusionInpaintPipeline runs
// it for such a UNet: the mask binarised and sampled to the latent grid, and after every step the
// kept cells replaced by the encoded init image noised to the next step's level (the clean image
// after the last step).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "pipeline/generate.h"
#include "pipeline/rng.h"
#include "support/fixtures.h"

using namespace sdpal;
using namespace sdpal::test;

namespace {

GenerateParams masked_base(const Tensor& init) {
  GenerateParams p;
  p.prompts = {"a dress"};
  p.width = p.height = 32;
  p.steps = 8;
  p.cfg_scale = 4.5f;
  p.sampler = "euler_a";
  p.seed = 11;
  p.init_image = init;
  p.strength = 0.8f;
  return p;
}

Tensor sneaker_init(const StableDiffusion& m) {
  GenerateParams g;
  g.prompts = {"a photo of a sneaker"};
  g.width = g.height = 32;
  g.steps = 6;
  g.seed = 3;
  Tensor img = generate(m, g).image01;
  for (int64_t i = 0; i < img.numel(); ++i) img[i] = img[i] * 2 - 1;
  return img;
}

TEST(MaskedImg2Img, LatentMaskIsTheBinarisedTopLeftPixelOfEachCell) {
  Tensor mask = Tensor::zeros({1, 1, 16, 16});
  mask[0] = 0.5f;            // cell (0,0): top-left >= 0.5 -> repaint
  mask[1] = 1.f;             // not a top-left pixel: ignored
  mask[8] = 0.49f;           // cell (0,1): < 0.5 -> keep
  mask[8 * 16 + 8] = 0.99f;  // cell (1,1)
  const Tensor l = latent_mask(mask, 8);
  ASSERT_EQ(l.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(l[0], 1.f);
  EXPECT_EQ(l[1], 0.f);
  EXPECT_EQ(l[2], 0.f);
  EXPECT_EQ(l[3], 1.f);
}

TEST(MaskedImg2Img, WhiteMaskIsPlainImg2ImgAndBlackMaskKeepsTheImageLatents) {
  SDPAL_REQUIRE_FIXTURES();
  auto m = StableDiffusion::load(model_dir("demo-fashion"));
  const Tensor init = sneaker_init(*m);
  const GenerateResult plain = generate(*m, masked_base(init));

  GenerateParams white = masked_base(init);
  white.mask = Tensor::full({1, 1, 32, 32}, 1.f);
  EXPECT_EQ(max_abs_diff(generate(*m, white).latents, plain.latents), 0.0);

  // Keep everything: after the last step the latents are the encoded init image itself (the
  // posterior sample drawn first from the seed, as img2img draws it).
  GenerateParams black = masked_base(init);
  black.mask = Tensor::zeros({1, 1, 32, 32});
  const GenerateResult kept = generate(*m, black);
  TorchCpuRng rng(black.seed);
  const VaeEncoding e = m->vae->encode(init);
  const Tensor x0 = init_image_latents(*m, e, rng.randn(e.mean.shape()));
  EXPECT_EQ(max_abs_diff(kept.latents, x0), 0.0);

  // Repaint the left half: the right half's latents are the init image's, the left half's not.
  GenerateParams half = masked_base(init);
  half.mask = Tensor::zeros({1, 1, 32, 32});
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 16; ++x) (*half.mask)[y * 32 + x] = 1.f;
  const GenerateResult h = generate(*m, half);
  // The demo model's latents are [1, 4, 8, 8] (4 pixels a cell): columns 0-3 repaint, 4-7 keep.
  ASSERT_EQ(h.latents.shape(), (Shape{1, 4, 8, 8}));
  double left = 0, right = 0;
  for (int c = 0; c < 4; ++c)
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x) {
        const int64_t i = (c * 8 + y) * 8 + x;
        double& side = x < 4 ? left : right;
        side = std::max(side, double(std::abs(h.latents[i] - x0[i])));
      }
  EXPECT_EQ(right, 0.0) << "kept cells must hold the init image's latents";
  EXPECT_GT(left, 1e-3) << "repainted cells must change";
}

TEST(MaskedImg2Img, RejectsAMaskWithoutInitImageOrOfTheWrongSize) {
  SDPAL_REQUIRE_FIXTURES();
  auto m = StableDiffusion::load(model_dir("demo-fashion"));
  GenerateParams p = masked_base(Tensor::zeros({1, 3, 32, 32}));
  p.mask = Tensor::zeros({1, 1, 16, 32});
  EXPECT_THROW(generate(*m, p), Error);
  p.mask = Tensor::zeros({1, 1, 32, 32});
  p.init_image.reset();
  EXPECT_THROW(generate(*m, p), Error);
}

}  // namespace
