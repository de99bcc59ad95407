// The HTTP API's pure request layer (server/request.h, server/base64.h), without HTTP: A1111 and
// OpenAI field names map onto the generation settings, nulls count as absent, unknown fields are
// ignored, and every refusal carries its status and a detail naming the field and the bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>
// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

#include "server/base64.h"
#include "server/request.h"

namespace sdpal::server {
namespace {

TEST(ServerRequest, Base64RoundTripsAndRejectsJunk) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    const std::string e = base64_encode(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    std::string why;
    const auto d = base64_decode(e, &why);
    ASSERT_TRUE(d) << why;
    EXPECT_EQ(std::string(d->begin(), d->end()), s);
  }
  EXPECT_EQ(base64_encode(reinterpret_cast<const uint8_t*>("Man"), 3), "TWFu");
  std::string why;
  EXPECT_TRUE(base64_decode("TWE", &why));  // padding optional
  EXPECT_TRUE(base64_decode("TW\nFu", &why));
  EXPECT_FALSE(base64_decode("TWFu!", &why));
  EXPECT_NE(why.find("offset 4"), std::string::npos) << why;
  EXPECT_FALSE(base64_decode("T", &why));
  EXPECT_FALSE(base64_decode("TQ==TQ==", &why));
}

TEST(ServerRequest, Txt2ImgFieldsMapOntoTheSettings) {
  const Limits l;
  const GenerationRequest r = parse_txt2img(
      R"({"prompt":"a","negative_prompt":"b","seed":42,"sampler_name":"DDIM","scheduler":"Karras",
          "batch_size":2,"n_iter":3,"steps":30,"cfg_scale":6.5,"width":512,"height":256,
          "eta":0.5,"send_images":false,"restore_faces":false,"styles":[],"subseed":-1,
          "sampler_index":null,"something_new":{"x":1},
          "override_settings":{"CLIP_stop_at_last_layers":2,"token_merging_ratio":0.5,
                               "sd_model_checkpoint":"m","sdpal_int8":true,
                               "sdpal_timestep_spacing":"trailing","sd_vae":"Automatic"}})",
      l);
  const GenerationSettings& s = r.settings;
  EXPECT_EQ(s.prompt, "a");
  EXPECT_EQ(s.negative_prompt, "b");
  EXPECT_EQ(s.seed, 42);
  EXPECT_EQ(s.sampler, "ddim");
  EXPECT_TRUE(s.karras);
  EXPECT_EQ(s.batch, 2);
  EXPECT_EQ(r.n_iter, 3);
  EXPECT_EQ(s.steps, 30);
  EXPECT_FLOAT_EQ(s.cfg, 6.5f);
  EXPECT_EQ(s.width, 512);
  EXPECT_EQ(s.height, 256);
  EXPECT_FLOAT_EQ(s.eta, 0.5f);
  EXPECT_FALSE(r.send_images);
  EXPECT_EQ(s.clip_skip, 2);
  EXPECT_DOUBLE_EQ(s.tome.ratio, 0.5);
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.int8, true);
  EXPECT_EQ(s.timestep_spacing, "trailing");
  // Defaults: A1111's (Euler a, CFG 7, 20 steps, random seed, native size).
  const GenerationRequest d = parse_txt2img("{}", l);
  EXPECT_EQ(d.settings.sampler, "euler_a");
  EXPECT_FLOAT_EQ(d.settings.cfg, 7.f);
  EXPECT_EQ(d.settings.steps, 20);
  EXPECT_EQ(d.settings.seed, -1);
  EXPECT_EQ(d.settings.width, 0);
}

TEST(ServerRequest, SamplerNamesA1111AndSdpal) {
  bool karras = false;
  EXPECT_EQ(sampler_id("Euler a", &karras), "euler_a");
  EXPECT_EQ(sampler_id("dpmpp_2m", &karras), "dpmpp_2m");
  EXPECT_FALSE(karras);
  EXPECT_EQ(sampler_id("DPM++ 2M Karras", &karras), "dpmpp_2m");
  EXPECT_TRUE(karras);
  EXPECT_EQ(sampler_id("PLMS", &karras), "pndm");
  try {
    sampler_id("LMS", &karras);
    FAIL();
  } catch (const RequestError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(e.detail().find("Euler a"), std::string::npos) << "lists the samplers";
  }
}

