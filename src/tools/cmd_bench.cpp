// `sdpal bench`: times UNet forwards of a diffusers model and relates them to the analytic FLOP
// count (models/flops.h) and to this CPU's fp32 peak, measured at the kernel level it runs at.
#include <malloc.h>
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "compression/quality.h"
#include "core/atomic_file.h"
#include "core/cpu.h"
#include "core/error.h"
#include "core/limits.h"
#include "core/profile.h"
#include "kernels/packed_gemm.h"
#include "models/config.h"
#include "models/flops.h"
#include "models/int8_calibration.h"
#include "models/lora.h"
#include "models/unet.h"
#include "pipeline/generate.h"
#include "pipeline/model_files.h"
#include "tools/bench_peak.h"
#include "tools/bench_weights.h"
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
  std::string model, sizes, json, configs, baseline, lora;
  std::string weights = "as-is";
  bool int8 = false;
  double tome = 0;
  int64_t min_elements = 100000;
  int tome_max_downsample = 1;
  std::string int8_calibration;
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
  ma.int8 = o.int8;
  ma.int8_calibration = o.int8_calibration;
  auto m = load_model(ma, false);
  const double load_s = since(t0);
  GenerateParams p;
  p.prompts.assign(o.batch > 1 ? o.batch / 2 : 1, "a photo of an astronaut riding a horse");
  p.width = s.width;
  p.height = s.height;
  p.steps = o.steps;
  p.sampler = "euler_a";
  p.tome = {.ratio = o.tome, .max_downsample = o.tome_max_downsample};
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

// One representation to time: weights, int8 compute, token merging.
struct BenchConfig {
  std::string label;
  WeightSpec weights;
  bool int8 = false;
  double tome = 0;
  bool fused_lut = true;  // compressed weights expanded inside the GEMM/conv packing
  bool lora = false, lora_merge = false;  // --lora file as low-rank branches / merged
};

// "fp32,int8,int8+tome0.4,pal4": comma-separated configurations, each a '+'-joined list of one
// weight form (see WeightSpec), "int8", "tomeR", "unfused" (compressed weights expanded whole,
// then oneDNN, instead of the fused packed GEMM/conv), "lora" (the --lora file as low-rank
// branches) and "loramerge" (merged into the weights where they are dense).
std::vector<BenchConfig> parse_configs(const Options& o) {
  std::vector<BenchConfig> r;
  auto parse_one = [](const std::string& text) {
    BenchConfig c;
    c.label = text;
    std::stringstream ss(text);
    std::string tok;
    bool have_weights = false;
    while (std::getline(ss, tok, '+')) {
      if (tok == "int8") {
        c.int8 = true;
      } else if (tok == "lora" || tok == "loramerge") {
        c.lora = true;
        c.lora_merge = tok == "loramerge";
      } else if (tok == "unfused") {
        c.fused_lut = false;
      } else if (tok.rfind("tome", 0) == 0) {
        try {
          size_t used = 0;
          c.tome = std::stod(tok.substr(4), &used);
          if (used != tok.size() - 4) throw std::invalid_argument(tok);
        } catch (const std::exception&) {
          fail("bench: bad token-merging ratio in '" + tok + "' (want e.g. tome0.4)");
        }
        SDPAL_CHECK(c.tome >= 0 && c.tome < 1,
                    "bench: token-merging ratio must be in [0, 1), got '" + tok + "'");
      } else {
        SDPAL_CHECK(!have_weights, "bench: two weight forms in '" + text + "'");
        c.weights = WeightSpec::parse(tok);
        have_weights = true;
      }
    }
    return c;
  };
  if (!o.configs.empty()) {
    std::stringstream ss(o.configs);
    std::string item;
    while (std::getline(ss, item, ',')) r.push_back(parse_one(item));
  } else {
    std::string label = o.weights;
    if (o.int8) label += "+int8";
    if (o.tome > 0) label += "+tome" + std::to_string(o.tome).substr(0, 4);
    r.push_back(parse_one(label));
  }
  SDPAL_CHECK(!r.empty(), "bench: --configs is empty");
  return r;
}

