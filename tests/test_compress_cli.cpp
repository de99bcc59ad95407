// `sdpal compress` and `sdpal inspect` on the fixture models: every candidate weight (and only
// those) compressed as asked and stored under its own name, everything else carried over byte for
// byte, the input untouched, inspect's totals equal to what is on disk, and bad requests refused
// before anything is written.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "compression/compress_model.h"
#include "core/compressed_weight.h"
#include "core/error.h"
#include "formats/compressed_format.h"
#include "formats/safetensors.h"
#include "kernels/expand.h"
#include "pipeline/model_files.h"
#include "support/cli.h"
#include "support/fixtures.h"

using namespace sdpal;
using sdpal::test::run_cli;
namespace fs = std::filesystem;

namespace {

class CompressCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sdpal_cc_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // Entries of the test folder other than `keep` (leftover temp folders would show up here).
  std::vector<std::string> others(const std::set<std::string>& keep) const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_))
      if (!keep.count(e.path().filename().string())) names.push_back(e.path().filename());
    return names;
  }
  fs::path dir_;
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Relative path -> content hash of every file under `root`.
std::map<std::string, size_t> tree_hash(const fs::path& root) {
  std::map<std::string, size_t> h;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file())
      h[fs::relative(e.path(), root).string()] = std::hash<std::string>{}(read_file(e.path()));
  return h;
}

struct Expect {
  CompressMode mode = CompressMode::Palettize;
  int nbits = 4;
  int64_t group_size = 0;
  bool symmetric = true;
  int64_t min_elements = 1000;
  std::set<std::string> components = {"unet", "text_encoder"};
  std::string variant;
};

// Every expanded palette value is the LUT entry nearest to the original value.
void check_palette_values(const std::string& name, const Tensor& orig, const CompressedView& v) {
  std::vector<float> got(orig.numel());
  expand(v, got.data());
  const int64_t per_row = orig.numel() / v.rows();
  const int64_t rows_per_group = v.group_size ? v.group_size : v.rows();
  for (int64_t g = 0; g < v.groups; ++g) {
    std::vector<float> lut;
    for (int64_t e = 0; e < v.entries; ++e) lut.push_back(half_to_float(v.lut[g * v.entries + e]));
    std::sort(lut.begin(), lut.end());
    for (int64_t i = g * rows_per_group * per_row; i < (g + 1) * rows_per_group * per_row; ++i) {
      const float x = orig[i];
      auto it = std::lower_bound(lut.begin(), lut.end(), x);
      float best = std::numeric_limits<float>::infinity();
      if (it != lut.end()) best = std::min(best, std::fabs(*it - x));
      if (it != lut.begin()) best = std::min(best, std::fabs(*(it - 1) - x));
      ASSERT_TRUE(std::binary_search(lut.begin(), lut.end(), got[i]))
          << name << " element " << i << " expands to " << got[i] << ", not a LUT entry";
      ASSERT_LE(std::fabs(got[i] - x), best * (1 + 1e-6f))
          << name << " element " << i << ": " << x << " -> " << got[i] << ", nearest is " << best
          << " away";
    }
  }
}

// Linear 8-bit values round-trip to within half a step.
void check_linear8_values(const std::string& name, const Tensor& orig, const CompressedView& v) {
  std::vector<float> got(orig.numel());
  expand(v, got.data());
  const int64_t per_row = orig.numel() / v.rows();
  for (int64_t i = 0; i < orig.numel(); ++i) {
    const float tol = v.scale[i / per_row] * 0.5f * (1 + 1e-4f) + 1e-6f * std::fabs(orig[i]);
    ASSERT_LE(std::fabs(got[i] - orig[i]), tol) << name << " element " << i;
  }
}