TEST(ServerRequest, LimitErrorsNameTheOption) {
  const Limits l{256, 30, 4};
  const std::pair<const char*, const char*> cases[] = {
      {R"({"width":264})", "--max-size 256"},
      {R"({"steps":31})", "--max-steps 30"},
      {R"({"batch_size":5})", "--max-batch 4"},
      {R"({"batch_size":2,"n_iter":3})", "--max-batch 4"}};
  for (const auto& [body, name] : cases) {
    try {
      parse_txt2img(body, l);
      ADD_FAILURE() << body;
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status(), 400) << body;
      EXPECT_EQ(e.error(), "limit_exceeded");
      EXPECT_NE(e.detail().find(name), std::string::npos) << e.detail();
    }
  }
  try {
    parse_openai_generation(R"({"prompt":"x","n":9})", l);
    ADD_FAILURE();
  } catch (const RequestError& e) {
    EXPECT_NE(e.detail().find("--max-batch 4"), std::string::npos) << e.detail();
  }
}

TEST(ServerRequest, OpenAiAndOptions) {
  const GenerationRequest r =
      parse_openai_generation(R"({"prompt":"cat","n":2,"size":"256x128","quality":"hd"})", {});
  EXPECT_EQ(r.style, ResponseStyle::openai);
  EXPECT_EQ(r.settings.batch, 2);
  EXPECT_EQ(r.settings.width, 256);
  EXPECT_EQ(r.settings.height, 128);
  const OptionsUpdate u = parse_options_update(R"({"sd_model_checkpoint":"x","sdpal_int8":false})");
  EXPECT_EQ(u.model, "x");
  EXPECT_EQ(u.int8, false);
  EXPECT_THROW(parse_options_update(R"({"sd_model_checkpoint":3})"), RequestError);
}

// A baseline JPEG of an RGB gradient, compressed with libjpeg at quality 95.
std::vector<uint8_t> gradient_jpeg(int w, int h, std::vector<uint8_t>* rgb) {
  rgb->resize(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &(*rgb)[(size_t(y) * w + x) * 3];
      p[0] = uint8_t(x * 255 / (w - 1));
      p[1] = uint8_t(y * 255 / (h - 1));
      p[2] = 128;
    }
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* out = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &out, &size);
  c.image_width = w;
  c.image_height = h;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 95, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = &(*rgb)[size_t(c.next_scanline) * w * 3];
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::vector<uint8_t> bytes(out, out + size);
  std::free(out);
  return bytes;
}

TEST(ServerRequest, JpegImagesDecodeAndBrokenOnesAreRefused) {
  std::vector<uint8_t> rgb;
  const std::vector<uint8_t> jpg = gradient_jpeg(48, 32, &rgb);
  const Image img = decode_image_field("data:image/jpeg;base64," + base64_encode(jpg), "img");
  ASSERT_EQ(img.width, 48);
  ASSERT_EQ(img.height, 32);
  int worst = 0;
  for (size_t i = 0; i < rgb.size(); ++i) worst = std::max(worst, std::abs(img.rgb[i] - rgb[i]));
  EXPECT_LE(worst, 12) << "a quality-95 JPEG of a smooth gradient";
  for (const size_t keep : {size_t(3), size_t(20), jpg.size() / 2, jpg.size() - 2}) {
    const std::vector<uint8_t> cut(jpg.begin(), jpg.begin() + keep);
    try {
      decode_image_field(base64_encode(cut), "img");
      ADD_FAILURE() << "a JPEG cut to " << keep << " of " << jpg.size() << " bytes was accepted";
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_EQ(e.error(), "invalid_image") << e.detail();
    }
  }
}

}  // namespace
}  // namespace sdpal::server
