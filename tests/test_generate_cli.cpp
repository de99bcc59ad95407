// `sdpal generate` end to end on the built-in demo model: what its PNGs record reproduces them.
#include <gtest/gtest.h>

#include <string>

#include "formats/png.h"
#include "pipeline/infotext.h"
#include "support/cli.h"
#include "support/temp_dir.h"

namespace sdpal {
namespace {

using test::run_cli;

class GenerateCli : public test::TempDirTest {};

std::string extra(const GenerationInfo& info, const std::string& key) {
  for (const auto& [k, v] : info.extra)
    if (k == key) return v;
  return "";
}

std::string sampler_flag(const std::string& a1111) {
  if (a1111 == "Euler a") return "euler_a";
  if (a1111 == "Euler") return "euler";
  if (a1111 == "DDIM") return "ddim";
  if (a1111 == "DPM++ 2M") return "dpmpp_2m";
  if (a1111 == "DPM++ 2M SDE") return "dpmpp_2m_sde";
  if (a1111 == "PLMS") return "pndm";
  ADD_FAILURE() << "unknown sampler in infotext: " << a1111;
  return "";
}

// Each image of a batch carries its own infotext (seed, batch size, position, RNG): reading the
// second image's text alone and running what it says gives the same pixels.
TEST_F(GenerateCli, EachBatchImageIsReproducedFromItsOwnInfotext) {
  const std::string model = std::string(SDPAL_SOURCE_DIR) + "/models/demo-fashion";
  const auto r = run_cli({"generate", "--model", model, "--prompt", "a shirt", "--negative-prompt",
                          "blurry", "--steps", "3", "--seed", "11", "--batch-size", "3",
                          "--cfg-scale", "5", "--quiet", "--output", path("b.png")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Image first = read_png(path("b-1.png")), second = read_png(path("b-2.png"));
  const GenerationInfo i1 = parse_a1111_parameters(first.text.at("parameters"));
  const GenerationInfo info = parse_a1111_parameters(second.text.at("parameters"));
  EXPECT_EQ(info.rng, "CPU");
  EXPECT_EQ(extra(info, "Batch size"), "3");
  EXPECT_EQ(extra(info, "Batch pos"), "1");
  EXPECT_EQ(extra(i1, "Batch pos"), "0");
  EXPECT_NE(first.rgb, second.rgb);

  const int pos = std::stoi(extra(info, "Batch pos"));
  const auto again = run_cli(
      {"generate", "--model", model, "--prompt", info.prompt, "--negative-prompt",
       info.negative_prompt, "--steps", std::to_string(info.steps), "--seed",
       std::to_string(info.seed), "--batch-size", extra(info, "Batch size"), "--cfg-scale",
       a1111_number(info.cfg_scale), "--sampler", sampler_flag(info.sampler), "--width",
       std::to_string(info.width), "--height", std::to_string(info.height), "--quiet",
       "--output", path("again.png")});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const Image redo = read_png(path("again-" + std::to_string(pos + 1) + ".png"));
  EXPECT_EQ(redo.rgb, second.rgb);
  EXPECT_EQ(redo.text.at("parameters"), second.text.at("parameters"));
}

// The stochastic DPM++ 2M SDE through the CLI: reachable, seeded (same seed, same image) and named
// as A1111 names it.
TEST_F(GenerateCli, DpmppSdeIsSeeded) {
  const std::string model = std::string(SDPAL_SOURCE_DIR) + "/models/demo-fashion";
  for (const char* out : {"a.png", "b.png"}) {
    const auto r = run_cli({"generate", "--model", model, "--prompt", "a bag", "--steps", "4",
                            "--seed", "5", "--sampler", "dpmpp_2m_sde", "--quiet", "--output",
                            path(out)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const Image a = read_png(path("a.png")), b = read_png(path("b.png"));
  EXPECT_EQ(a.rgb, b.rgb);
  EXPECT_EQ(parse_a1111_parameters(a.text.at("parameters")).sampler, "DPM++ 2M SDE");
}

TEST_F(GenerateCli, SingleImageInfotextHasNoBatchFields) {
  const std::string model = std::string(SDPAL_SOURCE_DIR) + "/models/demo-fashion";
  const auto r = run_cli({"generate", "--model", model, "--prompt", "a shoe", "--steps", "2",
                          "--seed", "3", "--quiet", "--output", path("one.png")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const GenerationInfo info = parse_a1111_parameters(read_png(path("one.png")).text.at("parameters"));
  EXPECT_EQ(info.seed, 3u);
  EXPECT_EQ(info.rng, "CPU");
  EXPECT_EQ(extra(info, "Batch size"), "");
}

}  // namespace
}  // namespace sdpal
