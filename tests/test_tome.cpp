// Token merging (models/tome.h): matching, merge and unmerge against a loop-by-loop reference of
// tomesd's bipartite_soft_matching_random2d; the UNet with ToMe off (bit-identical), on (close),
// in random mode (seeded, one destination choice for the whole batch); generate() and the CLI.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

#include "core/error.h"
#include "formats/png.h"
#include "models/tome.h"
#include "pipeline/generate.h"
#include "pipeline/infotext.h"
#include "support/cli.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"

using namespace sdpal;
using namespace sdpal::test;

namespace {

Tensor random_tensor(Shape s, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.f, scale);
  Tensor t(std::move(s));
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = n(g);
  return t;
}

// ---- Reference: tomesd's algorithm written out with loops, in double --------------------------

struct RefMatch {
  std::vector<int> dst, src;  // token positions, ascending (a stable argsort of the idx buffer)
  int r = 0;
  std::vector<std::vector<int>> unm;               // [b] source indices, unmerged, in order
  std::vector<std::vector<int>> src_idx, dst_idx;  // [b] merged source index -> dst index
  bool near_tie = false;                           // float rounding could decide differently
};

RefMatch ref_match(const Tensor& metric, int h, int w, int r, const std::vector<uint8_t>& cells) {
  const int B = metric.dim(0), N = h * w, C = metric.dim(2);
  const int hsy = h / 2, wsx = w / 2;
  // idx_buffer: -1 marks a destination; the top-left hsy*2 x wsx*2 part holds the cells.
  std::vector<int> idx(N, 0);
  for (int cy = 0; cy < hsy; ++cy)
    for (int cx = 0; cx < wsx; ++cx) {
      const int k = cells[cy * wsx + cx];
      idx[(cy * 2 + k / 2) * w + cx * 2 + k % 2] = -1;
    }
  RefMatch m;
  for (int p = 0; p < N; ++p) (idx[p] == -1 ? m.dst : m.src).push_back(p);
  const int S = m.src.size(), D = m.dst.size();
  m.r = std::min(S, r);
  const double eps = 1e-5;
  for (int b = 0; b < B; ++b) {
    auto unit = [&](int p) {
      std::vector<double> v(C);
      double n = 0;
      for (int c = 0; c < C; ++c)
        n += double(metric[(b * N + p) * C + c]) * metric[(b * N + p) * C + c];
      for (int c = 0; c < C; ++c) v[c] = metric[(b * N + p) * C + c] / std::sqrt(n);
      return v;
    };
    std::vector<double> node_max(S);
    std::vector<int> node_idx(S);
    std::vector<double> second(S, -1e300);
    for (int i = 0; i < S; ++i) {
      const auto a = unit(m.src[i]);
      node_max[i] = -1e300;
      for (int j = 0; j < D; ++j) {
        const auto d = unit(m.dst[j]);
        double s = 0;
        for (int c = 0; c < C; ++c) s += a[c] * d[c];
        if (s > node_max[i]) {
          second[i] = node_max[i];
          node_max[i] = s;
          node_idx[i] = j;
        } else if (s > second[i]) {
          second[i] = s;
        }
      }
    }
    std::vector<int> edge(S);
    for (int i = 0; i < S; ++i) edge[i] = i;
    std::stable_sort(edge.begin(), edge.end(),
                     [&](int p, int q) { return node_max[p] > node_max[q]; });
    for (int k = 0; k + 1 < S; ++k)
      if (node_max[edge[k]] - node_max[edge[k + 1]] < eps) m.near_tie = true;
    std::vector<int> si, di, un;
    for (int k = 0; k < m.r; ++k) {
      si.push_back(edge[k]);
      di.push_back(node_idx[edge[k]]);
      if (node_max[edge[k]] - second[edge[k]] < eps) m.near_tie = true;
    }
    for (int k = m.r; k < S; ++k) un.push_back(edge[k]);
    m.src_idx.push_back(si);
    m.dst_idx.push_back(di);
    m.unm.push_back(un);
  }
  return m;
}

