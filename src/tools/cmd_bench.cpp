// `sdpal bench`: times UNet forwards of a diffusers model and relates them to the analytic FLOP
// count (models/flops.h) and to this CPU's fp32 peak, measured with an AVX-512 FMA loop.
#include <immintrin.h>
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "models/config.h"
#include "models/flops.h"
#include "models/unet.h"
#include "pipeline/generate.h"
#include "pipeline/model_files.h"
#include "tools/command.h"
#include "tools/options.h"

namespace sdpal {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Options {
  std::string model, sizes, json;
  int width = 512, height = 512, batch = 2, steps = 3, warmup = 1, threads = 0;
  double nominal_peak = 320;
  bool peak_only = false;
  bool pipeline = false;
};

struct Size {
  int width, height;
};

// "512,256" or "512x768,256": square or WxH entries, multiples of 8.
std::vector<Size> parse_sizes(const Options& o) {
  std::vector<Size> r;
  if (o.sizes.empty()) {
    r.push_back({o.width, o.height});
  } else {
    std::stringstream ss(o.sizes);
    std::string item;
    while (std::getline(ss, item, ',')) {
      const size_t x = item.find('x');
      try {
        if (x == std::string::npos)
          r.push_back({std::stoi(item), std::stoi(item)});
        else
          r.push_back({std::stoi(item.substr(0, x)), std::stoi(item.substr(x + 1))});
      } catch (const std::exception&) {
        fail("bench: bad --sizes entry '" + item + "' (want N or WxH)");
      }
    }
  }
  for (const Size& s : r)
    SDPAL_CHECK(s.width >= 8 && s.height >= 8 && s.width % 8 == 0 && s.height % 8 == 0,
                "bench: image sizes must be positive multiples of 8, got " +
                    std::to_string(s.width) + "x" + std::to_string(s.height));
  return r;
}

// Sustained fp32 FLOP/s of independent AVX-512 FMA chains on `threads` threads (best of 3 runs
// of ~50 ms).
double measure_fma_peak(int threads) {
  constexpr int kChains = 16;  // enough independent FMAs to cover latency x pipes
  constexpr int64_t kIters = 20'000'000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      __m512 acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(1e-3f * c);
      const __m512 m = _mm512_set1_ps(0.9999999f), a = _mm512_set1_ps(1e-7f);
      for (int64_t i = 0; i < kIters; ++i) {
#pragma GCC unroll 16
        for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], m, a);
      }
      __m512 s = acc[0];
      for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
      alignas(64) float lanes[16];
      _mm512_store_ps(lanes, s);
      for (float v : lanes) sink += v;
    }
    const double secs = since(t0);
    if (!std::isfinite(sink)) fail("bench: FMA peak loop produced a non-finite value");
    best = std::max(best, threads * double(kIters) * kChains * 16 * 2 / secs / 1e9);
  }
  return best;
}

std::string load_average() {
  double l[3] = {0, 0, 0};
  if (getloadavg(l, 3) != 3) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f", l[0], l[1], l[2]);
  return buf;
}

// Deterministic pseudo-random inputs (the values do not matter for timing, only their range).
Tensor pseudo_random(Shape shape, uint32_t seed) {
  Tensor t(std::move(shape));
  uint32_t s = seed * 2654435761u + 1;
  for (int64_t i = 0; i < t.numel(); ++i) {
    s = s * 1664525u + 1013904223u;
    t[i] = static_cast<float>(s >> 8) / 8388608.0f - 1.0f;
  }
  return t;
}

double peak_rss_gib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / (1024.0 * 1024.0);  // ru_maxrss is in KiB on Linux
}