// The output folder against its input, component by component.
void check_compressed_model(const fs::path& in, const fs::path& out, const Expect& x) {
  // Non-weight files: identical.
  for (const char* f : {"model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
                        "vae/config.json", "text_encoder/config.json", "tokenizer/vocab.json",
                        "tokenizer/merges.txt"})
    EXPECT_EQ(read_file(in / f), read_file(out / f)) << f;
  int64_t compressed_count = 0;
  for (const auto& mc : model_components()) {
    SCOPED_TRACE(mc.name);
    const auto in_files = component_files(in / mc.name, mc.stem, x.variant, mc.what);
    const auto out_files = component_files(out / mc.name, mc.stem, "", mc.what);
    ASSERT_EQ(in_files.size(), out_files.size());
    // Only the chosen weight files are written (one variant).
    int64_t weight_files = 0;
    for (const auto& e : fs::directory_iterator(out / mc.name))
      weight_files += e.path().extension() == ".safetensors";
    EXPECT_EQ(weight_files, static_cast<int64_t>(out_files.size()));
    for (size_t i = 0; i < in_files.size(); ++i) {
      EXPECT_EQ(fs::path(in_files[i]).filename(), fs::path(out_files[i]).filename());
      if (!x.components.count(mc.name)) {
        EXPECT_EQ(read_file(in_files[i]), read_file(out_files[i])) << "copied as it is";
        continue;
      }
      SafetensorsFile src(in_files[i]), dst(out_files[i]);
      const CompressedTensors ct = read_compressed(dst);
      std::set<std::string> stored;  // tensors dst must hold: plain ones and components
      for (const auto& t : src.tensors()) {
        const bool candidate =
            is_compression_candidate(t.name, t.shape, t.dtype, x.min_elements, false);
        auto it = ct.weights.find(t.name);
        EXPECT_EQ(it != ct.weights.end(), candidate) << t.name;
        if (it == ct.weights.end()) {
          const TensorView* d = dst.find(t.name);
          ASSERT_NE(d, nullptr) << t.name;
          EXPECT_EQ(d->dtype, t.dtype);
          EXPECT_EQ(d->shape, t.shape);
          EXPECT_EQ(0, std::memcmp(d->data, t.data, t.nbytes)) << t.name;
          stored.insert(t.name);
          continue;
        }
        ++compressed_count;
        const CompressedView& v = it->second;
        EXPECT_EQ(v.shape, t.shape) << t.name;
        EXPECT_EQ(v.orig_dtype, t.dtype) << t.name;
        const Tensor orig = src.to_f32(t.name);
        if (x.mode == CompressMode::Palettize) {
          ASSERT_EQ(v.kind, CompressedView::Kind::Palette) << t.name;
          EXPECT_EQ(v.nbits, x.nbits) << t.name;
          EXPECT_EQ(v.group_size, x.group_size) << t.name;
          check_palette_values(t.name, orig, v);
          stored.insert({lut_tensor_name(t.name), indices_tensor_name(t.name)});
        } else {
          ASSERT_EQ(v.kind, CompressedView::Kind::Linear8) << t.name;
          EXPECT_EQ(v.symmetric, x.symmetric) << t.name;
          check_linear8_values(t.name, orig, v);
          stored.insert({q_tensor_name(t.name), scale_tensor_name(t.name)});
          if (!x.symmetric) stored.insert(zero_tensor_name(t.name));
        }
      }
      std::set<std::string> got;
      for (const auto& t : dst.tensors()) got.insert(t.name);
      EXPECT_EQ(got, stored);
      // The source's own metadata is kept.
      for (const auto& [k, val] : src.metadata()) EXPECT_EQ(dst.metadata().at(k), val) << k;
    }
  }
  EXPECT_GT(compressed_count, 0);
}