Tensor ref_merge(const RefMatch& m, const Tensor& x) {
  const int B = x.dim(0), N = x.dim(1), C = x.dim(2), D = m.dst.size();
  const int U = m.src.size() - m.r, T = U + D;
  Tensor y({B, T, C});
  for (int b = 0; b < B; ++b) {
    auto row = [&](int p, int c) { return double(x[(b * N + p) * C + c]); };
    for (int k = 0; k < U; ++k)
      for (int c = 0; c < C; ++c) y[(b * T + k) * C + c] = row(m.src[m.unm[b][k]], c);
    for (int j = 0; j < D; ++j)
      for (int c = 0; c < C; ++c) {
        double sum = row(m.dst[j], c);
        int count = 1;
        for (int k = 0; k < m.r; ++k)
          if (m.dst_idx[b][k] == j) {
            sum += row(m.src[m.src_idx[b][k]], c);
            ++count;
          }
        y[(b * T + U + j) * C + c] = static_cast<float>(sum / count);
      }
  }
  return y;
}

Tensor ref_unmerge(const RefMatch& m, const Tensor& y, int N) {
  const int B = y.dim(0), T = y.dim(1), C = y.dim(2), D = m.dst.size();
  const int U = T - D;
  Tensor x = Tensor::full({B, N, C}, NAN);  // every token must be written
  auto put = [&](int b, int p, int t) {
    for (int c = 0; c < C; ++c) x[(b * N + p) * C + c] = y[(b * T + t) * C + c];
  };
  for (int b = 0; b < B; ++b) {
    for (int j = 0; j < D; ++j) put(b, m.dst[j], U + j);
    for (int k = 0; k < U; ++k) put(b, m.src[m.unm[b][k]], k);
    for (int k = 0; k < m.r; ++k) put(b, m.src[m.src_idx[b][k]], U + m.dst_idx[b][k]);
  }
  return x;
}

// Destination choices from a set of destination positions (the inverse of the cell layout).
std::vector<uint8_t> cells_of(const std::vector<int32_t>& dst, int h, int w) {
  const int wsx = w / 2;
  std::vector<uint8_t> cells((h / 2) * wsx, 255);
  for (int p : dst) {
    const int y = p / w, x = p % w;
    EXPECT_TRUE(y < (h / 2) * 2 && x < wsx * 2) << "destination outside the 2x2 cells: " << p;
    uint8_t& c = cells[(y / 2) * wsx + x / 2];
    EXPECT_EQ(c, 255) << "two destinations in one cell";
    c = static_cast<uint8_t>((y % 2) * 2 + x % 2);
  }
  for (uint8_t c : cells) EXPECT_NE(c, 255) << "a cell without destination";
  return cells;
}

// Compares TokenMerge::match + merge/unmerge with the reference on one case. Returns false (and
// checks nothing) when the reference sees a near tie, where float rounding may pick either.
bool check_against_reference(const Tensor& metric, const Tensor& x, int h, int w, int r,
                             const std::vector<uint8_t>& cells, const std::string& what) {
  const RefMatch ref = ref_match(metric, h, w, r, cells);
  if (ref.near_tie) return false;
  const TokenMerge m = TokenMerge::match(metric, h, w, r, cells);
  EXPECT_EQ(m.r(), ref.r) << what;
  EXPECT_EQ(m.destinations(), std::vector<int32_t>(ref.dst.begin(), ref.dst.end())) << what;
  const Tensor merged = m.merge(x);
  const Tensor want = ref_merge(ref, x);
  EXPECT_EQ(merged.shape(), want.shape()) << what;
  if (merged.shape() == want.shape()) expect_close(merged, want, 1e-5, 1e-5, what + " merge");
  // Unmerge of arbitrary data is a pure gather: exact.
  const Tensor y = random_tensor(merged.shape(), 99);
  const Tensor back = m.unmerge(y);
  const Tensor back_ref = ref_unmerge(ref, y, h * w);
  EXPECT_EQ(max_abs_diff(back, back_ref), 0.0) << what << " unmerge";
  Tensor acc = x;
  m.unmerge_add(y, acc);
  Tensor acc_ref = x;
  for (int64_t i = 0; i < acc_ref.numel(); ++i) acc_ref[i] += back_ref[i];
  EXPECT_EQ(max_abs_diff(acc, acc_ref), 0.0) << what << " unmerge_add";
  return true;
}

