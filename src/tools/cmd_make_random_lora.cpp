// `sdpal make-random-lora`: a kohya-format LoRA with random weights for a model's architecture
// (the layers kohya's trainer adapts: every Linear of the UNet's transformer blocks, their
// proj_in/proj_out, and the text encoder's attention and MLP; with --conv also the UNet's
// convolutions, as LoCon does), for benchmarks and tests without downloading one.
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/safetensors.h"
#include "pipeline/sd_model.h"
#include "tools/command.h"

namespace sdpal {
namespace {

struct Options {
  std::string model, output;
  int rank = 32;
  uint64_t seed = 0;
  bool conv = false;
};

// Uniform in [-a, a] from a xorshift stream (reproducible, no dependency on std distributions).
struct Uniform {
  uint64_t s;
  float operator()(float a) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return a * (static_cast<float>(s >> 40) / static_cast<float>(1 << 24) * 2.f - 1.f);
  }
};

std::string flat(std::string s) {
  for (char& c : s)
    if (c == '.') c = '_';
  return s;
}

void run(const Options& o) {
  SDPAL_CHECK(o.rank >= 1 && o.rank <= 1024, "make-random-lora: --rank must be 1 to 1024");
  SDPAL_CHECK(!o.output.empty(), "make-random-lora: --output is required");
  LoadOptions lo;
  lo.load_vae_encoder = false;
  auto m = StableDiffusion::load(o.model, lo);
  Uniform rng{o.seed * 0x9E3779B97F4A7C15ull + 88172645463325252ull};
  std::vector<std::vector<uint16_t>> data;
  std::vector<std::pair<std::string, Shape>> shapes;
  auto add = [&](const std::string& name, const Shape& shape, float a) {
    std::vector<uint16_t> v(shape_numel(shape));
    for (auto& x : v) x = float_to_half(rng(a));
    data.push_back(std::move(v));
    shapes.emplace_back(name, shape);
  };
  std::vector<float> alphas;
  auto adapt = [&](const std::string& prefix, const WeightLayer* l, const Shape& w) {
    const int64_t r = std::min<int64_t>(o.rank, std::min(w[0], w[1]));
    const bool conv = w.size() == 4;
    const Shape down = conv ? Shape{r, w[1], w[2], w[3]} : Shape{r, w[1]};
    const Shape up = conv ? Shape{w[0], r, 1, 1} : Shape{w[0], r};
    const std::string key = prefix + flat(l->name);
    add(key + ".lora_down.weight", down, 1.f / std::sqrt(float(shape_numel(down) / r)));
    add(key + ".lora_up.weight", up, 0.5f / std::sqrt(float(r)));
    alphas.push_back(static_cast<float>(r) / 2);
    shapes.emplace_back(key + ".alpha", Shape{});
  };
  int64_t layers = 0;
  for (const WeightLayer* l : m->unet->weight_layers()) {
    const auto* lin = dynamic_cast<const Linear*>(l);
    const auto* conv = dynamic_cast<const Conv2d*>(l);
    const bool transformer = l->name.find("attentions") != std::string::npos;
    if (lin && transformer) {
      adapt("lora_unet_", l, lin->w.shape());
      ++layers;
    } else if (conv && o.conv && conv->w.shape()[1] >= 4) {
      adapt("lora_unet_", l, conv->w.shape());
      ++layers;
    }
  }
  for (const WeightLayer* l : m->text_encoder->weight_layers()) {
    adapt("lora_te_", l, dynamic_cast<const Linear*>(l)->w.shape());
    ++layers;
  }
  std::vector<TensorToWrite> out;
  size_t d = 0, a = 0;
  for (const auto& [name, shape] : shapes) {
    if (shape.empty())
      out.push_back({name, DType::F32, {}, &alphas[a++]});
    else
      out.push_back({name, DType::F16, shape, data[d++].data()});
  }
  write_safetensors(o.output, out, {{"ss_network_dim", std::to_string(o.rank)}});
  std::printf("wrote %s: %lld layers, rank %d, %.1f MB\n", o.output.c_str(),
              static_cast<long long>(layers), o.rank, std::filesystem::file_size(o.output) / 1e6);
}

const bool registered = register_command(
    {"make-random-lora", "Write a kohya-format LoRA with random weights for a model's architecture",
     [](CLI::App& app) {
       auto o = std::make_shared<Options>();
       app.add_option("--model", o->model, "The model it is for (diffusers folder or single file)")
           ->required();
       app.add_option("--output", o->output, "Output .safetensors file")->required();
       app.add_option("--rank", o->rank, "Rank (default 32)");
       app.add_option("--seed", o->seed, "Random seed (default 0)");
       app.add_flag("--conv", o->conv, "Also adapt the UNet's convolutions (LoCon)");
       app.callback([o] { run(*o); });
     }});

}  // namespace
}  // namespace sdpal