// A whole generation (text encoding, every UNet step with CFG, VAE decode) as `sdpal generate`
// runs it, timed by phase; the process's peak RSS afterwards is that of a full generation.
void run_pipeline(const Options& o, const Size& s) {
  const auto t0 = Clock::now();
  ModelArgs ma;
  ma.path = o.model;
  auto m = load_model(ma, false);
  const double load_s = since(t0);
  GenerateParams p;
  p.prompts.assign(o.batch > 1 ? o.batch / 2 : 1, "a photo of an astronaut riding a horse");
  p.width = s.width;
  p.height = s.height;
  p.steps = o.steps;
  p.sampler = "euler_a";
  std::vector<double> step_times;
  auto ts = Clock::now();
  p.on_step = [&](int, int, const Tensor&) {
    step_times.push_back(since(ts));
    ts = Clock::now();
  };
  const auto tg = Clock::now();
  GenerateResult r = generate(*m, p);
  const double total = since(tg);
  double steps_s = 0;
  for (double t : step_times) steps_s += t;
  // on_step fires after the step; the first interval also holds text encoding and set-up.
  const double first = step_times.empty() ? 0 : step_times[0];
  const double typical =
      step_times.size() > 1 ? (steps_s - first) / (step_times.size() - 1) : first;
  const double text_s = std::max(0.0, first - typical);
  const double decode_s = total - steps_s;
  const int f = vae_scale_factor(*m);
  const ComputeCost unet =
      unet_cost(m->unet->config(), 2 * int64_t(p.prompts.size()), s.height / f, s.width / f, 77);
  const ComputeCost vae =
      vae_decoder_cost(m->vae->config(), p.prompts.size(), s.height / f, s.width / f);
  std::printf(
      "sdpal bench --pipeline: %s, %dx%d, %zu image(s), %d euler_a steps, CFG on, %d threads\n",
      o.model.c_str(), s.width, s.height, p.prompts.size(), o.steps, omp_get_max_threads());
  std::printf(
      "load %.2f s | text encoding ~%.2f s | UNet %.2f s/step (%.1f GFLOP/s) | VAE decode "
      "%.2f s (%.1f GFLOP/s) | total %.2f s\n",
      load_s, text_s, typical, unet.flops() / 1e9 / typical, decode_s, vae.flops() / 1e9 / decode_s,
      total);
  std::printf("peak RSS of the whole generation: %.2f GiB\n", peak_rss_gib());
  (void)r;
}

void run(const Options& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
  const int threads = omp_get_max_threads();
  if (o.pipeline) {
    SDPAL_CHECK(!o.model.empty(), "bench: --model is required");
    run_pipeline(o, parse_sizes(o).front());
    return;
  }
  if (o.peak_only) {
    for (int i = 0; i < 5; ++i)
      std::printf("fp32 peak, %d threads: %.1f GFLOP/s (load average %s)\n", threads,
                  measure_fma_peak(threads), load_average().c_str());
    return;
  }
  SDPAL_CHECK(!o.model.empty(), "bench: --model is required");
  SDPAL_CHECK(o.batch >= 1 && o.steps >= 1 && o.warmup >= 0,
              "bench: --batch and --steps must be at least 1");
  const std::vector<Size> sizes = parse_sizes(o);

  const auto tl = Clock::now();
  WeightStore ws("unet");
  for (const auto& f :
       component_files(fs::path(o.model) / "unet", "diffusion_pytorch_model", "", "UNet"))
    ws.add_file(f);
  const std::string cfg_path = (fs::path(o.model) / "unet" / "config.json").string();
  const UNetConfig cfg = UNetConfig::from_json(read_json_file(cfg_path), cfg_path);
  UNet unet(ws, cfg);
  int64_t params = 0;
  for (const auto& n : ws.names()) params += shape_numel(ws.shape_of(n));
  const char* wdtype = !ws.compressed().empty()         ? "compressed"
                       : ws.count_dtype(DType::F16) > 0 ? "fp16"
                                                        : "fp32";
  const double load_s = since(tl);

  const std::string load_before = load_average();
  std::printf("sdpal bench: unet of %s (%.2f M params, %s weights, loaded in %.1f s)\n",
              o.model.c_str(), params / 1e6, wdtype, load_s);
  std::printf("batch %d, %d threads, %d warm-up + %d timed steps per size, load average %s\n",
              o.batch, threads, o.warmup, o.steps, load_before.c_str());
  std::printf(
      "fp32 peak: measured by an AVX-512 FMA loop before each size (column 'peak'), nominal "
      "%.1f GFLOP/s\n",
      o.nominal_peak);
  std::printf("%-9s %-7s %11s %9s %9s %9s %7s %7s %7s\n", "size", "latent", "GFLOP/step",
              "median s", "min s", "GFLOP/s", "peak", "%meas", "%nom");

  nlohmann::json report = {{"model", o.model},
                           {"params", params},
                           {"weights", wdtype},
                           {"batch", o.batch},
                           {"threads", threads},
                           {"steps", o.steps},
                           {"warmup", o.warmup},
                           {"peak_nominal_gflops", o.nominal_peak},
                           {"load_average_before", load_before},
                           {"results", nlohmann::json::array()}};
  const int64_t ctx_len = 77;
  for (const Size& s : sizes) {
    const int64_t h = s.height / 8, w = s.width / 8;
    const Tensor sample = pseudo_random({o.batch, cfg.in_channels, h, w}, 1);
    const Tensor context = pseudo_random({o.batch, ctx_len, cfg.cross_attention_dim[0]}, 2);
    for (int i = 0; i < o.warmup; ++i) unet.forward(sample, {500}, context);
    // The machine may be shared: the peak is taken under the same conditions as the steps.
    const double peak = measure_fma_peak(threads);
    std::vector<double> times;
    bool finite = true;
    reset_weight_expansion_seconds();
    for (int i = 0; i < o.steps; ++i) {
      const auto t0 = Clock::now();
      const Tensor out = unet.forward(sample, {500}, context);
      times.push_back(since(t0));
      for (int64_t j = 0; j < out.numel(); ++j) finite = finite && std::isfinite(out[j]);
    }
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    const double expand_s = weight_expansion_seconds() / o.steps;
    const ComputeCost cost = unet_cost(cfg, o.batch, h, w, ctx_len);
    const double gflop = cost.flops() / 1e9, rate = gflop / median;
    std::printf("%-9s %-7s %11.1f %9.3f %9.3f %9.1f %7.1f %6.1f%% %6.1f%%%s\n",
                (std::to_string(s.width) + "x" + std::to_string(s.height)).c_str(),
                (std::to_string(w) + "x" + std::to_string(h)).c_str(), gflop, median, sorted[0],
                rate, peak, 100 * rate / peak, 100 * rate / o.nominal_peak,
                finite ? "" : "  (non-finite output!)");
    std::printf("          weight expansion to fp32: %.3f s/step (%.1f%% of the step)\n", expand_s,
                100 * expand_s / median);
    std::fflush(stdout);
    report["results"].push_back({{"width", s.width},
                                 {"height", s.height},
                                 {"gflop_per_step", gflop},
                                 {"gmac_per_step", cost.macs() / 1e9},
                                 {"seconds", times},
                                 {"median_s", median},
                                 {"min_s", sorted[0]},
                                 {"gflops", rate},
                                 {"peak_measured_gflops", peak},
                                 {"pct_of_measured_peak", 100 * rate / peak},
                                 {"pct_of_nominal_peak", 100 * rate / o.nominal_peak},
                                 {"weight_expansion_s", expand_s},
                                 {"finite_output", finite}});
  }
  const double rss_gib = peak_rss_gib();
  const std::string load_after = load_average();
  std::printf("peak RSS %.2f GiB, load average after %s\n", rss_gib, load_after.c_str());
  report["peak_rss_bytes"] = static_cast<int64_t>(rss_gib * 1024 * 1024 * 1024);
  report["load_average_after"] = load_after;
  if (!o.json.empty()) {
    const std::string text = report.dump(2) + "\n";
    write_file_atomic(o.json, [&](std::FILE* f) {
      if (std::fwrite(text.data(), 1, text.size(), f) != text.size())
        fail("bench: cannot write " + o.json);
    });
  }
}

