#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "pipeline/infotext.h"

using namespace sdpal;

namespace {

GenerationInfo txt2img_info() {
  GenerationInfo info;
  info.prompt = "a photograph of an astronaut riding a horse";
  info.negative_prompt = "blurry, lowres";
  info.steps = 20;
  info.sampler = "Euler a";
  info.schedule_type = "Automatic";
  info.cfg_scale = 7.5;
  info.seed = 42;
  info.width = 512;
  info.height = 512;
  info.model = "v1-5-pruned-emaonly";
  info.version = "sdpal 0.1.0";
  return info;
}

}  // namespace

TEST(Infotext, FormatsLikeA1111) {
  EXPECT_EQ(a1111_parameters(txt2img_info()),
            "a photograph of an astronaut riding a horse\n"
            "Negative prompt: blurry, lowres\n"
            "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.5, Seed: 42, "
            "Size: 512x512, Model: v1-5-pruned-emaonly, Version: sdpal 0.1.0");
}

TEST(Infotext, OptionalFieldsInA1111Order) {
  GenerationInfo info = txt2img_info();
  info.negative_prompt.clear();
  info.sampler = "DPM++ 2M";
  info.schedule_type = "Karras";
  info.cfg_scale = 7;
  info.seed = 3001968073ULL;
  info.width = 768;
  info.height = 512;
  info.model_hash = "6ce0161689";
  info.denoising_strength = 0.75;
  info.clip_skip = 2;
  info.rng = "CPU";
  info.extra = {{"Mask blur", "4"}};
  EXPECT_EQ(a1111_parameters(info),
            "a photograph of an astronaut riding a horse\n"
            "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3001968073, "
            "Size: 768x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
            "Denoising strength: 0.75, Clip skip: 2, RNG: CPU, Mask blur: 4, Version: sdpal 0.1.0");

  // Clip skip 1 (no layer skipped), empty optional strings and no strength are left out.
  GenerationInfo bare;
  bare.prompt = "cat";
  bare.steps = 8;
  bare.sampler = "DDIM";
  bare.cfg_scale = 1.5;
  bare.seed = 0;
  bare.width = 64;
  bare.height = 128;
  EXPECT_EQ(a1111_parameters(bare),
            "cat\nSteps: 8, Sampler: DDIM, CFG scale: 1.5, Seed: 0, Size: 64x128");
}

