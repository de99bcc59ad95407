// Generation is re-entrant: a model holds no state that one generation leaves for the next, and
// two generations (on one model or on two) may run side by side in one process, each giving
// exactly what it gives alone. What the server relies on.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "models/layers.h"
#include "models/unet.h"
#include "pipeline/generate.h"
#include "pipeline/sd_model.h"
#include "support/fixtures.h"

using namespace sdpal;
using namespace sdpal::test;

namespace {

// Two settings that exercise every piece of per-generation state: the RNG, the scheduler, token
// merging's random stream, guidance and batch.
GenerateParams merged_ancestral() {
  GenerateParams p;
  p.prompts = {"a red cube", "a blue sphere"};
  p.width = p.height = 128;
  p.steps = 3;
  p.seed = 7;
  p.sampler = "euler_a";
  p.tome = {.ratio = 0.5, .max_downsample = 1, .random = true, .seed = 11};
  return p;
}

GenerateParams plain_ddim() {
  GenerateParams p;
  p.prompts = {"a green cone"};
  p.negative_prompts = {"blurry"};
  p.width = 96;
  p.height = 128;
  p.steps = 4;
  p.seed = 3;
  p.sampler = "ddim";
  p.cfg_scale = 5.f;
  return p;
}

// Runs each job on its own thread, all at once; rethrows the first failure.
void side_by_side(const std::vector<std::function<void()>>& jobs) {
  std::vector<std::exception_ptr> errors(jobs.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < jobs.size(); ++i)
    threads.emplace_back([&, i] {
      try {
        jobs[i]();
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

class Reentrancy : public ::testing::Test {
 protected:
  void SetUp() override {
    SDPAL_REQUIRE_FIXTURES();
    model_ = StableDiffusion::load(model_dir("tiny-sd1"));
  }
  std::unique_ptr<StableDiffusion> model_;
};

TEST_F(Reentrancy, OneAfterAnotherGivesTheSameImages) {
  const GenerateParams a = merged_ancestral(), b = plain_ddim();
  const Tensor a1 = generate(*model_, a).image01;
  const Tensor b1 = generate(*model_, b).image01;
  const Tensor a2 = generate(*model_, a).image01;  // after another generation with other settings
  const Tensor b2 = generate(*model_, b).image01;
  EXPECT_EQ(max_abs_diff(a1, a2), 0.0);
  EXPECT_EQ(max_abs_diff(b1, b2), 0.0);
  // A fresh model agrees: nothing was left behind in the first one.
  const auto fresh = StableDiffusion::load(model_dir("tiny-sd1"));
  EXPECT_EQ(max_abs_diff(generate(*fresh, a).image01, a1), 0.0);
  // And the two settings really differ (a test that cannot fail otherwise).
  EXPECT_NE(a1.shape(), b1.shape());
}

TEST_F(Reentrancy, TwoGenerationsOnOneModelSideBySide) {
  const GenerateParams a = merged_ancestral(), b = plain_ddim();
  const Tensor want_a = generate(*model_, a).image01;
  const Tensor want_b = generate(*model_, b).image01;
  for (int round = 0; round < 2; ++round) {
    Tensor got_a, got_b, got_a2;
    side_by_side({[&] { got_a = generate(*model_, a).image01; },
                  [&] { got_b = generate(*model_, b).image01; },
                  [&] { got_a2 = generate(*model_, a).image01; }});
    EXPECT_EQ(max_abs_diff(got_a, want_a), 0.0) << "round " << round;
    EXPECT_EQ(max_abs_diff(got_a2, want_a), 0.0) << "round " << round;
    EXPECT_EQ(max_abs_diff(got_b, want_b), 0.0) << "round " << round;
  }
}

TEST_F(Reentrancy, TwoModelsSideBySide) {
  const auto other = StableDiffusion::load(model_dir("tiny-sd2"));
  GenerateParams a = merged_ancestral(), b = plain_ddim();
  const Tensor want_a = generate(*model_, a).image01;
  const Tensor want_b = generate(*other, b).image01;
  Tensor got_a, got_b;
  side_by_side({[&] { got_a = generate(*model_, a).image01; },
                [&] { got_b = generate(*other, b).image01; }});
  EXPECT_EQ(max_abs_diff(got_a, want_a), 0.0);
  EXPECT_EQ(max_abs_diff(got_b, want_b), 0.0);
}

// A layer setting (observer, fused kernels) belongs to one model: observing one model's layers
// sees none of another model's calls, and leaves the other model's results alone.
TEST_F(Reentrancy, LayerSettingsStayWithTheirModel) {
  const auto other = StableDiffusion::load(model_dir("tiny-sd1"));
  GenerateParams p = plain_ddim();
  const Tensor want = generate(*other, p).image01;

  struct Counter : InputObserver {
    std::atomic<int64_t> calls{0};
    void observe(const WeightLayer&, const Tensor&, double) override { ++calls; }
  } counter;
  const std::vector<WeightLayer*> layers = model_->unet->weight_layers();
  Tensor got;
  {
    ScopedInputObserver scope(layers, &counter);
    got = generate(*other, p).image01;  // the other model: not observed
    EXPECT_EQ(counter.calls.load(), 0);
    generate(*model_, p);
    EXPECT_EQ(counter.calls.load(),
              static_cast<int64_t>(layers.size()) * p.steps);  // every layer, every step
  }
  EXPECT_EQ(max_abs_diff(got, want), 0.0);
  for (const WeightLayer* l : layers) EXPECT_EQ(l->observer, nullptr);

  model_->unet->set_fused_lut(false);
  for (const WeightLayer* l : other->unet->weight_layers()) EXPECT_TRUE(l->fused_lut);
}

}  // namespace
