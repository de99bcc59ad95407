// Regression tests for hostile-input findings (issue 10): each test holds the reproducer of one
// finding and checks that the input is refused with an error naming the value and its bound (or,
// for the tokenizer, that the result is right), instead of wrapping around, converting a float
// out of range, escaping with a foreign exception, looping, loading misaligned data or
// allocating out of proportion to the input. Bounds: core/limits.h and docs/limits.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "compression/analysis.h"
#include "compression/analysis_report.h"
#include "compression/int8_analysis.h"
#include "compression/recipe.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/limits.h"
#include "core/tensor.h"
#include "formats/checkpoint_keymap.h"
#include "formats/compressed_format.h"
#include "formats/png.h"
#include "formats/safetensors.h"
#include "models/config.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "models/vae.h"
#include "pipeline/ftfy_fix.h"
#include "pipeline/generate.h"
#include "pipeline/model_files.h"
#include "pipeline/scheduler.h"
#include "pipeline/sd_model.h"
#include "pipeline/tokenizer.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"
#include "tools/analysis_chart.h"

using namespace sdpal;
using nlohmann::json;

namespace {

// Expects fn() to throw sdpal::Error whose message contains every part.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing \"" << parts.front() << "\"";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "missing \"" << p << "\" in: " << e.what();
  }
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A safetensors file from its raw header text and data bytes (nothing is validated or padded).
void write_raw_safetensors(const std::string& path, const std::string& header,
                           const std::vector<uint8_t>& data = {}) {
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header;
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

const std::string kTokenizerDir = std::string(SDPAL_SOURCE_DIR) + "/models/demo-fashion/tokenizer";

class HostileInput : public test::TempDirTest {};

// ---- integer overflow in shape and count arithmetic ----------------------------------------

TEST_F(HostileInput, ShapeProductOverflowIsAnError) {
  const int64_t big = int64_t(1) << 32;
  expect_error([&] { shape_numel({big, big}); }, {"[4294967296, 4294967296]", "64 bits"});
  expect_error(
      [&] {
        checked_numel({big, big}, limits::kMaxTensorElements, "w");
      },
      {"w: shape [4294967296, 4294967296]", "more than 1099511627776 elements"});
  EXPECT_EQ(checked_numel({big, 0, big}, limits::kMaxTensorElements, "w"), 0);
  expect_error([&] { checked_mul(INT64_MAX, 2, "size"); }, {"size", "overflows"});
  expect_error([&] { checked_add(INT64_MAX, 1, "size"); }, {"size", "overflows"});
}

// Finding: a compressed weight of shape [2^32, 2^32] (product wrapping to 0) was accepted with
// empty LUT/indices.
TEST_F(HostileInput, CompressedWeightWhoseShapeProductWrapsToZero) {
  const json desc = {{"kind", "palette"},
                     {"shape", {int64_t(1) << 32, int64_t(1) << 32}},
                     {"dtype", "F16"},
                     {"nbits", 1},
                     {"granularity", "per-tensor"},
                     {"group_size", 0},
                     {"entries", 1},
                     {"bit_order", "lsb-first"}};
  const uint16_t lut = 0x3c00;
  write_safetensors(path("c.safetensors"),
                    {{lut_tensor_name("w"), DType::F16, {1, 1}, &lut},
                     {indices_tensor_name("w"), DType::U8, {0}, nullptr}},
                    {{kCompressedFormatKey, kCompressedFormatVersion},
                     {std::string(kCompressedKeyPrefix) + "w", desc.dump()}});
  SafetensorsFile f(path("c.safetensors"));
  expect_error([&] { read_compressed(f); },
               {path("c.safetensors"), "'w'", "[4294967296, 4294967296]", "1099511627776"});
}

// Findings: block/level indices near INT_MAX in single-file checkpoint names overflowed
// (index + 1, (level + 1) * per_level).
TEST_F(HostileInput, CheckpointKeyIndicesNearIntMax) {
  // Key mapping: refused (no counterpart) instead of overflowing.
  EXPECT_FALSE(unet_key_to_diffusers("input_blocks.2147483647.0.in_layers.0.weight", 2));
  EXPECT_FALSE(unet_key_to_diffusers("output_blocks.2147483647.0.in_layers.0.weight", 2));
  EXPECT_FALSE(unet_key_to_diffusers("input_blocks.1.0.in_layers.0.weight", INT_MAX));
  EXPECT_FALSE(unet_key_to_original("down_blocks.2147483647.downsamplers.0.conv.weight", 2, {}));
  EXPECT_FALSE(unet_key_to_original("down_blocks.65536.downsamplers.0.conv.weight", INT_MAX, {}));
  EXPECT_FALSE(openclip_key_to_diffusers("transformer.resblocks.2147483647.ln_1.weight"));
  EXPECT_FALSE(
      openclip_key_to_original("text_model.encoder.layers.99999999999.layer_norm1.weight"));
  // Still mapped below the bound.
  EXPECT_EQ(unet_key_to_original("down_blocks.65535.downsamplers.0.conv.weight", 65536, {}),
            "input_blocks.4295032832.0.op.weight");
  EXPECT_TRUE(openclip_key_to_diffusers("transformer.resblocks.65536.ln_1.weight"));

  // Whole files: the error names the file, the tensor, the index and the bound.
  const float one = 1;
  auto file_with = [&](const std::string& hostile) {
    std::vector<TensorToWrite> t;
    for (const char* n : {"model.diffusion_model.input_blocks.1.0.in_layers.0.weight",
                          "first_stage_model.encoder.down.0.block.0.norm1.weight",
                          "cond_stage_model.transformer.text_model.final_layer_norm.weight"})
      t.push_back({n, DType::F32, {1}, &one});
    t.push_back({hostile, DType::F32, {1}, &one});
    write_safetensors(path("ckpt.safetensors"), t);
    return path("ckpt.safetensors");
  };
  for (const std::string key :
       {"model.diffusion_model.input_blocks.2147483647.0.op.weight",
        "first_stage_model.encoder.down.2147483647.block.0.norm1.weight",
        "first_stage_model.encoder.down.99999999999.block.0.norm1.weight"}) {
    const std::string p = file_with(key);
    expect_error([&] { map_single_file(p, nullptr, nullptr, nullptr); },
                 {p, "'" + key + "'", "beyond the bound 65536"});
  }
}

// Finding: `4 * block_out_channels[0]` overflowed for a huge config value.
TEST_F(HostileInput, UnetConfigValuesAreBounded) {
  json cfg = {{"block_out_channels", {int64_t(1) << 62}},
              {"down_block_types", {"DownBlock2D"}},
              {"up_block_types", {"UpBlock2D"}}};
  expect_error([&] { UNetConfig::from_json(cfg, "unet/config.json"); },
               {"unet/config.json", "block_out_channels", "4611686018427387904", "16777216"});
  cfg["block_out_channels"] = {-8};
  expect_error([&] { UNetConfig::from_json(cfg, "unet/config.json"); },
               {"block_out_channels[0] is -8"});
  cfg["block_out_channels"] = {32};
  cfg["sample_size"] = 16777216;  // * the VAE factor would overflow the int image side
  expect_error([&] { UNetConfig::from_json(cfg, "unet/config.json"); },
               {"sample_size 16777216 is out of range [1, 8192]"});
  json vae = {{"block_out_channels", std::vector<int>(40, 8)}};  // factor 1 << 39
  expect_error([&] { VaeConfig::from_json(vae, "vae/config.json"); },
               {"vae/config.json", "40 levels", "bound of 8"});
  expect_error([&] { cfg_int(json{{"n", 1e300}}, "n", "c.json"); }, {"c.json", "'n'", "integer"});
  expect_error(
      [&] {
        cfg_int(json{{"n", UINT64_MAX}}, "n", "c.json");
      },
      {"c.json", "'n'", "18446744073709551615", "16777216"});
}

// A config's layer count is allocated only as far as the weights go: 16777216 transformer layers
// per block (within the config bound) end at the first missing block's weights.
TEST_F(HostileInput, HugeLayerCountFailsAtTheFirstMissingWeights) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string m = path("model");
  std::filesystem::copy(test::model_dir("tiny-sd1"), m, std::filesystem::copy_options::recursive);
  json cfg = read_json_file(m + "/unet/config.json");
  cfg["transformer_layers_per_block"] = 16777216;
  write_text(m + "/unet/config.json", cfg.dump());
  expect_error([&] { StableDiffusion::load(m); }, {"transformer_blocks.1.", "missing tensor"});
}