const bool registered = register_command(
    {"bench", "Time UNet steps of a diffusers model against its FLOP count and the CPU's peak",
     [](CLI::App& app) {
       auto o = std::make_shared<Options>();
       app.add_option("--model", o->model, "Diffusers model folder (required)")
           ->check(CLI::ExistingDirectory);
       app.add_option("--width", o->width, "Image width (default 512)");
       app.add_option("--height", o->height, "Image height (default 512)");
       app.add_option("--sizes", o->sizes,
                      "Comma-separated image sizes to time, N or WxH (overrides --width/--height)");
       app.add_option("--batch", o->batch, "UNet batch (default 2: one CFG step)");
       app.add_option("--steps", o->steps, "Timed UNet forwards per size (default 3)");
       app.add_option("--warmup", o->warmup, "Untimed forwards per size first (default 1)");
       app.add_option("--threads", o->threads, "OpenMP threads (default: all)");
       app.add_option("--nominal-peak", o->nominal_peak,
                      "Nominal fp32 peak in GFLOP/s (default 320: 2 cores x 2 FMA x 16 lanes x 2 "
                      "x 2.5 GHz)");
       app.add_option("--json", o->json, "Also write the numbers to this JSON file");
       app.add_flag("--pipeline", o->pipeline,
                    "Time one whole generation instead (text encoder, --steps UNet steps with CFG, "
                    "VAE decode) at the first size, and report its peak RSS");
       app.add_flag("--peak-only", o->peak_only,
                    "Only measure the fp32 FMA peak (5 times) and exit; no model needed");
       app.callback([o] { run(*o); });
     }});

}  // namespace
}  // namespace sdpal