TEST(ToMeMatch, MergeAndUnmergeEqualTheReference) {
  const std::vector<std::pair<int, int>> sizes{{4, 4}, {5, 7}, {6, 3}, {8, 8},
                                               {3, 2}, {7, 5}, {9, 9}};
  int checked = 0, skipped = 0, cases = 0;
  uint32_t seed = 1;
  for (auto [h, w] : sizes)
    for (double ratio : {0.1, 0.3, 0.5, 0.75, 0.9})
      for (bool random : {false, true}) {
        const int N = h * w, C = 16, r = static_cast<int>(N * ratio);
        if (r == 0) continue;  // tomesd's do_nothing; ToMe::plan returns no matching then
        ++cases;
        std::mt19937 g(seed);
        std::vector<uint8_t> cells((h / 2) * (w / 2), 0);
        if (random)
          for (auto& c : cells) c = static_cast<uint8_t>(g() % 4);
        const std::string what = std::to_string(h) + "x" + std::to_string(w) + " ratio " +
                                 std::to_string(ratio) + (random ? " random" : "");
        bool done = false;
        for (int attempt = 0; attempt < 20 && !done; ++attempt, ++seed) {
          // Tokens near a few shared directions give real clusters to merge.
          Tensor metric = random_tensor({2, N, C}, seed * 7 + 1);
          const Tensor base = random_tensor({3, C}, seed * 7 + 2, 2.f);
          for (int64_t t = 0; t < 2 * N; ++t)
            for (int c = 0; c < C; ++c) metric[t * C + c] += base[(t % 3) * C + c];
          const Tensor x = random_tensor({2, N, 24}, seed * 7 + 3);
          done = check_against_reference(metric, x, h, w, r, cells, what);
          skipped += !done;
        }
        EXPECT_TRUE(done) << what << ": every draw had a near tie";
        checked += done;
      }
  EXPECT_EQ(checked, cases);
  EXPECT_GE(cases, 60);
  EXPECT_LT(skipped, checked) << "too many redraws for near ties";
}

TEST(ToMeMatch, RatioClampedToTheSources) {
  const Tensor metric = random_tensor({2, 16, 8}, 5);
  const TokenMerge m = TokenMerge::match(metric, 4, 4, 100, std::vector<uint8_t>(4, 0));
  EXPECT_EQ(m.r(), 12);  // 16 tokens, 4 destinations
  EXPECT_EQ(m.merge(random_tensor({2, 16, 3}, 6)).dim(1), 4);
}

TEST(ToMePlan, GatingDestinationsAndRandomStream) {
  const Tensor x = random_tensor({2, 64, 8}, 3);
  ToMe t;
  EXPECT_FALSE(t.plan(x, 8, 8, 64).has_value());  // off by default
  t.set({0.5, 1, false, 0});
  auto p = t.plan(x, 8, 8, 64);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->r(), 32);
  for (int32_t d : p->destinations()) EXPECT_TRUE((d / 8) % 2 == 0 && (d % 8) % 2 == 0) << d;
  // tomesd's downsample = ceil(sqrt(full // tokens)): 256 // 64 = 4 -> 2; 81 // 25 = 3 -> 2.
  EXPECT_FALSE(t.plan(x, 8, 8, 256).has_value());
  t.set({0.5, 2, false, 0});
  EXPECT_TRUE(t.plan(x, 8, 8, 256).has_value());
  EXPECT_FALSE(t.plan(x, 8, 8, 64 * 9).has_value());  // 9 -> 3 > 2
  const Tensor x25 = random_tensor({2, 25, 8}, 4);
  EXPECT_TRUE(t.plan(x25, 5, 5, 81).has_value());
  t.set({0.5, 1, false, 0});
  EXPECT_FALSE(t.plan(x25, 5, 5, 81).has_value());
  EXPECT_FALSE(t.plan(random_tensor({2, 5, 8}, 5), 1, 5, 5).has_value());  // no whole cell
  t.set({0.01, 1, false, 0});
  EXPECT_FALSE(t.plan(x, 8, 8, 64).has_value());  // int(64 * 0.01) = 0

  // Random: seeded, restarted by set(), advancing between calls; the plan's destinations equal
  // the reference's for the same cells.
  t.set({0.5, 1, true, 42});
  const auto a1 = t.plan(x, 8, 8, 64), a2 = t.plan(x, 8, 8, 64);
  t.set({0.5, 1, true, 42});
  const auto b1 = t.plan(x, 8, 8, 64);
  t.set({0.5, 1, true, 43});
  const auto c1 = t.plan(x, 8, 8, 64);
  EXPECT_EQ(a1->destinations(), b1->destinations());
  EXPECT_NE(a1->destinations(), a2->destinations());
  EXPECT_NE(a1->destinations(), c1->destinations());
  EXPECT_NE(a1->destinations(), p->destinations());
  const auto cells = cells_of(a1->destinations(), 8, 8);
  (void)check_against_reference(x, x, 8, 8, 32, cells, "plan random");  // near tie: skipped
  // An odd batch cannot hold a cond/uncond pair: top-left destinations, as tomesd does.
  const auto odd = t.plan(random_tensor({1, 64, 8}, 7), 8, 8, 64);
  EXPECT_EQ(odd->destinations(), p->destinations());
}