// generate() itself bounds the batch (the CLI's --batch-size check does not cover other callers).
TEST_F(HostileInput, GenerateBoundsTheBatch) {
  SDPAL_REQUIRE_FIXTURES();
  const auto m = StableDiffusion::load(test::model_dir("tiny-sd1"));
  GenerateParams p;
  p.prompts.assign(limits::kMaxBatch + 1, "a cube");
  p.width = p.height = 64;
  expect_error([&] { generate(*m, p); }, {"batch of 65 images", "bound of 64"});
  p.prompts = {"a cube"};
  p.steps = limits::kMaxSteps + 1;
  expect_error([&] { generate(*m, p); }, {"steps must be between 1 and 1000, got 1001"});
}

// Shards named by a .index.json must lie beside it.
TEST_F(HostileInput, ShardIndexNamesOutsideItsFolder) {
  std::filesystem::create_directories(path("unet"));
  write_text(path("unet/diffusion_pytorch_model.safetensors.index.json"),
             R"({"weight_map": {"w": "../../etc/secret.safetensors"}})");
  expect_error(
      [&] { component_files(path("unet"), "diffusion_pytorch_model", "", "UNet"); },
      {"index.json", "'../../etc/secret.safetensors'", "not a file in the index's folder"});
}

// Finding: cumulative layer sizes in the analysis report were summed without checks.
TEST_F(HostileInput, AnalysisSizesAreChecked) {
  Analysis a;
  a.model.candidates = {{"a", INT64_MAX / 2 + 1}, {"b", INT64_MAX / 2 + 1}};
  expect_error([&] { make_report(a); }, {"analysed layer sizes", "overflows"});
}