// Peak RSS since the last reset_peak_rss(), from /proc (VmHWM); falls back to getrusage.
void reset_peak_rss() {
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);  // 5: reset the peak resident set size to the current one
    std::fclose(f);
  }
}
double current_peak_rss_gib() {
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    long kb = -1;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    std::fclose(f);
    if (kb >= 0) return kb / (1024.0 * 1024.0);
  }
  return peak_rss_gib();
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Seconds per step of an external baseline (e.g. bench/pytorch_unet.py --json) by image size.
struct Baseline {
  std::string label;
  std::map<std::pair<int, int>, double> seconds;
};
Baseline read_baseline(const std::string& path) {
  Baseline b;
  if (path.empty()) return b;
  const nlohmann::json j = read_json_file(path);
  try {
    b.label = j.value("label", j.value("runtime", std::string("baseline")));
    for (const auto& r : j.at("results")) {
      // {"width", "height"} or {"size": "WxH"} (bench/pytorch_unet.py)
      int w = 0, h = 0;
      if (r.contains("size")) {
        const std::string size = r.at("size").get<std::string>();
        SDPAL_CHECK(std::sscanf(size.c_str(), "%dx%d", &w, &h) == 2,
                    "bench: " + path + ": bad size '" + size + "' (want WxH)");
      } else {
        // Checked before narrowing: get<int>() of 1e30 is undefined.
        for (const auto& [key, out] : {std::pair{"width", &w}, std::pair{"height", &h}}) {
          const auto& v = r.at(key);
          SDPAL_CHECK(v.is_number_integer() && v.get<int64_t>() >= 8 &&
                          v.get<int64_t>() <= limits::kMaxImageSizePixels,
                      "bench: " + path + ": " + key + " " + v.dump() +
                          " is not an integer in [8, " +
                          std::to_string(limits::kMaxImageSizePixels) + "]");
          *out = static_cast<int>(v.get<int64_t>());
        }
      }
      b.seconds[{w, h}] = r.at("median_s").get<double>();
    }
  } catch (const nlohmann::json::exception& e) {
    fail("bench: " + path + " is not a baseline file (want {\"label\", \"results\": [{\"width\", " +
         "\"height\" or \"size\": \"WxH\", \"median_s\"}]}): " + e.what());
  }
  return b;
}

struct Peaks {
  double fp32 = 0, int8 = 0;
};

// Prints and returns the per-op-type breakdown of the timed steps.
nlohmann::json report_breakdown(const prof::Totals& t, int steps, double step_s, const Peaks& pk) {
  nlohmann::json j = nlohmann::json::object();
  double counted = 0;
  for (int i = 0; i < prof::kOps; ++i) {
    const auto op = static_cast<prof::Op>(i);
    const prof::OpTotals& x = t[i];
    counted += x.seconds;
    if (x.calls == 0) continue;
    const double s = x.seconds / steps;
    const bool is_int8 = op == prof::Op::conv_int8 || op == prof::Op::gemm_int8;
    const double rate = x.flops > 0 ? x.flops / x.seconds / 1e9 : 0;
    const double peak = is_int8 ? pk.int8 : pk.fp32;
    std::printf("    %-17s %8.3f s %6.1f%%", std::string(prof::op_name(op)).c_str(), s,
                100 * s / step_s);
    if (rate > 0 && peak > 0)
      std::printf(" %8.1f G%s/s %5.1f%% of %s peak", rate, is_int8 ? "OP" : "FLOP",
                  100 * rate / peak, is_int8 ? "int8" : "fp32");
    else if (rate > 0)
      std::printf(" %8.1f G%s/s (no %s peak measured)", rate, is_int8 ? "OP" : "FLOP",
                  is_int8 ? "int8" : "fp32");
    std::printf("\n");
    j[std::string(prof::op_name(op))] = {
        {"seconds_per_step", s}, {"gflops", rate}, {"calls_per_step", double(x.calls) / steps}};
  }
  const double other = step_s - counted / steps;
  std::printf("    %-17s %8.3f s %6.1f%%  (time embedding, copies, framework)\n", "other", other,
              100 * other / step_s);
  j["other"] = {{"seconds_per_step", other}};
  return j;
}