TEST(Infotext, NumbersAsA1111WritesThem) {
  EXPECT_EQ(a1111_number(7.0), "7");
  EXPECT_EQ(a1111_number(12.0), "12");
  EXPECT_EQ(a1111_number(7.5), "7.5");
  EXPECT_EQ(a1111_number(0.75), "0.75");
  EXPECT_EQ(a1111_number(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(a1111_number(1e-5), "1e-05");
  EXPECT_EQ(a1111_number(0.0001), "0.0001");
  EXPECT_EQ(a1111_number(-2.25), "-2.25");
  EXPECT_EQ(a1111_number(1.5e16), "1.5e+16");
  EXPECT_EQ(a1111_number(123456.5), "123456.5");
}

TEST(Infotext, QuotesValuesWithSeparators) {
  GenerationInfo info = txt2img_info();
  info.model = "my, model: v2";
  info.extra = {{"Note", "say \"hi\"\\bye\nnext\tline"}, {"Plain", "no separators \"here\""}};
  const std::string text = a1111_parameters(info);
  EXPECT_NE(text.find(", Model: \"my, model: v2\", "), std::string::npos) << text;
  EXPECT_NE(text.find(", Note: \"say \\\"hi\\\"\\\\bye\\nnext\\tline\", "), std::string::npos)
      << text;
  EXPECT_NE(text.find(", Plain: no separators \"here\", "), std::string::npos) << text;
  EXPECT_EQ(parse_a1111_parameters(text), info);
}

TEST(Infotext, RoundTrip) {
  std::vector<GenerationInfo> cases;
  cases.push_back(txt2img_info());
  {
    GenerationInfo i = txt2img_info();
    i.prompt = "line one, (masterpiece:1.2)\nline two: with colon";
    i.negative_prompt = "bad hands\nextra fingers";
    i.sampler = "PLMS";
    i.schedule_type.clear();
    i.cfg_scale = 0.1 + 0.2;
    i.seed = 18446744073709551615ULL;
    i.model_hash = "abcdef0123";
    i.denoising_strength = 0.6;
    i.clip_skip = 3;
    i.extra = {{"Lora hashes", "a: 1, b: 2"}, {"Seed resize from", "512x512"}};
    cases.push_back(i);
  }
  {
    GenerationInfo i = txt2img_info();
    i.prompt = "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE7\x8C\xAB \xF0\x9F\x90\x88";
    i.negative_prompt.clear();
    i.model = "\xC3\xA9t\xC3\xA9";
    cases.push_back(i);
  }
  {
    GenerationInfo i = txt2img_info();
    i.prompt.clear();  // an empty prompt leaves just the negative and parameter lines
    cases.push_back(i);
  }
  for (const auto& info : cases) {
    const std::string text = a1111_parameters(info);
    SCOPED_TRACE(text);
    EXPECT_EQ(parse_a1111_parameters(text), info);
  }
}

TEST(Infotext, ParsesA1111Output) {
  // Written by A1111 v1.9.4 (img2img inpaint), negative prompt and all.
  const GenerationInfo a = parse_a1111_parameters(
      "a woman on a beach, warm weather, studio lighting\n"
      "Negative prompt: incomplete figures\n"
      "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 3001968073, "
      "Size: 985x1266, Model hash: b513c6287d, Model: realism_engine, Denoising strength: 0.75, "
      "Mask blur: 2, Version: v1.9.4");
  EXPECT_EQ(a.prompt, "a woman on a beach, warm weather, studio lighting");
  EXPECT_EQ(a.negative_prompt, "incomplete figures");
  EXPECT_EQ(a.steps, 20);
  EXPECT_EQ(a.sampler, "Euler a");
  EXPECT_EQ(a.schedule_type, "Automatic");
  EXPECT_EQ(a.cfg_scale, 7.0);
  EXPECT_EQ(a.seed, 3001968073ULL);
  EXPECT_EQ(a.width, 985);
  EXPECT_EQ(a.height, 1266);
  EXPECT_EQ(a.model_hash, "b513c6287d");
  EXPECT_EQ(a.model, "realism_engine");
  ASSERT_TRUE(a.denoising_strength.has_value());
  EXPECT_EQ(*a.denoising_strength, 0.75);
  EXPECT_EQ(a.extra, (std::vector<std::pair<std::string, std::string>>{{"Mask blur", "2"}}));
  EXPECT_EQ(a.version, "v1.9.4");

  // A quoted value containing ", " and ": " (A1111 Lora hashes), an empty negative prompt.
  const GenerationInfo b = parse_a1111_parameters(
      "cat portrait, \nNegative prompt: \n"
      "Steps: 30, Sampler: DPM++ 3M SDE, Schedule type: Karras, CFG scale: 5, Seed: 2480865251, "
      "Size: 1152x896, Lora hashes: \"zy_Realism: b46384abcc66, Dramatic Lighting: cad8e9106645\", "
      "Clip skip: 2, Version: v1.10.1");
  EXPECT_EQ(b.prompt, "cat portrait,");
  EXPECT_EQ(b.negative_prompt, "");
  EXPECT_EQ(b.clip_skip, 2);
  EXPECT_EQ(b.extra,
            (std::vector<std::pair<std::string, std::string>>{
                {"Lora hashes", "zy_Realism: b46384abcc66, Dramatic Lighting: cad8e9106645"}}));
  EXPECT_EQ(b.version, "v1.10.1");
}

TEST(Infotext, LastLineWithFewFieldsIsPrompt) {
  // Fewer than three "Key: value" pairs: the last line is still prompt text (A1111's rule).
  const GenerationInfo i = parse_a1111_parameters("first line\nstyle: anime, mood: calm");
  EXPECT_EQ(i.prompt, "first line\nstyle: anime, mood: calm");
  EXPECT_EQ(i.steps, 0);
}

TEST(Infotext, MalformedNumbersAreErrors) {
  EXPECT_THROW(parse_a1111_parameters("p\nSteps: many, Sampler: Euler, Seed: 1"), Error);
  EXPECT_THROW(parse_a1111_parameters("p\nSteps: 20, Sampler: Euler, Seed: -1x"), Error);
  EXPECT_THROW(parse_a1111_parameters("p\nSteps: 20, Sampler: Euler, Size: 512"), Error);
}