TEST(ToMeOptions, Validation) {
  ToMe t;
  EXPECT_THROW(t.set({0.95, 1, false, 0}), Error);
  EXPECT_THROW(t.set({-0.1, 1, false, 0}), Error);
  EXPECT_THROW(t.set({NAN, 1, false, 0}), Error);
  EXPECT_THROW(t.set({0.5, 3, false, 0}), Error);
  EXPECT_NO_THROW(t.set({0.9, 8, true, 1}));
}

TEST(ToMeInfotext, WrittenOnlyWhenOnAndParsedBack) {
  GenerationInfo info;
  info.prompt = "a cat";
  info.steps = 20;
  info.sampler = "Euler a";
  info.seed = 1;
  info.width = info.height = 512;
  EXPECT_EQ(a1111_parameters(info).find("Token merging"), std::string::npos);
  info.token_merging_ratio = 0.5;
  const std::string text = a1111_parameters(info);
  EXPECT_NE(text.find(", Token merging ratio: 0.5"), std::string::npos) << text;
  EXPECT_EQ(parse_a1111_parameters(text), info);
}

// ---- The fixture UNet -------------------------------------------------------------------------

class ToMeUNet : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (fixtures_available()) model_ = StableDiffusion::load(model_dir("tiny-sd1")).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override { SDPAL_REQUIRE_FIXTURES(); }
  static UNet& unet() { return *model_->unet; }
  // A guidance-style batch: two latents (identical when `same`), two contexts; run with tome_.
  Tensor run(bool same = false) const {
    const int64_t L = unet().config().in_channels, D = unet().config().cross_attention_dim[0];
    Tensor x = random_tensor({2, L, 16, 16}, 11);
    Tensor ctx = random_tensor({2, 77, D}, 12);
    if (same) {
      std::copy_n(x.data(), x.numel() / 2, x.data() + x.numel() / 2);
      std::copy_n(ctx.data(), ctx.numel() / 2, ctx.data() + ctx.numel() / 2);
    }
    return unet().forward(x, {500}, ctx, &tome_);
  }
  static double psnr(const Tensor& got, const Tensor& want) {
    double mse = 0, peak = 0;
    for (int64_t i = 0; i < want.numel(); ++i) {
      mse += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
      peak = std::max(peak, std::fabs(double(want[i])));
    }
    mse /= want.numel();
    return 10 * std::log10(peak * peak / mse);
  }
  static StableDiffusion* model_;
  ToMe tome_;  // off
};
StableDiffusion* ToMeUNet::model_ = nullptr;

TEST_F(ToMeUNet, RatioZeroIsBitIdentical) {
  const Tensor plain = run();
  tome_.set({0, 8, true, 5});
  EXPECT_EQ(max_abs_diff(run(), plain), 0.0);
  tome_.set({0});
  EXPECT_EQ(max_abs_diff(run(), plain), 0.0);
}

TEST_F(ToMeUNet, MergingChangesTheOutputALittle) {
  const Tensor plain = run();
  for (int max_down : {1, 8}) {
    tome_.set({0.5, max_down, false, 0});
    const Tensor merged = run();
    const double diff = max_abs_diff(merged, plain), p = psnr(merged, plain);
    EXPECT_GT(diff, 1e-4) << "max_downsample " << max_down;
    EXPECT_TRUE(std::isfinite(p));
    EXPECT_GT(p, 20.0) << "max_downsample " << max_down;
    // Deterministic mode: the same output every call.
    EXPECT_EQ(max_abs_diff(run(), merged), 0.0);
  }
  // More merging, more change.
  tome_.set({0.3, 8, false, 0});
  const double p3 = psnr(run(), plain);
  tome_.set({0.9, 8, false, 0});
  const double p9 = psnr(run(), plain);
  EXPECT_GT(p3, p9);
}

