// Model configuration files of a diffusers folder, read by the readers the loader uses. The first
// input byte picks the file, the rest is its content:
//   0 unet/config.json (read_json_file + UNetConfig::from_json, then unet_cost)
//   1 vae/config.json (VaeConfig::from_json, vae_decoder_cost)
//   2 text_encoder/config.json (ClipTextConfig::from_json)
//   3 scheduler/scheduler_config.json (load_scheduler_config + make_scheduler for every sampler,
//     set_timesteps, one step)
//   4 a TAESD folder's config.json (Taesd::load reads it before the weights)
//   5 model_index.json and the shard index of a component (component_files: the shard names)
// Invariants: accepted configs have positive sizes and finite costs; a scheduler gives the asked
// number of finite timesteps, finite non-negative sigmas and a finite step; shard files lie in
// the component folder.
#include <cmath>

#include "fuzz/fuzz_support.h"
#include "models/clip_text.h"
#include "models/config.h"
#include "models/flops.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "models/vae.h"
#include "pipeline/model_files.h"
#include "pipeline/scheduler.h"

using namespace sdpal;

namespace {

void check_cost(const ComputeCost& c) {
  FUZZ_CHECK(std::isfinite(c.macs()) && c.macs() >= 0, "cost " + std::to_string(c.macs()));
}

void unet_config(const std::string& path) {
  const UNetConfig c = UNetConfig::from_json(read_json_file(path), path);
  FUZZ_CHECK(c.in_channels > 0 && c.out_channels > 0 && c.norm_num_groups > 0, "sizes");
  for (int64_t b : c.block_out_channels)
    FUZZ_CHECK(b > 0, "block_out_channels entry " + std::to_string(b));
  FUZZ_CHECK(c.time_embed_dim == 4 * c.block_out_channels[0], "time_embed_dim");
  check_cost(unet_cost(c, 1, 8, 8));
}

void vae_config(const std::string& path) {
  const VaeConfig c = VaeConfig::from_json(read_json_file(path), path);
  FUZZ_CHECK(c.latent_channels > 0 && c.layers_per_block > 0 && !c.block_out_channels.empty(),
             "sizes");
  for (int64_t b : c.block_out_channels) FUZZ_CHECK(b > 0, "block_out_channels entry");
  check_cost(vae_decoder_cost(c, 1, 8, 8));
}

void text_config(const std::string& path) {
  const ClipTextConfig c = ClipTextConfig::from_json(read_json_file(path), path);
  FUZZ_CHECK(c.hidden > 0 && c.heads > 0 && c.layers >= 0 && c.vocab > 0 && c.positions > 0,
             "sizes");
}

void scheduler_config(const std::string& path, int steps) {
  const nlohmann::json cfg = load_scheduler_config(path);
  for (const char* name : {"ddim", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_sde", "pndm"}) {
    for (bool karras : {false, true}) {
      SchedulerOptions o;
      o.name = name;
      o.karras = karras && std::string(name).find("euler") != 0 && std::string(name) != "ddim" &&
                 std::string(name) != "pndm";
      if (karras && !o.karras) continue;
      FUZZ_EXPECT_ERRORS({
        auto s = make_scheduler(o, cfg);
        s->set_timesteps(steps);
        const size_t want = static_cast<size_t>(steps) + (o.name == "pndm" && steps > 1 ? 1 : 0);
        FUZZ_CHECK(s->timesteps().size() == want,
                   std::string(name) + ": " + std::to_string(s->timesteps().size()) +
                       " timesteps for " + std::to_string(steps) + " steps");
        for (double t : s->timesteps())
          FUZZ_CHECK(std::isfinite(t), std::string(name) + ": timestep");
        for (double sg : s->sigmas())
          FUZZ_CHECK(std::isfinite(sg) && sg >= 0,
                     std::string(name) + ": sigma " + std::to_string(sg));
        FUZZ_CHECK(std::isfinite(s->init_noise_sigma()), std::string(name) + ": init sigma");
        Tensor x({1, 1, 1, 2}), eps({1, 1, 1, 2}), noise({1, 1, 1, 2});
        x.data()[0] = 0.5f, x.data()[1] = -1.f;
        eps.data()[0] = 0.1f, eps.data()[1] = 0.2f;
        noise.data()[0] = 1.f, noise.data()[1] = -0.3f;
        const Tensor in = s->scale_model_input(x, 0);
        const Tensor out = s->step(eps, 0, x, s->needs_noise() ? &noise : nullptr);
        for (int i = 0; i < 2; ++i)
          FUZZ_CHECK(std::isfinite(in.data()[i]) && std::isfinite(out.data()[i]),
                     std::string(name) + ": step gave a non-finite value");
      });
    }
  }
}

void shard_index(const fuzz::ScratchDir& dir, std::string_view index) {
  dir.write("model/model_index.json", index);
  dir.write("model/unet/diffusion_pytorch_model.safetensors.index.json", index);
  const auto unet = dir.path() / "model" / "unet";
  const auto files = component_files(unet, "diffusion_pytorch_model", "", "UNet");
  for (const std::string& f : files) {
    const auto rel = std::filesystem::path(f).lexically_normal().lexically_relative(unet);
    FUZZ_CHECK(!rel.empty() && rel.begin()->string() != ".." && !rel.has_parent_path() &&
                   rel.filename() != "." && rel.filename() != "..",
               "shard file outside the component folder: " + f);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const fuzz::ScratchDir& dir = fuzz::scratch();
  dir.clear();
  const std::string_view body = fuzz::as_text(data + 1, size - 1);
  FUZZ_EXPECT_ERRORS({
    switch (data[0] % 6) {
      case 0:
        unet_config(dir.write("config.json", body));
        break;
      case 1:
        vae_config(dir.write("config.json", body));
        break;
      case 2:
        text_config(dir.write("config.json", body));
        break;
      case 3:
        scheduler_config(dir.write("scheduler_config.json", body), 1 + data[0] / 6 % 30);
        break;
      case 4:
        dir.write("taesd/config.json", body);
        dir.write("taesd/diffusion_pytorch_model.safetensors", "");
        Taesd::load((dir.path() / "taesd").string());
        break;
      default:
        shard_index(dir, body);
        break;
    }
  });
  return 0;
}