// ---- float -> int conversions of untrusted numbers -----------------------------------------

// Finding: get<int>() of 1e30 in int8 analysis settings (undefined behaviour).
TEST_F(HostileInput, Int8AnalysisSettingsOutOfIntRange) {
  json j = {{"format", kInt8AnalysisFormat},
            {"model_version", "x"},
            {"settings",
             {{"prompts", {"p"}},
              {"seeds", {1}},
              {"steps", 1e30},
              {"width", 64},
              {"height", 64},
              {"cfg_scale", 7.5},
              {"sampler", "euler"},
              {"timestep_spacing", "leading"},
              {"min_work_share", 0.0},
              {"calibration", ""}}}};
  write_text(path("a.json"), j.dump());
  expect_error([&] { read_int8_analysis(path("a.json")); }, {path("a.json"), "steps"});
  j["settings"]["steps"] = 4294967297;  // get<int>() would wrap around to 1
  write_text(path("a.json"), j.dump());
  expect_error([&] { read_int8_analysis(path("a.json")); },
               {path("a.json"), "steps 4294967297 is out of range [1, 1000]"});
}

// Finding: the TAESD config's upsampling_scaling_factor 1e30 went through get<int>().
TEST_F(HostileInput, TaesdUpsamplingFactorOutOfIntRange) {
  const float one = 1;
  std::filesystem::create_directories(path("taesd"));
  write_safetensors(path("taesd/diffusion_pytorch_model.safetensors"),
                    {{"decoder.layers.0.weight", DType::F32, {1}, &one}});
  write_text(path("taesd/config.json"), R"({"upsampling_scaling_factor": 1e30})");
  expect_error([&] { Taesd::load(path("taesd")); },
               {path("taesd/config.json"), "upsampling_scaling_factor 1e+30", "[1, 16]"});
}