TEST_F(ToMeUNet, RandomModeIsSeededAndSharedByTheBatch) {
  tome_.set({0.5, 1, true, 3});
  const Tensor a = run();
  tome_.set({0.5, 1, true, 3});
  EXPECT_EQ(max_abs_diff(run(), a), 0.0);  // set() restarts the stream
  tome_.set({0.5, 1, true, 4});
  const double seed_diff = max_abs_diff(run(), a);
  EXPECT_GT(seed_diff, 1e-4);
  // cond and uncond halves with equal inputs get equal outputs only if they share destinations.
  tome_.set({0.5, 1, true, 3});
  const Tensor same = run(/*same=*/true);
  const Tensor h0 = same.slice0(0, 1), h1 = same.slice0(1, 2);
  EXPECT_LT(max_abs_diff(h0, h1), 1e-5);
  EXPECT_LT(max_abs_diff(h0, h1) * 100, seed_diff);
}

// Each generation has its own setting and random stream: the UNet keeps none between calls.
TEST_F(ToMeUNet, GenerateAppliesItsOwnSetting) {
  GenerateParams p;
  p.prompts = {"a red cube"};
  p.width = p.height = 128;
  p.steps = 2;
  p.seed = 1;
  p.sampler = "euler";
  const Tensor plain = generate(*model_, p).latents;
  p.tome = {0.5, 1, true, 9};
  const Tensor a = generate(*model_, p).latents;
  EXPECT_EQ(max_abs_diff(generate(*model_, p).latents, a), 0.0);
  EXPECT_GT(max_abs_diff(a, plain), 0.0);
  p.tome.ratio = 0;
  EXPECT_EQ(max_abs_diff(generate(*model_, p).latents, plain), 0.0);
  p.tome.ratio = 1.5;
  EXPECT_THROW(generate(*model_, p), Error);
}

// ---- CLI ---------------------------------------------------------------------------------------

class ToMeCli : public TempDirTest {};

TEST_F(ToMeCli, FlagsAreValidatedAndDocumented) {
  const CliResult help = run_cli({"generate", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag : {"--tome ", "--tome-max-downsample", "--tome-random", "--tome-seed"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag << " not in --help";
  struct Bad {
    std::vector<std::string> args;
    std::string want;
  };
  for (const Bad& b : std::vector<Bad>{{{"--tome", "0.95"}, "--tome must be from 0"},
                                       {{"--tome", "-0.5"}, "--tome"},
                                       {{"--tome", "abc"}, "--tome"},
                                       {{"--tome-max-downsample", "3"}, "--tome-max-downsample"}}) {
    std::vector<std::string> args{"generate", "-q", "-p", "x", "-o", path("x.png")};
    args.insert(args.end(), b.args.begin(), b.args.end());
    const CliResult r = run_cli(args);
    EXPECT_NE(r.exit_code, 0) << b.args[1];
    EXPECT_NE(r.err.find(b.want), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(path("x.png")));
  }
}

TEST_F(ToMeCli, GenerateWritesTheRatioIntoTheInfotext) {
  SDPAL_REQUIRE_FIXTURES();
  for (const char* ratio : {"0", "0.5"}) {
    const std::string out = path(std::string("t") + ratio + ".png");
    const CliResult r =
        run_cli({"generate", "-q", "-p", "a red cube", "-s", "1", "--steps", "1", "-m",
                 model_dir("tiny-sd1"), "-o", out, "--tome", ratio, "--tome-random", "--tome-seed",
                 "3", "--tome-max-downsample", "2"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string params = read_png(out).text.at("parameters");
    const bool on = std::string(ratio) != "0";
    EXPECT_EQ(params.find("Token merging ratio: 0.5") != std::string::npos, on) << params;
    EXPECT_EQ(params.find("Token merging") != std::string::npos, on) << params;
  }
}

}  // namespace