// inspect --json against the files on disk and the original model's parameter counts.
void check_inspect(const fs::path& model, const fs::path& original, const std::string& variant,
                   int64_t min_elements) {
  std::vector<std::string> args = {"inspect", model.string(), "--json", "--min-elements",
                                   std::to_string(min_elements)};
  const auto r = run_cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  int64_t total_file = 0, total_stored = 0, total_params = 0, total_cand = 0, total_cbytes = 0;
  for (const auto& c : j["components"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const ModelComponent* mc = nullptr;
    for (const auto& m : model_components())
      if (name == m.name) mc = &m;
    ASSERT_NE(mc, nullptr);
    int64_t file_bytes = 0, stored = 0, overhead = 0, ntensors = 0, params = 0;
    for (const auto& f : component_files(model / name, mc->stem, "", mc->what)) {
      SafetensorsFile sf(f);
      file_bytes += static_cast<int64_t>(fs::file_size(f));
      uint64_t hlen = 0;
      std::memcpy(&hlen, read_file(f).data(), 8);
      overhead += 8 + static_cast<int64_t>(hlen);
      for (const auto& t : sf.tensors()) stored += static_cast<int64_t>(t.nbytes);
      ntensors += static_cast<int64_t>(sf.tensors().size());
    }
    for (const auto& f : component_files(original / name, mc->stem, variant, mc->what)) {
      SafetensorsFile sf(f);
      for (const auto& t : sf.tensors()) params += t.numel();
    }
    EXPECT_EQ(c["file_bytes"].get<int64_t>(), file_bytes);
    EXPECT_EQ(c["stored_bytes"].get<int64_t>(), stored);
    // What the file holds beyond the tensors is the header plus < 8 bytes of alignment each.
    const int64_t extra = file_bytes - stored - overhead;
    EXPECT_GE(extra, 0);
    EXPECT_LT(extra, 8 * ntensors);
    EXPECT_EQ(c["parameters"].get<int64_t>(), params) << "same parameters as the original";
    EXPECT_DOUBLE_EQ(c["bits_per_weight"].get<double>(), 8.0 * stored / params);
    EXPECT_DOUBLE_EQ(c["ratio_to_fp16"].get<double>(), stored / (2.0 * params));
    // The listed tensors add up to the candidate totals.
    int64_t cand_params = 0, cand_bytes = 0;
    for (const auto& t : c["tensors"]) {
      EXPECT_TRUE(t["candidate"].get<bool>());
      cand_params += t["parameters"].get<int64_t>();
      cand_bytes += t["stored_bytes"].get<int64_t>();
    }
    EXPECT_EQ(c["candidate_parameters"].get<int64_t>(), cand_params);
    EXPECT_EQ(c["candidate_stored_bytes"].get<int64_t>(), cand_bytes);
    total_file += file_bytes;
    total_stored += stored;
    total_params += params;
    total_cand += cand_params;
    total_cbytes += cand_bytes;
  }
  EXPECT_EQ(j["components"].size(), 3u);
  ASSERT_GT(total_cand, 0);
  EXPECT_EQ(j["total"]["file_bytes"].get<int64_t>(), total_file);
  EXPECT_EQ(j["total"]["stored_bytes"].get<int64_t>(), total_stored);
  EXPECT_EQ(j["total"]["parameters"].get<int64_t>(), total_params);
  EXPECT_EQ(j["total"]["candidate_parameters"].get<int64_t>(), total_cand);
  EXPECT_DOUBLE_EQ(j["total"]["candidate_bits_per_weight"].get<double>(),
                   8.0 * total_cbytes / total_cand);
}

struct CompressRun {
  std::string fixture;
  std::vector<std::string> flags;
  Expect expect;
};

std::string describe(const CompressRun& r) {
  std::string s = r.fixture;
  for (const auto& f : r.flags) s += " " + f;
  return s;
}

TEST_F(CompressCli, FixtureModelsAtEverySetting) {
  SDPAL_REQUIRE_FIXTURES();
  std::vector<CompressRun> runs;
  for (int nbits : {1, 2, 4, 6, 8}) {
    CompressRun r{"tiny-sd1", {"--nbits", std::to_string(nbits), "--min-elements", "1000"}, {}};
    r.expect.nbits = nbits;
    runs.push_back(r);
  }
  {
    // Group size 4 divides every candidate's output channels (conv_out has 4).
    CompressRun r{"tiny-sd1",
                  {"--nbits", "4", "--granularity", "per-grouped-channel", "--group-size", "4",
                   "--min-elements", "1000"},
                  {}};
    r.expect.group_size = 4;
    runs.push_back(r);
  }
  {
    // Default group size 16; the VAE too; 2-bit.
    CompressRun r{"tiny-sd1",
                  {"--nbits", "2", "--granularity", "per-grouped-channel", "--min-elements", "5000",
                   "--components", "unet,text_encoder,vae"},
                  {}};
    r.expect.nbits = 2;
    r.expect.group_size = 16;
    r.expect.min_elements = 5000;
    r.expect.components = {"unet", "text_encoder", "vae"};
    runs.push_back(r);
  }
  {
    CompressRun r{"tiny-sd1", {"--mode", "linear8", "--min-elements", "1000"}, {}};
    r.expect.mode = CompressMode::Linear8;
    runs.push_back(r);
  }
  {
    CompressRun r{"tiny-sd1", {"--mode", "linear8", "--asymmetric", "--min-elements", "1000"}, {}};
    r.expect.mode = CompressMode::Linear8;
    r.expect.symmetric = false;
    runs.push_back(r);
  }
  {
    // demo-fashion holds fp32 and fp16 files: the plain ones by default, the fp16 ones on request.
    CompressRun r{"demo-fashion", {"--nbits", "6", "--min-elements", "1000"}, {}};
    r.expect.nbits = 6;
    runs.push_back(r);
    CompressRun r16{"demo-fashion",
                    {"--nbits", "4", "--group-size", "4", "--min-elements", "1000", "--variant",
                     "fp16", "--components", "unet"},
                    {}};
    r16.expect.group_size = 4;
    r16.expect.variant = "fp16";
    r16.expect.components = {"unet"};
    runs.push_back(r16);
    CompressRun r8{
        "demo-fashion",
        {"--mode", "linear8", "--min-elements", "1000", "--variant", "fp16", "--threads", "1"},
        {}};
    r8.expect.mode = CompressMode::Linear8;
    r8.expect.variant = "fp16";
    runs.push_back(r8);
  }
  std::map<std::string, std::map<std::string, size_t>> before;
  for (const char* f : {"tiny-sd1", "demo-fashion"}) before[f] = tree_hash(test::model_dir(f));
  int i = 0;
  for (const auto& run : runs) {
    SCOPED_TRACE(describe(run));
    const fs::path in = test::model_dir(run.fixture);
    const fs::path out = path("out" + std::to_string(i++));
    std::vector<std::string> args = {"compress", "--model", in.string(), "--output", out.string()};
    args.insert(args.end(), run.flags.begin(), run.flags.end());
    const auto r = run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("bits per weight"), std::string::npos) << r.out;
    check_compressed_model(in, out, run.expect);
    check_inspect(out, in, run.expect.variant, run.expect.min_elements);
    fs::remove_all(out);
  }
  for (const char* f : {"tiny-sd1", "demo-fashion"})
    EXPECT_EQ(tree_hash(test::model_dir(f)), before[f]) << f << " was modified";
  EXPECT_TRUE(others({}).empty()) << "temp folders left behind";
}