// Finding: betas above 1 gave NaN Karras sigmas and NaN timesteps (cast to int64).
TEST_F(HostileInput, SchedulerBetasOutsideZeroOne) {
  SchedulerOptions o;
  o.name = "dpmpp_2m";
  o.karras = true;
  const json bad = {{"beta_start", 1.5}, {"beta_end", 2.0}, {"beta_schedule", "linear"}};
  expect_error([&] { make_scheduler(o, bad); }, {"beta 0 is 1.5", "outside (0, 1)"});
  const json zero = {{"beta_start", 0.0}, {"beta_end", 0.02}};
  expect_error([&] { make_scheduler(o, zero); }, {"beta 0 is 0", "outside (0, 1)"});
  json trained = {{"num_train_timesteps", 2}, {"trained_betas", {0.5, std::nan("")}}};
  expect_error([&] { make_scheduler(o, trained); }, {"beta 1", "outside (0, 1)"});
  const json sigma = {{"sigma_min", -1.0}};
  expect_error([&] { make_scheduler(o, sigma); }, {"sigma_min", "positive"});
  const json offset = {{"steps_offset", 1e18}};
  o.name = "ddim";
  o.karras = false;
  expect_error([&] { make_scheduler(o, offset); }, {"steps_offset", "1073741824"});
  // A normal config still works.
  auto s = make_scheduler(o, json{{"beta_schedule", "scaled_linear"}});
  s->set_timesteps(20);
}

// ---- exceptions that escaped without naming the file ---------------------------------------

TEST_F(HostileInput, NumberOverflowInJsonNamesTheFile) {
  write_text(path("doc.json"), R"({"x": 1e400})");
  expect_error([&] { read_json_document(path("doc.json"), "analysis"); },
               {path("doc.json"), "not valid JSON", "1e400"});
  expect_error([&] { load_recipe_file(path("doc.json"), ""); },
               {path("doc.json"), "not valid JSON"});
  expect_error([&] { read_json_file(path("doc.json")); }, {path("doc.json"), "invalid JSON"});
  write_text(path("sched.json"), R"({"beta_end": 1e400})");
  expect_error([&] { load_scheduler_config(path("sched.json")); },
               {path("sched.json"), "not valid JSON"});
}

TEST_F(HostileInput, RecipeBitsThatWrapAroundAsInt) {
  write_text(path("r.json"), R"({"down.0": 4294967298})");  // (int) 4294967298 == 2
  expect_error([&] { load_recipe_file(path("r.json"), ""); }, {path("r.json"), "4294967298"});
}

// Finding: a scheduler_config.json that is valid JSON but no object threw nlohmann's type_error
// from deep inside generate().
TEST_F(HostileInput, SchedulerConfigThatIsNotAnObject) {
  write_text(path("scheduler_config.json"), "[1, 2, 3]");
  expect_error([&] { load_scheduler_config(path("scheduler_config.json")); },
               {path("scheduler_config.json"), "not a JSON object"});
  SchedulerOptions o;
  o.name = "euler";
  expect_error([&] { make_scheduler(o, json::array({1, 2})); }, {"not a JSON object"});
}

TEST_F(HostileInput, JsonNestingIsBounded) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  expect_error([&] { parse_json_text(deep, "deep.json"); },
               {"deep.json", "nested deeper than 64 levels"});
  write_text(path("deep.json"), deep);
  expect_error([&] { read_json_document(path("deep.json"), "analysis"); },
               {path("deep.json"), "nested deeper than 64"});
  // Brackets inside strings do not count.
  EXPECT_NO_THROW(parse_json_text("{\"a\": \"" + std::string(1000, '[') + "\"}", "s.json"));
}

// ---- an infinite loop -----------------------------------------------------------------------

// Finding: the chart's axis ticks never advanced when the PSNR values were huge and close.
TEST_F(HostileInput, ChartOfHugeCloseValuesTerminates) {
  AnalysisReport r;
  r.curves.push_back({4, {{10, 1e300}, {20, std::nextafter(1e300, 2e300)}}});
  r.mixed_bit = {{30, 1e300}};
  r.mixed_labels = {"4.00 bit"};
  draw_analysis_chart(r, path("c.svg"));
  EXPECT_TRUE(std::filesystem::exists(path("c.svg")));
  r.curves = {{4, {{10, 1.7e308}, {20, -1.7e308}}}};
  draw_analysis_chart(r, path("d.png"));
  EXPECT_TRUE(std::filesystem::exists(path("d.png")));
}

// ---- misaligned loads -----------------------------------------------------------------------

