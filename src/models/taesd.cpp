#include "models/taesd.h"

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <vector>

#include "core/error.h"
#include "core/json_file.h"
#include "core/limits.h"
#include "kernels/activation.h"
#include "kernels/resample.h"
#include "models/layers.h"
#include "models/weights.h"

namespace sdpal {

namespace fs = std::filesystem;

// One TAESD encoder or decoder: the modules of its nn.Sequential, in order, run on NHWC data.
struct Taesd::Stack {
  enum class Role { kEncoder, kDecoder };
  // Block(x) = relu(convs[n-1](... relu(convs[0](x)) ...) + skip(x)), skip = identity unless the
  // block changes the channel count.
  struct Block {
    std::vector<Conv2d> convs;
    std::optional<Conv2d> skip;
  };
  struct Layer {
    enum class Kind { kConv, kBlock, kRelu, kUpsample } kind;
    Conv2d conv;
    Block block;
  };

  std::unique_ptr<WeightStore> weights;  // the Params below point into it
  Role role = Role::kEncoder;
  std::vector<Layer> layers;
  int64_t in_channels = 0, out_channels = 0;
  int upsample_factor = 2;
  int scale = 1;  // spatial size ratio between image and latents

  Tensor forward(Tensor x) const;
};

namespace {

// TAESD upsamples by 2 per stage; a config's factor is bounded so that the decoder's output size
// (latent side x factor^3) cannot overflow.
constexpr int64_t kMaxUpsampleFactor = 16;

using Stack = Taesd::Stack;
using Role = Stack::Role;
using Kind = Stack::Layer::Kind;

const char* role_name(Role r) { return r == Role::kEncoder ? "encoder" : "decoder"; }

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

std::optional<int> parse_index(const std::string& s) {
  int v = -1;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// What the tensor names say about one index of the nn.Sequential.
struct IndexKeys {
  bool conv = false;          // "<i>.weight": a plain convolution
  std::set<int> block_convs;  // j of "<i>.conv.<j>.weight": a Block
  bool skip = false;          // "<i>.skip.weight"
};

std::map<int, IndexKeys> scan_keys(const WeightStore& ws) {
  std::map<int, IndexKeys> keys;
  for (const std::string& name : ws.names()) {
    const size_t dot = name.find('.');
    const std::optional<int> i =
        dot == std::string::npos ? std::nullopt : parse_index(name.substr(0, dot));
    if (!i) fail(ws.label() + ": unexpected tensor '" + name + "' in " + ws.source());
    const std::string rest = name.substr(dot + 1);
    IndexKeys& k = keys[*i];
    if (rest == "weight") {
      k.conv = true;
    } else if (rest == "skip.weight") {
      k.skip = true;
    } else if (starts_with(rest, "conv.") && ends_with(rest, ".weight")) {
      const std::optional<int> j = parse_index(rest.substr(5, rest.size() - 5 - 7));
      if (!j) fail(ws.label() + ": unexpected tensor '" + name + "' in " + ws.source());
      k.block_convs.insert(*j);
    }
    // Biases (and anything else) are claimed while loading; leftovers are reported afterwards.
  }
  return keys;
}

// A k x k convolution (k odd, 'same' padding) whose output channels come from its weight.
Conv2d load_conv(const WeightStore& ws, const std::string& path, int64_t in, int stride,
                 bool bias) {
  const Shape& w = ws.shape_of(join(path, "weight"));
  // Bounded before narrowing to int: TAESD's kernels are 3x3 or 1x1.
  if (w.size() != 4 || w[2] != w[3] || w[2] % 2 == 0 || w[2] > 15)
    fail(ws.label() + ": tensor '" + path + ".weight' in " + ws.source() + " has shape " +
         shape_str(w) + ", not an odd square convolution kernel (at most 15x15)");
  Conv2d c;
  c.load(ws, path, in, w[0], static_cast<int>(w[2]), stride, -1, bias);
  return c;
}

Stack::Block load_block(const WeightStore& ws, const std::string& path, const IndexKeys& k,
                        int64_t in) {
  // taesd.py's Block.conv is Sequential(conv, ReLU, conv, ReLU, conv): convs at even indices.
  int expect = 0;
  for (int j : k.block_convs) {
    if (j != expect)
      fail(ws.label() + ": block '" + path + "' in " + ws.source() + " lacks '" + path + ".conv." +
           std::to_string(expect) + ".weight'");
    expect += 2;
  }
  Stack::Block b;
  int64_t ch = in;
  for (int j : k.block_convs) {
    b.convs.push_back(load_conv(ws, path + ".conv." + std::to_string(j), ch, 1, true));
    ch = b.convs.back().p.cout;
  }
  if (k.skip) {
    b.skip.emplace();
    b.skip->load(ws, path + ".skip", in, ch, 1, 1, 0, false);
  } else if (ch != in) {
    fail(ws.label() + ": block '" + path + "' in " + ws.source() + " maps " + std::to_string(in) +
         " to " + std::to_string(ch) + " channels but has no '" + path + ".skip.weight'");
  }
  return b;
}

std::shared_ptr<const Stack> build_stack(std::unique_ptr<WeightStore> ws, Role role,
                                         int upsample_factor) {
  auto s = std::make_shared<Stack>();
  s->role = role;
  s->upsample_factor = upsample_factor;
  const std::map<int, IndexKeys> keys = scan_keys(*ws);
  if (keys.empty()) fail(ws->label() + ": no tensors in " + ws->source());
  const int last = keys.rbegin()->first;
  int64_t ch = -1;  // channels flowing into the next layer
  for (int i = 0; i <= last; ++i) {
    const std::string path = std::to_string(i);
    auto it = keys.find(i);
    if (it == keys.end()) {
      // A parameter-free module. Only the decoder has them: taesd.py's leading Clamp (applied by
      // decode() for both layouts), the ReLU after the input convolution, and the Upsample
      // before each upsampling stage's convolution.
      const bool after_input_conv = s->layers.size() == 1 && s->layers[0].kind == Kind::kConv;
      auto next = keys.find(i + 1);
      const bool before_conv = next != keys.end() && next->second.conv && !s->layers.empty();
      if (role == Role::kDecoder && i == 0 && s->layers.empty()) continue;
      if (role == Role::kDecoder && (after_input_conv || before_conv)) {
        s->layers.push_back({after_input_conv ? Kind::kRelu : Kind::kUpsample, {}, {}});
        if (!after_input_conv) s->scale *= upsample_factor;
        continue;
      }
      fail(ws->label() + ": no tensors for layer " + path + " in " + ws->source() +
           " (missing weights?)");
    }
    const IndexKeys& k = it->second;
    Stack::Layer layer{Kind::kConv, {}, {}};
    if (k.conv) {
      if (!k.block_convs.empty() || k.skip)
        fail(ws->label() + ": layer " + path + " in " + ws->source() +
             " has both convolution and block tensors");
      const bool first = s->layers.empty(), final = i == last;
      // Interior encoder convolutions halve the resolution; the input and output convolutions
      // always have a bias, the others have one only if stored.
      const int stride = role == Role::kEncoder && !first && !final ? 2 : 1;
      const bool bias = first || final || ws->has(path + ".bias");
      if (first) ch = ws->shape_of(path + ".weight").at(1);
      layer.conv = load_conv(*ws, path, ch, stride, bias);
      ch = layer.conv.p.cout;
      if (stride == 2) s->scale *= 2;
      if (first) s->in_channels = layer.conv.in;
    } else {
      if (k.block_convs.empty())
        fail(ws->label() + ": layer " + path + " in " + ws->source() + " has no weight tensor");
      if (s->layers.empty())
        fail(ws->label() + ": " + ws->source() + " does not start with a convolution");
      layer.kind = Kind::kBlock;
      layer.block = load_block(*ws, path, k, ch);
      ch = layer.block.convs.back().p.cout;
    }
    s->layers.push_back(std::move(layer));
  }
  if (s->layers.back().kind != Kind::kConv)
    fail(ws->label() + ": " + ws->source() + " does not end with a convolution");
  s->out_channels = ch;
  const std::vector<std::string> unused = ws->unused();
  if (!unused.empty())
    fail(ws->label() + ": unexpected tensor '" + unused[0] + "' in " + ws->source() +
         " (not part of a TAESD " + role_name(role) + ")");
  s->weights = std::move(ws);
  return s;
}

Tensor run_block(const Stack::Block& b, const Tensor& x) {
  Tensor h = b.convs[0](x);
  for (size_t j = 1; j < b.convs.size(); ++j) {
    k::relu_(h);
    h = b.convs[j](h);
  }
  if (b.skip)
    k::add_(h, (*b.skip)(x));
  else
    k::add_(h, x);
  k::relu_(h);
  return h;
}

// A taesd.py file: one nn.Sequential, keys "<index>....".
std::shared_ptr<const Stack> load_taesd_file(const std::string& file, Role role) {
  auto ws = std::make_unique<WeightStore>(std::string("TAESD ") + role_name(role));
  ws->add_file(file);
  return build_stack(std::move(ws), role, 2);
}

// The options of a diffusers AutoencoderTiny config.json that change the computation.
int diffusers_upsample_factor(const fs::path& config) {
  if (!fs::exists(config)) return 2;
  const nlohmann::json j = parse_json_text(
      read_text_file(config.string(), limits::kMaxJsonFileBytes, "TAESD config"), config.string());
  if (!j.is_object()) fail(config.string() + ": not a JSON object");
  auto check = [&](const char* key, const char* supported) {
    if (j.contains(key) && j[key] != supported)
      fail(config.string() + ": " + key + " " + j[key].dump() + " is not supported (only \"" +
           supported + "\")");
  };
  check("act_fn", "relu");
  check("upsample_fn", "nearest");
  if (!j.contains("upsampling_scaling_factor")) return 2;
  // Checked as a number: get<int>() of 1e30 is undefined.
  const auto& f = j["upsampling_scaling_factor"];
  if (!f.is_number())
    fail(config.string() + ": upsampling_scaling_factor " + f.dump() + " is not a number");
  return static_cast<int>(integral_in_range(f.get<double>(), 1, kMaxUpsampleFactor,
                                            config.string() + ": upsampling_scaling_factor"));
}

}  // namespace

Tensor Stack::forward(Tensor x) const {
  for (const Layer& l : layers) {
    switch (l.kind) {
      case Kind::kConv:
        x = l.conv(x);
        break;
      case Kind::kBlock:
        x = run_block(l.block, x);
        break;
      case Kind::kRelu:
        k::relu_(x);
        break;
      case Kind::kUpsample:
        x = k::upsample_nearest(x, x.dim(1) * upsample_factor, x.dim(2) * upsample_factor);
        break;
    }
  }
  return x;
}

Taesd Taesd::load(const std::string& path) {
  const std::string enc_suffix = "_encoder.safetensors", dec_suffix = "_decoder.safetensors";
  Taesd t;
  auto load_diffusers = [&t](const std::string& file, int upsample_factor) {
    bool enc = false, dec = false;
    {
      SafetensorsFile probe(file);
      for (const TensorView& v : probe.tensors()) {
        enc |= starts_with(v.name, "encoder.layers.");
        dec |= starts_with(v.name, "decoder.layers.");
        if (!starts_with(v.name, "encoder.layers.") && !starts_with(v.name, "decoder.layers."))
          fail("TAESD: unexpected tensor '" + v.name + "' in " + file +
               " (not a diffusers AutoencoderTiny)");
      }
    }
    for (Role role : {Role::kEncoder, Role::kDecoder}) {
      if (!(role == Role::kEncoder ? enc : dec)) continue;
      const std::string prefix = std::string(role_name(role)) + ".layers.";
      auto ws = std::make_unique<WeightStore>(std::string("TAESD ") + role_name(role));
      ws->add_file(file, [&prefix](const std::string& n) -> std::optional<std::string> {
        if (!starts_with(n, prefix)) return std::nullopt;
        return n.substr(prefix.size());
      });
      (role == Role::kEncoder ? t.encoder_ : t.decoder_) =
          build_stack(std::move(ws), role, upsample_factor);
    }
  };
  auto load_pair = [&](const std::string& prefix) {
    const std::string enc = prefix + enc_suffix, dec = prefix + dec_suffix;
    if (!fs::exists(enc) && !fs::exists(dec))
      fail("TAESD: no weights: neither " + enc + " nor " + dec + " exists");
    if (fs::exists(enc)) t.encoder_ = load_taesd_file(enc, Role::kEncoder);
    if (fs::exists(dec)) t.decoder_ = load_taesd_file(dec, Role::kDecoder);
  };

  if (fs::is_directory(path)) {
    const fs::path dir(path);
    for (const char* name :
         {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"}) {
      if (fs::exists(dir / name)) {
        load_diffusers((dir / name).string(), diffusers_upsample_factor(dir / "config.json"));
        return t;
      }
    }
    std::set<std::string> prefixes;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string n = e.path().filename().string();
      for (const std::string& suffix : {enc_suffix, dec_suffix})
        if (ends_with(n, suffix)) prefixes.insert(n.substr(0, n.size() - suffix.size()));
    }
    if (prefixes.empty())
      fail("TAESD: " + path + " holds neither diffusion_pytorch_model.safetensors nor <name>" +
           enc_suffix + " / <name>" + dec_suffix);
    if (prefixes.size() > 1) {
      std::string names;
      for (const std::string& p : prefixes) names += (names.empty() ? "" : ", ") + p;
      fail("TAESD: " + path + " holds several weight sets (" + names +
           "); pass <folder>/<name> to choose one");
    }
    load_pair((dir / *prefixes.begin()).string());
  } else if (ends_with(path, ".safetensors")) {
    if (!fs::exists(path)) fail("TAESD: " + path + " does not exist");
    bool diffusers = false, has_index0 = false;
    {
      SafetensorsFile probe(path);
      for (const TensorView& v : probe.tensors()) {
        diffusers |=
            starts_with(v.name, "encoder.layers.") || starts_with(v.name, "decoder.layers.");
        has_index0 |= starts_with(v.name, "0.");
      }
    }
    if (diffusers) {
      load_diffusers(path, diffusers_upsample_factor(fs::path(path).parent_path() / "config.json"));
    } else {
      // A taesd.py decoder starts with the parameter-free Clamp, so it has no "0." tensors.
      const Role role = has_index0 ? Role::kEncoder : Role::kDecoder;
      (role == Role::kEncoder ? t.encoder_ : t.decoder_) = load_taesd_file(path, role);
    }
  } else {
    load_pair(path);
  }
  return t;
}

int64_t Taesd::latent_channels() const {
  return encoder_ ? encoder_->out_channels : decoder_ ? decoder_->in_channels : 0;
}

int Taesd::spatial_scale() const {
  return encoder_ ? encoder_->scale : decoder_ ? decoder_->scale : 1;
}

Tensor Taesd::encode(const Tensor& image01_nchw) const {
  SDPAL_CHECK(encoder_, "TAESD: encode() needs the encoder weights, which were not loaded");
  SDPAL_CHECK(image01_nchw.ndim() == 4 && image01_nchw.dim(1) == encoder_->in_channels,
              "TAESD encode: expected an image [B, " + std::to_string(encoder_->in_channels) +
                  ", H, W], got " + shape_str(image01_nchw.shape()));
  return nhwc_to_nchw(encoder_->forward(nchw_to_nhwc(image01_nchw)));
}

Tensor Taesd::decode(const Tensor& latents_nchw) const {
  SDPAL_CHECK(decoder_, "TAESD: decode() needs the decoder weights, which were not loaded");
  SDPAL_CHECK(latents_nchw.ndim() == 4 && latents_nchw.dim(1) == decoder_->in_channels,
              "TAESD decode: expected latents [B, " + std::to_string(decoder_->in_channels) +
                  ", h, w], got " + shape_str(latents_nchw.shape()));
  // Clamp: tanh(x / 3) * 3 softly limits the latents to (-3, 3).
  Tensor x = nchw_to_nhwc(latents_nchw);
  float* d = x.data();
  for (int64_t i = 0; i < x.numel(); ++i) d[i] = std::tanh(d[i] / 3.f) * 3.f;
  return nhwc_to_nchw(decoder_->forward(std::move(x)));
}

}  // namespace sdpal