TEST_F(CompressCli, InspectUncompressedModels) {
  SDPAL_REQUIRE_FIXTURES();
  for (const char* f : {"tiny-sd1", "demo-fashion"}) {
    SCOPED_TRACE(f);
    check_inspect(test::model_dir(f), test::model_dir(f), "", 1000);
    // Nothing is compressed; the text output names every component.
    const auto r = run_cli({"inspect", test::model_dir(f)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const char* c : {"unet", "vae", "text_encoder", "total"})
      EXPECT_NE(r.out.find(c), std::string::npos) << c;
    const auto j = nlohmann::json::parse(run_cli({"inspect", test::model_dir(f), "--json"}).out);
    EXPECT_EQ(j["total"]["compressed_tensors"].get<int64_t>(), 0);
  }
  // One file works too.
  const std::string file = test::model_dir("tiny-sd1") + "/vae/diffusion_pytorch_model.safetensors";
  const auto r = run_cli({"inspect", file, "--json", "--all"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  SafetensorsFile sf(file);
  EXPECT_EQ(j["components"][0]["tensors"].size(), sf.tensors().size());
  EXPECT_EQ(j["total"]["file_bytes"].get<int64_t>(), static_cast<int64_t>(sf.file_size()));
}

TEST_F(CompressCli, RefusesNonEmptyOutputUnlessForced) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string in = test::model_dir("tiny-sd1");
  fs::create_directories(path("out"));
  { std::ofstream(path("out/keep.txt")) << "mine"; }
  auto r = run_cli({"compress", "--model", in, "--output", path("out"), "--min-elements", "1000"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not empty"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(path("out/keep.txt")), "mine");
  EXPECT_EQ(others({"out"}), std::vector<std::string>{});
  r = run_cli(
      {"compress", "--model", in, "--output", path("out"), "--min-elements", "1000", "--force"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(path("out/keep.txt")));
  EXPECT_TRUE(fs::exists(path("out/unet/diffusion_pytorch_model.safetensors")));
  EXPECT_EQ(others({"out"}), std::vector<std::string>{});
  // An empty folder is fine without --force.
  fs::create_directories(path("empty"));
  r = run_cli({"compress", "--model", in, "--output", path("empty"), "--min-elements", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(path("empty/model_index.json")));
}

TEST_F(CompressCli, BadRequestsWriteNothing) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string in = test::model_dir("tiny-sd1");
  const std::string out = path("out");
  struct Bad {
    std::vector<std::string> args;
    std::vector<std::string> words;
  };
  const std::vector<Bad> bad = {
      {{"--nbits", "3"}, {"--nbits 3", "not supported"}},
      {{"--nbits", "16"}, {"--nbits 16"}},
      // conv_out has 4 output channels.
      {{"--group-size", "16", "--min-elements", "1000"},
       {"conv_out.weight", "4 output channels", "--group-size 16"}},
      {{"--granularity", "per-tensor", "--group-size", "8"}, {"--group-size"}},
      {{"--components", "unet,safety_checker"}, {"unknown component 'safety_checker'"}},
      {{"--asymmetric"}, {"--asymmetric"}},
      {{"--mode", "linear8", "--nbits", "4"}, {"linear8"}},
      {{"--variant", "fp16"}, {"fp16"}},
      // A recipe names its layers itself: the selection options would be silently ignored.
      {{"--recipe", "r.json", "--min-elements", "1000"}, {"--recipe decides", "--min-elements"}},
      {{"--recipe", "r.json", "--components", "unet"}, {"--recipe decides", "--components"}},
  };
  for (const auto& b : bad) {
    std::vector<std::string> args = {"compress", "--model", in, "--output", out};
    args.insert(args.end(), b.args.begin(), b.args.end());
    SCOPED_TRACE(b.args[0]);
    const auto r = run_cli(args);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.err.rfind("sdpal: error: ", 0), 0u) << r.err;
    for (const auto& w : b.words) EXPECT_NE(r.err.find(w), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_FALSE(fs::exists(out));
    EXPECT_TRUE(others({}).empty());
  }
  auto r = run_cli({"compress", "--model", path("nowhere"), "--output", out});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("model not found"), std::string::npos) << r.err;
  // The output may not lie inside the model (it would copy itself).
  fs::copy(in, path("model"), fs::copy_options::recursive);
  const auto before = tree_hash(path("model"));
  r = run_cli({"compress", "--model", path("model"), "--output", path("model/compressed")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("must not contain each other"), std::string::npos) << r.err;
  EXPECT_EQ(tree_hash(path("model")), before);
  // A compressed model is not compressed again.
  ASSERT_EQ(run_cli({"compress", "--model", in, "--output", path("c1"), "--min-elements", "1000"})
                .exit_code,
            0);
  r = run_cli({"compress", "--model", path("c1"), "--output", path("c2")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already compressed"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("c2")));
}

TEST_F(CompressCli, PerLayerBitsOverrideTheUniformSetting) {
  SDPAL_REQUIRE_FIXTURES();
  const std::string in = test::model_dir("tiny-sd1");
  CompressOptions o;
  o.min_elements = 1200;
  o.layer_bits = {{"conv_in", 8},                                 // below min_elements
                  {"down_blocks.2.resnets.0.conv1", kKeepLayer},  // a candidate kept
                  {"unet/time_embedding.linear_2", 6},            // component-qualified
                  {"text_encoder/text_model.encoder.layers.0.mlp.fc1", 2}};
  const CompressSummary s = compress_model(in, path("out"), o);
  std::map<std::string, int> bits;
  for (const auto& t : s.tensors) bits[t.component + "/" + t.name] = t.nbits;
  EXPECT_EQ(bits["unet/conv_in.weight"], 8);
  EXPECT_EQ(bits.count("unet/down_blocks.2.resnets.0.conv1.weight"), 0u);
  EXPECT_EQ(bits["unet/time_embedding.linear_2.weight"], 6);
  EXPECT_EQ(bits["text_encoder/text_model.encoder.layers.0.mlp.fc1.weight"], 2);
  EXPECT_EQ(bits["unet/down_blocks.2.resnets.0.conv2.weight"], 4);
  SafetensorsFile f(path("out/unet/diffusion_pytorch_model.safetensors"));
  const auto ct = read_compressed(f);
  EXPECT_EQ(ct.weights.at("conv_in.weight").nbits, 8);
  EXPECT_EQ(ct.weights.at("time_embedding.linear_2.weight").nbits, 6);
  EXPECT_EQ(ct.weights.count("down_blocks.2.resnets.0.conv1.weight"), 0u);
  EXPECT_TRUE(f.has("down_blocks.2.resnets.0.conv1.weight"));
  // The summary adds up.
  int64_t params = 0, after = 0;
  for (const auto& t : s.tensors) {
    params += t.params;
    after += t.bytes_after;
  }
  EXPECT_EQ(s.params_compressed, params);
  EXPECT_EQ(s.bytes_after, after);

  // Unknown layers, non-weights and bad values are refused before anything is written.
  auto refuse = [&](std::map<std::string, int> layers, const std::string& word) {
    CompressOptions bad;
    bad.layer_bits = std::move(layers);
    try {
      compress_model(in, path("bad"), bad);
      ADD_FAILURE() << "no error for " << word;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path("bad")));
  };
  refuse({{"down_blocks.9.nothing", 4}}, "'down_blocks.9.nothing' matches no weight");
  refuse({{"conv_in", 3}}, "per-layer setting 3");
  refuse({{"vae/decoder.conv_in", 4}}, "matches no weight");  // vae not chosen
  refuse({{"down_blocks.0.resnets.0.norm1", 4}}, "not a Linear or Conv weight");
}

// Sharded components: each shard is compressed on its own and the index maps the component
// tensors to their shard.
TEST_F(CompressCli, ShardedComponent) {
  SDPAL_REQUIRE_FIXTURES();
  const fs::path in = path("sharded");
  fs::copy(test::model_dir("tiny-sd1"), in, fs::copy_options::recursive);
  fs::permissions(in / "unet", fs::perms::owner_all, fs::perm_options::add);
  const fs::path whole = in / "unet" / "diffusion_pytorch_model.safetensors";
  std::map<std::string, std::string> weight_map;
  {
    SafetensorsFile f(whole.string());
    std::vector<TensorToWrite> parts[2];
    for (size_t i = 0; i < f.tensors().size(); ++i) {
      const auto& t = f.tensors()[i];
      parts[i % 2].push_back({t.name, t.dtype, t.shape, t.data});
      weight_map[t.name] =
          "diffusion_pytorch_model-0000" + std::to_string(i % 2 + 1) + "-of-00002.safetensors";
    }
    for (int s = 0; s < 2; ++s)
      write_safetensors(
          (in / "unet" /
           ("diffusion_pytorch_model-0000" + std::to_string(s + 1) + "-of-00002.safetensors"))
              .string(),
          parts[s], {{"format", "pt"}});
  }
  fs::remove(whole);
  {
    std::ofstream idx(in / "unet" / "diffusion_pytorch_model.safetensors.index.json");
    idx << nlohmann::json({{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}).dump(2);
  }
  auto r = run_cli({"compress", "--model", in.string(), "--output", path("out"), "--min-elements",
                    "1000", "--components", "unet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Expect x;
  x.components = {"unet"};
  check_compressed_model(in, path("out"), x);
  const auto idx = nlohmann::json::parse(
      read_file(path("out/unet/diffusion_pytorch_model.safetensors.index.json")));
  std::map<std::string, std::string> got;
  for (const auto& [k, v] : idx["weight_map"].items()) got[k] = v;
  std::map<std::string, std::string> want;
  int64_t total = 0;
  for (int s = 1; s <= 2; ++s) {
    const std::string name =
        "diffusion_pytorch_model-0000" + std::to_string(s) + "-of-00002.safetensors";
    SafetensorsFile f(path("out/unet/" + name));
    for (const auto& t : f.tensors()) {
      want[t.name] = name;
      total += static_cast<int64_t>(t.nbytes);
    }
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(idx["metadata"]["total_size"].get<int64_t>(), total);
  check_inspect(path("out"), in, "", 1000);
}

}  // namespace

namespace {

// A model folder laid out as the Hugging Face cache does: real folders, every file a symbolic
// link (relative, as the hub writes them) into a blob store beside it.
void link_tree(const fs::path& from, const fs::path& blobs, const fs::path& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from)) {
    const fs::path dst = to / e.path().filename();
    if (e.is_directory()) {
      link_tree(e.path(), blobs, dst);
      continue;
    }
    const fs::path blob = blobs / std::to_string(std::hash<std::string>{}(e.path().string()));
    fs::copy_file(e.path(), blob);
    fs::create_symlink(fs::relative(blob, to), dst);
  }
}

}  // namespace

TEST_F(CompressCli, SymlinkedModelFolderIsCopiedInsideTheOutput) {
  SDPAL_REQUIRE_FIXTURES();
  const fs::path blobs = dir_ / "store" / "blobs", snap = dir_ / "store" / "snapshots" / "abc";
  fs::create_directories(blobs);
  link_tree(test::model_dir("tiny-sd1"), blobs, snap);
  ASSERT_TRUE(fs::is_symlink(snap / "tokenizer" / "vocab.json"));
  std::set<std::string> store_before;
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "store"))
    store_before.insert(e.path().string());

  CompressOptions o;
  o.min_elements = 1200;
  compress_model(snap.string(), path("out"), o);
  // Every non-weight file is there, as a regular file with the linked file's bytes.
  for (const char* f : {"model_index.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
                        "scheduler/scheduler_config.json", "unet/config.json"}) {
    const fs::path got = fs::path(path("out")) / f;
    ASSERT_TRUE(fs::exists(got)) << f;
    EXPECT_FALSE(fs::is_symlink(got)) << f;
    EXPECT_EQ(read_file(got), read_file(snap / f)) << f;
  }
  // Nothing was written beside the links' targets, and the output generates.
  std::set<std::string> store_after;
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "store"))
    store_after.insert(e.path().string());
  EXPECT_EQ(store_after, store_before);
  const auto r = run_cli({"generate", "--model", path("out"), "--prompt", "a cat", "--steps", "2",
                          "--quiet", "--output", path("cat.png")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(CompressCli, BrokenSymlinkInTheModelIsNamed) {
  SDPAL_REQUIRE_FIXTURES();
  const fs::path blobs = dir_ / "blobs", snap = dir_ / "snap";
  fs::create_directories(blobs);
  link_tree(test::model_dir("tiny-sd1"), blobs, snap);
  fs::remove(snap / "tokenizer" / "merges.txt");
  fs::create_symlink("../../blobs/missing", snap / "tokenizer" / "merges.txt");
  CompressOptions o;
  o.min_elements = 1200;
  try {
    compress_model(snap.string(), path("out"), o);
    FAIL() << "a broken link was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("merges.txt is a broken symbolic link"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(path("out")));
}