// Finding: data_offsets that are not a multiple of the element size were read as F16/F64 arrays
// with misaligned loads (undefined behaviour; UBSan reports them). Such files are valid (other
// tools pack tensors back to back), so they are read with unaligned-safe loads.
TEST_F(HostileInput, SafetensorsOffsetsNotAMultipleOfTheElementSize) {
  const std::vector<double> f64 = {1.5, -2.25};
  const std::vector<uint16_t> f16 = {0x3c00, 0xc000};
  const std::vector<int32_t> i32 = {-7, 1 << 30};
  std::vector<uint8_t> data(1 + 16 + 4 + 8);
  std::memcpy(data.data() + 1, f64.data(), 16);
  std::memcpy(data.data() + 17, f16.data(), 4);
  std::memcpy(data.data() + 21, i32.data(), 8);
  write_raw_safetensors(path("odd.safetensors"),
                        R"({"d": {"dtype": "F64", "shape": [2], "data_offsets": [1, 17]},)"
                        R"( "h": {"dtype": "F16", "shape": [2], "data_offsets": [17, 21]},)"
                        R"( "i": {"dtype": "I32", "shape": [2], "data_offsets": [21, 29]}})",
                        data);
  SafetensorsFile f(path("odd.safetensors"));
  const Tensor d = f.to_f32("d"), h = f.to_f32("h"), i = f.to_f32("i");
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(d[k], static_cast<float>(f64[k]));
    EXPECT_EQ(h[k], half_to_float(f16[k]));
    EXPECT_EQ(i[k], static_cast<float>(i32[k]));
  }
}

// A header whose length is not a multiple of 8 puts the whole data region at an odd address:
// accepted (older writers did not pad), and read without misaligned loads.
TEST_F(HostileInput, SafetensorsDataRegionAtAnOddAddressIsReadCorrectly) {
  const std::vector<double> f64 = {1.5, -2.25, 3e10};
  const std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x3555};  // 1, -2, ~0.333
  const std::vector<float> f32 = {0.5f, 7.f, -1e-3f};
  std::vector<uint8_t> data(24 + 8 + 12);
  std::memcpy(data.data(), f64.data(), 24);
  std::memcpy(data.data() + 24, f16.data(), 6);
  std::memcpy(data.data() + 32, f32.data(), 12);
  std::string header = R"({"d": {"dtype": "F64", "shape": [3], "data_offsets": [0, 24]},)"
                       R"( "h": {"dtype": "F16", "shape": [3], "data_offsets": [24, 30]},)"
                       R"( "f": {"dtype": "F32", "shape": [3], "data_offsets": [32, 44]}})";
  if ((8 + header.size()) % 2 == 0) header += " ";  // data region at an odd address
  write_raw_safetensors(path("u.safetensors"), header, data);
  SafetensorsFile f(path("u.safetensors"));
  ASSERT_NE(reinterpret_cast<uintptr_t>(f.get("d").data) % 2, 0u);
  const Tensor d = f.to_f32("d"), h = f.to_f32("h"), g = f.to_f32("f");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(d[i], static_cast<float>(f64[i]));
    EXPECT_EQ(h[i], half_to_float(f16[i]));
    EXPECT_EQ(g[i], f32[i]);
  }
}

// ---- allocations out of proportion to the input --------------------------------------------