void run(const Options& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
  const int threads = omp_get_max_threads();
  if (o.pipeline) {
    SDPAL_CHECK(!o.model.empty(), "bench: --model is required");
    run_pipeline(o, parse_sizes(o).front());
    return;
  }
  const std::string level = cpu::level_name(cpu::level());
  std::printf("kernel level %s on %s; fp32 peak: %s; int8 peak: %s\n", level.c_str(),
              cpu::model_name().c_str(), fma_peak_name().c_str(), int8_peak_name().c_str());
  if (o.peak_only) {
    for (int i = 0; i < 5; ++i)
      std::printf("peaks, %d threads: fp32 %.1f GFLOP/s, int8 %.1f GOP/s (load average %s)\n",
                  threads, measure_fma_peak(threads), measure_int8_peak(threads),
                  load_average().c_str());
    return;
  }
  SDPAL_CHECK(!o.model.empty(), "bench: --model is required");
  SDPAL_CHECK(o.batch >= 1 && o.steps >= 1 && o.warmup >= 0,
              "bench: --batch and --steps must be at least 1");
  const std::vector<Size> sizes = parse_sizes(o);
  const std::vector<BenchConfig> configs = parse_configs(o);
  const Baseline baseline = read_baseline(o.baseline);
  const std::string cfg_path = (fs::path(o.model) / "unet" / "config.json").string();
  const UNetConfig cfg = UNetConfig::from_json(read_json_file(cfg_path), cfg_path);

  const std::string load_before = load_average();
  std::printf(
      "sdpal bench: unet of %s, batch %d, %d threads, %d warm-up + %d timed steps, "
      "load average %s\n",
      o.model.c_str(), o.batch, threads, o.warmup, o.steps, load_before.c_str());
  std::printf(
      "peaks are measured before each row (%s loop; nominal %.1f GFLOP/s); GFLOP/s "
      "of a step counts the dense model's FLOPs (token merging saves some of them)\n",
      fma_peak_name().c_str(), o.nominal_peak);
  nlohmann::json report = {{"model", o.model},
                           {"batch", o.batch},
                           {"threads", threads},
                           {"steps", o.steps},
                           {"warmup", o.warmup},
                           {"peak_nominal_gflops", o.nominal_peak},
                           {"level", level},
                           {"cpu", cpu::model_name()},
                           {"fp32_peak_loop", fma_peak_name()},
                           {"int8_peak_loop", int8_peak_name()},
                           {"load_average_before", load_before},
                           {"results", nlohmann::json::array()}};
  if (!baseline.label.empty()) report["baseline"] = baseline.label;
  const int64_t ctx_len = 77;
  std::map<std::pair<int, int>, Tensor> reference;  // first configuration's outputs
  std::map<std::pair<int, int>, double> first_s;
  std::vector<std::string> rows;
  for (const BenchConfig& c : configs) {
    const auto tl = Clock::now();
    BenchUNetWeights weights(o.model, c.weights, o.min_elements);
    UNet unet(weights.store(), cfg);
    unet.set_fused_lut(c.fused_lut);
    int64_t int8_layers = 0;
    if (c.int8) {
      const std::string cal =
          o.int8_calibration.empty() ? default_int8_calibration_path(o.model) : o.int8_calibration;
      SDPAL_CHECK(fs::exists(cal), "bench: int8: no calibration file " + cal +
                                       "; run `sdpal calibrate --model " + o.model + "` first");
      int8_layers = apply_int8_calibration(unet, read_int8_calibration(cal), cal);
    }
    int64_t lora_layers = 0;
    if (c.lora) {
      SDPAL_CHECK(!o.lora.empty(), "bench: configuration '" + c.label + "' needs --lora FILE");
      lora_layers = attach_loras(unet.weight_layers(), "unet", {{LoraFile::load(o.lora), 1.f, 1.f}},
                                 c.lora_merge)
                        .adapted;
    }
    const ToMe tome({.ratio = c.tome, .max_downsample = o.tome_max_downsample});
    malloc_trim(0);    // give back what earlier configurations freed
    reset_peak_rss();  // from here: resident weights + what the steps need
    std::printf("\n[%s] %s%s, ready in %.1f s\n", c.label.c_str(), weights.description().c_str(),
                (std::string(c.int8 ? ", " + std::to_string(int8_layers) + " int8 layers" : "") +
                 (c.lora ? ", LoRA on " + std::to_string(lora_layers) + " layers" : ""))
                    .c_str(),
                since(tl));
    for (const Size& s : sizes) {
      const int64_t h = s.height / 8, w = s.width / 8;
      const Tensor sample = pseudo_random({o.batch, cfg.in_channels, h, w}, 1);
      const Tensor context = pseudo_random({o.batch, ctx_len, cfg.cross_attention_dim[0]}, 2);
      // SDXL: pooled embeddings and the time ids of this size (original = target, no crop).
      std::optional<TextTimeCond> added;
      if (unet.needs_text_time()) {
        const int64_t n = 6, pooled = cfg.projection_class_embeddings_input_dim -
                                      n * cfg.addition_time_embed_dim;
        added.emplace();
        added->text_embeds = pseudo_random({o.batch, pooled}, 3);
        added->time_ids = Tensor({o.batch, n});
        for (int64_t b = 0; b < o.batch; ++b) {
          const float row[6] = {float(s.height), float(s.width), 0, 0,
                                float(s.height), float(s.width)};
          std::copy_n(row, n, added->time_ids.data() + b * n);
        }
      }
      const TextTimeCond* add = added ? &*added : nullptr;
      Tensor out;
      for (int i = 0; i < o.warmup; ++i) out = unet.forward(sample, {500}, context, &tome, add);
      // The machine may be shared: peaks are taken under the same conditions as the steps.
      const Peaks pk{measure_fma_peak(threads), c.int8 ? measure_int8_peak(threads) : 0};
      std::vector<double> times;
      prof::reset();
      prof::enable(true);
      for (int i = 0; i < o.steps; ++i) {
        const auto t0 = Clock::now();
        out = unet.forward(sample, {500}, context, &tome, add);
        times.push_back(since(t0));
      }
      prof::enable(false);
      const prof::Totals totals = prof::totals();
      bool finite = true;
      for (int64_t j = 0; j < out.numel(); ++j) finite = finite && std::isfinite(out[j]);
      const double median = median_of(times);
      const double min_s = *std::min_element(times.begin(), times.end());
      const ComputeCost cost = unet_cost(cfg, o.batch, h, w, ctx_len);
      const double gflop = cost.flops() / 1e9, rate = gflop / median;
      const auto key = std::make_pair(s.width, s.height);
      double db = std::numeric_limits<double>::quiet_NaN();
      if (!reference.count(key)) {
        reference[key] = out;
        first_s[key] = median;
      } else {
        db = psnr(reference[key], out);
      }
      const double rss = current_peak_rss_gib();
      const std::string size_str = std::to_string(s.width) + "x" + std::to_string(s.height);
      std::printf(
          "  %s: %.3f s/step (min %.3f), %.1f GFLOP/s = %.1f%% of measured peak %.1f, "
          "%.1f%% of nominal; peak RSS %.2f GiB%s\n",
          size_str.c_str(), median, min_s, rate, 100 * rate / pk.fp32, pk.fp32,
          100 * rate / o.nominal_peak, rss, finite ? "" : "  (non-finite output!)");
      nlohmann::json breakdown = report_breakdown(totals, o.steps, median, pk);
      char row[512];
      const auto bl = baseline.seconds.find(key);
      std::snprintf(row, sizeof row, "%-22s %-9s %9.3f %8.2fx %8s %7.1f%% %8.2f %9s",
                    c.label.c_str(), size_str.c_str(), median, first_s[key] / median,
                    bl == baseline.seconds.end()
                        ? "-"
                        : (std::to_string(bl->second / median).substr(0, 5) + "x").c_str(),
                    100 * rate / pk.fp32, rss,
                    std::isnan(db) ? "ref" : (std::to_string(db).substr(0, 5) + " dB").c_str());
      rows.push_back(row);
      std::fflush(stdout);
      nlohmann::json r = {{"config", c.label},
                          {"weights", c.weights.str()},
                          {"weight_bytes", weights.weight_bytes()},
                          {"int8", c.int8},
                          {"tome", c.tome},
                          {"tome_max_downsample", o.tome_max_downsample},
                          {"fused_lut", c.fused_lut},
                          {"width", s.width},
                          {"height", s.height},
                          {"gflop_per_step", gflop},
                          {"seconds", times},
                          {"median_s", median},
                          {"min_s", min_s},
                          {"gflops", rate},
                          {"peak_measured_gflops", pk.fp32},
                          {"pct_of_measured_peak", 100 * rate / pk.fp32},
                          {"pct_of_nominal_peak", 100 * rate / o.nominal_peak},
                          {"peak_rss_bytes", static_cast<int64_t>(rss * (1 << 30))},
                          {"breakdown", breakdown},
                          {"finite_output", finite}};
      if (pk.int8 > 0) r["peak_measured_int8_gops"] = pk.int8;
      if (!std::isnan(db)) r["psnr_vs_first_db"] = db;
      if (bl != baseline.seconds.end()) r["speedup_vs_baseline"] = bl->second / median;
      report["results"].push_back(r);
    }
  }
  std::printf(
      "\nsummary (speed-up and PSNR of the UNet output against the first configuration%s)\n",
      baseline.label.empty() ? "" : (", and speed-up against " + baseline.label).c_str());
  std::printf("%-22s %-9s %9s %9s %8s %8s %8s %9s\n", "config", "size", "s/step", "speed-up",
              "vs base", "%peak", "RSS GiB", "PSNR");
  for (const auto& r : rows) std::printf("%s\n", r.c_str());
  const std::string load_after = load_average();
  std::printf("load average after %s\n", load_after.c_str());
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
       app.add_option("--weights", o->weights,
                      "UNet weights to time, made in memory from the files: as-is (default), "
                      "fp32, fp16, linear8, palN or palNgG (k-means palette of N = 1/2/4/6/8 bits, "
                      "one LUT per tensor or per G output channels)");
       app.add_option("--min-elements", o->min_elements,
                      "Compress layers with more elements than this (as sdpal compress; default "
                      "100000)");
       app.add_flag("--int8", o->int8, "Run conv/linear layers in int8 (W8A8; needs calibration)");
       app.add_option("--int8-calibration", o->int8_calibration,
                      "Calibration file for --int8 (default: the model's unet/sdpal_int8.json)");
       app.add_option("--tome", o->tome, "Token merging ratio in self-attention (0 = off)");
       app.add_option("--tome-max-downsample", o->tome_max_downsample,
                      "Merge tokens in blocks at most this far below full resolution: 1 (default), "
                      "2, 4 or 8 (for --tome and every tomeR configuration)")
           ->check(CLI::IsMember({1, 2, 4, 8}));
       app.add_option("--configs", o->configs,
                      "Time several configurations side by side (overrides --weights/--int8/"
                      "--tome): comma-separated, each '+'-joined, e.g. "
                      "fp32,fp16,pal4,pal4+unfused,int8+tome0.4");
       app.add_option("--lora", o->lora, "LoRA file for the 'lora' and 'loramerge' configurations");
       app.add_option("--baseline", o->baseline,
                      "JSON of an external run to compare with (bench/pytorch_unet.py --json)")
           ->check(CLI::ExistingFile);
       app.add_option("--json", o->json, "Also write the numbers to this JSON file");
       app.add_flag("--pipeline", o->pipeline,
                    "Time one whole generation instead (text encoder, --steps UNet steps with CFG, "
                    "VAE decode) at the first size, and report its peak RSS");
       app.add_flag("--peak-only", o->peak_only,
                    "Only measure the fp32 and int8 peaks of the kernel level (5 times) and exit; "
                    "no model needed");
       app.callback([o] { run(*o); });
     }});

}  // namespace
}  // namespace sdpal
