// `sdpal generate` end to end on the built-in demo model: what its PNGs record reproduces them.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "formats/png.h"
#include "formats/safetensors.h"
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
  const auto again = run_cli({"generate",
                              "--model",
                              model,
                              "--prompt",
                              info.prompt,
                              "--negative-prompt",
                              info.negative_prompt,
                              "--steps",
                              std::to_string(info.steps),
                              "--seed",
                              std::to_string(info.seed),
                              "--batch-size",
                              extra(info, "Batch size"),
                              "--cfg-scale",
                              a1111_number(info.cfg_scale),
                              "--sampler",
                              sampler_flag(info.sampler),
                              "--width",
                              std::to_string(info.width),
                              "--height",
                              std::to_string(info.height),
                              "--quiet",
                              "--output",
                              path("again.png")});
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
    const auto r =
        run_cli({"generate", "--model", model, "--prompt", "a bag", "--steps", "4", "--seed", "5",
                 "--sampler", "dpmpp_2m_sde", "--quiet", "--output", path(out)});
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
  const GenerationInfo info =
      parse_a1111_parameters(read_png(path("one.png")).text.at("parameters"));
  EXPECT_EQ(info.seed, 3u);
  EXPECT_EQ(info.rng, "CPU");
  EXPECT_EQ(extra(info, "Batch size"), "");
}

// Noise read from --init-noise / --step-noise is not in the infotext, so the seed does not
// reproduce such an image: the infotext claims no RNG source ("RNG: CPU" would say the seed
// does) and records "Noise: from file" instead.
TEST_F(GenerateCli, NoiseFromFileIsRecordedInsteadOfTheRng) {
  const std::string model = std::string(SDPAL_SOURCE_DIR) + "/models/demo-fashion";
  // The demo model's native 32x32 pixels are 8x8 latents.
  std::vector<float> v(2 * 4 * 8 * 8);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 37) % 23) / 11.f - 1.f;
  const Tensor noise = Tensor::from({1, 4, 8, 8}, v.data());
  const Tensor step_noise = Tensor::from({2, 1, 4, 8, 8}, v.data());
  write_safetensors_f32(path("noise.safetensors"), {{"noise", &noise}});
  write_safetensors_f32(path("steps.safetensors"), {{"step_noise", &step_noise}});
  const std::vector<std::vector<std::string>> cases = {
      {"--init-noise", path("noise.safetensors")},
      {"--sampler", "euler_a", "--step-noise", path("steps.safetensors")},
      {"--sampler", "euler_a", "--init-noise", path("noise.safetensors"), "--step-noise",
       path("steps.safetensors")}};
  for (const auto& flags : cases) {
    std::string what;
    for (const auto& f : flags) what += f + " ";
    SCOPED_TRACE(what);
    std::vector<std::string> args = {"generate", "--model", model,      "--prompt",
                                     "a hat",    "--steps", "2",        "--seed",
                                     "7",        "--quiet", "--output", path("n.png")};
    args.insert(args.end(), flags.begin(), flags.end());
    const auto r = run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string text = read_png(path("n.png")).text.at("parameters");
    const GenerationInfo info = parse_a1111_parameters(text);
    EXPECT_EQ(info.rng, "") << text;
    EXPECT_EQ(text.find("RNG:"), std::string::npos) << text;
    EXPECT_EQ(extra(info, "Noise"), "from file") << text;
    EXPECT_EQ(info.seed, 7u);
  }
}

// A1111 prompt syntax is on by default: emphasis changes the image, the infotext keeps the prompt
// as written, and --no-prompt-syntax encodes the text as diffusers does (and says so).
TEST_F(GenerateCli, PromptSyntaxOnByDefaultAndOffOnRequest) {
  const std::string model = std::string(SDPAL_SOURCE_DIR) + "/models/demo-fashion";
  const std::string prompt = "a (black:1.6) [bag] <hypernet:none:0.5>";
  auto gen = [&](const std::string& p, const std::string& out, bool syntax) {
    std::vector<std::string> args = {"generate", "--model", model, "--prompt", p,        "--steps",
                                     "2",        "--seed",  "7",   "--output", path(out)};
    if (!syntax) args.push_back("--no-prompt-syntax");
    const auto r = run_cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r;
  };
  const auto weighted = gen(prompt, "w.png", true);
  EXPECT_NE(weighted.err.find("<hypernet:...> was removed"), std::string::npos) << weighted.err;
  gen("a black bag", "plain.png", true);
  gen(prompt, "off.png", false);
  const Image w = read_png(path("w.png")), plain = read_png(path("plain.png"));
  const Image off = read_png(path("off.png"));
  EXPECT_NE(w.rgb, plain.rgb);
  EXPECT_NE(off.rgb, w.rgb);
  const GenerationInfo info = parse_a1111_parameters(w.text.at("parameters"));
  EXPECT_EQ(info.prompt, prompt);
  EXPECT_EQ(extra(info, "Prompt syntax"), "");
  EXPECT_EQ(extra(parse_a1111_parameters(off.text.at("parameters")), "Prompt syntax"), "off");
}

// LoRA through the CLI: --lora FILE:W equals the <lora:name:W> tag from --lora-dir, the
// infotext records "Lora hashes", and --lora-merge gives (nearly) the same image.
TEST_F(GenerateCli, LoraByFileAndByPromptTag) {
  const std::string fx = std::string(SDPAL_SOURCE_DIR) + "/../shared/fixtures";
  if (!std::filesystem::exists(fx + "/tiny-lora")) GTEST_SKIP() << "../shared/fixtures absent";
  const std::string model = fx + "/tiny-sd1/model", lora = fx + "/tiny-lora/lora";
  std::filesystem::copy_file(lora + "/sd1_lora_kohya.safetensors", path("style.safetensors"));
  auto gen = [&](std::vector<std::string> extra_args, const std::string& prompt,
                 const std::string& out) {
    std::vector<std::string> args = {
        "generate", "--model", model, "--prompt", prompt, "--steps", "3",        "--seed",
        "5",        "--width", "64",  "--height", "64",   "--quiet", "--output", path(out)};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    const auto r = run_cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return read_png(path(out));
  };
  const Image byfile = gen({"--lora", path("style.safetensors") + ":0.5"}, "a dog", "f.png");
  const Image bytag = gen({"--lora-dir", path("")}, "a dog <lora:style:0.5>", "t.png");
  const Image none = gen({}, "a dog", "n.png");
  const Image merged =
      gen({"--lora", path("style.safetensors") + ":0.5", "--lora-merge"}, "a dog", "m.png");
  EXPECT_EQ(byfile.rgb, bytag.rgb);
  EXPECT_NE(byfile.rgb, none.rgb);
  int maxdiff = 0;
  for (size_t i = 0; i < merged.rgb.size(); ++i)
    maxdiff = std::max(maxdiff, std::abs(int(merged.rgb[i]) - int(byfile.rgb[i])));
  EXPECT_LE(maxdiff, 2);
  const GenerationInfo info = parse_a1111_parameters(bytag.text.at("parameters"));
  EXPECT_EQ(info.prompt, "a dog <lora:style:0.5>");
  EXPECT_EQ(extra(info, "Lora hashes").substr(0, 7), "style: ");
  EXPECT_EQ(extra(info, "Lora hashes").size(), 7u + 12u);
  // A missing file is a clear error, and nothing is written.
  const auto bad = run_cli({"generate", "--model", model, "--prompt", "a dog <lora:nope:1>",
                            "--lora-dir", path(""), "--steps", "1", "--output", path("bad.png")});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("nope"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(path("bad.png")));
}

}  // namespace
}  // namespace sdpal