// Finding: a 100 MB header that is not an object took 1.7 GB and 18 s before it was refused.
TEST_F(HostileInput, SafetensorsHeaderIsPrescannedBeforeParsing) {
  std::string array = "[";
  for (int i = 0; i < 2000000; ++i) array += "0,";
  array += "0]";
  write_raw_safetensors(path("array.safetensors"), array);
  expect_error([&] { SafetensorsFile f(path("array.safetensors")); },
               {path("array.safetensors"), "header is not a JSON object"});
  // One shape array of millions of numbers.
  const std::string shape =
      "{\"w\": {\"dtype\": \"F32\", \"shape\": " + array + ", \"data_offsets\": [0, 0]}}";
  write_raw_safetensors(path("shape.safetensors"), shape);
  expect_error([&] { SafetensorsFile f(path("shape.safetensors")); },
               {"array of more than 16 elements"});
  // Nesting.
  write_raw_safetensors(path("deep.safetensors"),
                        "{\"w\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
  expect_error([&] { SafetensorsFile f(path("deep.safetensors")); }, {"nests deeper than the 3"});
  // Entries.
  std::string many = "{";
  for (int64_t i = 0; i <= limits::kMaxSafetensorsTensors; ++i)
    many += "\"t" + std::to_string(i) + "\":0,";
  many.back() = '}';
  write_raw_safetensors(path("many.safetensors"), many);
  expect_error([&] { SafetensorsFile f(path("many.safetensors")); }, {"more than 131072 entries"});
  // Rank.
  write_raw_safetensors(
      path("rank.safetensors"),
      R"({"w": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]}})",
      std::vector<uint8_t>(4));
  expect_error([&] { SafetensorsFile f(path("rank.safetensors")); }, {"more than 16 elements"});
}

// Finding: a 128-byte truncated PNG declaring 16384x16384 made the decoder allocate and zero
// 805 MB. It is refused from its header: the file cannot hold that much image data.
TEST_F(HostileInput, TruncatedPngDeclaringAHugeImage) {
  std::mt19937 rng(5);
  std::vector<uint8_t> rgb(64 * 64 * 3);
  for (auto& b : rgb) b = static_cast<uint8_t>(rng());
  std::vector<uint8_t> png = encode_png(rgb.data(), 64, 64);
  ASSERT_GT(png.size(), 128u);
  // IHDR width/height live at bytes 16..23 (big-endian); the CRC is fixed up below.
  auto put32 = [&](size_t at, uint32_t v) {
    for (int k = 0; k < 4; ++k) png[at + k] = static_cast<uint8_t>(v >> (24 - 8 * k));
  };
  put32(16, 16384);
  put32(20, 16384);
  uint32_t crc = 0xffffffffu;
  for (size_t i = 12; i < 29; ++i) {
    crc ^= png[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  put32(29, ~crc);
  png.resize(128);
  expect_error([&] { decode_png(png.data(), png.size(), "big.png"); },
               {"big.png", "truncated", "128 bytes cannot hold the 16384x16384 image"});
}

// ---- the tokenizer: quadratic time ----------------------------------------------------------

// CLIP's reference BPE loop (the one the tokenizer ran before), on words of ASCII letters.
std::vector<std::string> reference_bpe(const std::string& word,
                                       const std::map<std::string, int>& ranks) {
  std::vector<std::string> s;
  for (char c : word) s.emplace_back(1, c);
  s.back() += "</w>";
  while (s.size() > 1) {
    int best = INT_MAX;
    std::string first, second;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      auto it = ranks.find(s[i] + " " + s[i + 1]);
      if (it != ranks.end() && it->second < best)
        best = it->second, first = s[i], second = s[i + 1];
    }
    if (best == INT_MAX) break;
    std::vector<std::string> m;
    for (size_t i = 0; i < s.size();) {
      if (i + 1 < s.size() && s[i] == first && s[i + 1] == second) {
        m.push_back(first + second);
        i += 2;
      } else {
        m.push_back(s[i++]);
      }
    }
    s = std::move(m);
  }
  return s;
}

class HostileTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tok_ = new ClipTokenizer(ClipTokenizer::load(kTokenizerDir));
    std::ifstream m(kTokenizerDir + "/merges.txt");
    std::string line;
    std::getline(m, line);  // #version
    for (int rank = 0; std::getline(m, line) && rank < 49152 - 256 - 2; ++rank) ranks_[line] = rank;
    std::ifstream v(kTokenizerDir + "/vocab.json");
    const json vocab = json::parse(v);
    for (const auto& [k, id] : vocab.items()) {
      text_of_[id.get<int>()] = k;
      id_of_[k] = id.get<int>();
    }
  }
  static void TearDownTestSuite() { delete tok_; }
  std::vector<int> ids_of(const std::vector<std::string>& symbols) const {
    std::vector<int> ids;
    for (const auto& s : symbols) {
      auto it = id_of_.find(s);
      ids.push_back(it == id_of_.end() ? tok_->unk() : it->second);
    }
    return ids;
  }
  std::string text(const std::vector<int>& ids) const {
    std::string s;
    for (int id : ids) s += text_of_.at(id);
    return s;
  }
  static ClipTokenizer* tok_;
  static std::map<std::string, int> ranks_;
  static std::map<int, std::string> text_of_;
  static std::map<std::string, int> id_of_;
};
ClipTokenizer* HostileTokenizer::tok_ = nullptr;
std::map<std::string, int> HostileTokenizer::ranks_;
std::map<int, std::string> HostileTokenizer::text_of_;
std::map<std::string, int> HostileTokenizer::id_of_;

// The heap-based BPE gives the reference loop's result on random words (small alphabets make
// long chains of equal and overlapping pairs).
TEST_F(HostileTokenizer, BpeMatchesTheReferenceLoop) {
  std::mt19937 rng(7);
  for (const std::string alphabet : {"ab", "aeiou", "thesnra", "abcdefghijklmnopqrstuvwxyz"}) {
    for (int len : {1, 2, 3, 7, 40, 300, 1500}) {
      std::string w;
      for (int i = 0; i < len; ++i) w += alphabet[rng() % alphabet.size()];
      EXPECT_EQ(tok_->tokenize(w), ids_of(reference_bpe(w, ranks_))) << w.substr(0, 80);
    }
  }
  // Runs of one letter: every pair is the same pair, overlapping.
  for (int len : {2, 3, 4, 5, 17, 1000})
    EXPECT_EQ(tok_->tokenize(std::string(len, 'a')),
              ids_of(reference_bpe(std::string(len, 'a'), ranks_)));
}

// Finding: one long word took about a minute at 32 KB; --prompt accepts 128 KB.
TEST_F(HostileTokenizer, LongWordIsTokenized) {
  std::mt19937 rng(3);
  std::string w;
  for (int i = 0; i < 128 * 1024; ++i) w += "etaoinshr"[rng() % 9];
  const std::vector<int> ids = tok_->tokenize(w);
  EXPECT_GT(ids.size(), 128u * 1024 / 8);
  EXPECT_EQ(text(ids), w + "</w>");  // the tokens spell the word
  const std::vector<int> run = tok_->tokenize(std::string(128 * 1024, 'z'));
  EXPECT_EQ(text(run), std::string(128 * 1024, 'z') + "</w>");
}

// Finding: nested "&amp;amp;amp;...;" took one ftfy round per level.
TEST_F(HostileTokenizer, NestedHtmlEntityChainIsTokenized) {
  std::string chain = "&";
  while (chain.size() < 128 * 1024 - 8) chain += "amp;";
  chain += "lt;";  // "&amp;amp;...amp;lt;" -> "&amp;...lt;" -> ... -> "&lt;" -> "<"
  EXPECT_EQ(tok_->tokenize(chain), tok_->tokenize("<"));
  EXPECT_EQ(tok_->tokenize("x " + chain.substr(0, chain.size() - 3) + " y"),
            tok_->tokenize("x & y"));
}

// unescape_html_fully is the fixed point of the single pass, on random strings rich in
// reference material.
TEST(HostileFtfy, FullUnescapeIsTheFixedPointOfThePass) {
  std::mt19937 rng(11);
  const std::vector<std::u32string> parts = {U"&",    U"amp;", U"amp",  U";",     U"#",    U"38;",
                                             U"#38;", U"lt;",  U"x",    U"a",     U"m",    U"p",
                                             U"&#",   U"x26;", U"#59;", U"semi;", U"AMP;", U" "};
  for (int trial = 0; trial < 3000; ++trial) {
    std::u32string s;
    const int n = 1 + static_cast<int>(rng() % 14);
    for (int i = 0; i < n; ++i) s += parts[rng() % parts.size()];
    std::u32string fixed = s;
    for (int round = 0; round < 100; ++round) {
      const std::u32string next = unescape_html_like_ftfy(fixed);
      if (next == fixed) break;
      fixed = next;
    }
    ASSERT_EQ(unescape_html_fully(s), fixed) << std::string(s.begin(), s.end());  // ASCII
  }
}

TEST_F(HostileTokenizer, PromptLengthIsBounded) {
  expect_error([&] { tok_->tokenize(std::string(limits::kMaxPromptBytes + 1, 'a')); },
               {"prompt of 262145 bytes", "bound of 262144 bytes"});
}

}  // namespace
