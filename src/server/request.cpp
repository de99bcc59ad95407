#include "server/request.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/jpeg.h"
#include "formats/png.h"
#include "server/base64.h"

namespace sdpal::server {

namespace {

using json = nlohmann::json;

// Deeper nesting than any API body needs is refused before parsing (a body of "[[[[..." would
// otherwise cost a parse stack proportional to its size).
constexpr int kMaxDepth = 32;

[[noreturn]] void bad(const std::string& error, const std::string& detail) {
  throw RequestError(400, error, detail);
}
[[noreturn]] void invalid(const std::string& detail) {
  throw RequestError(422, "invalid_field", detail);
}

json parse_body(std::string_view body) {
  if (body.empty()) bad("invalid_json", "the request body is empty; a JSON object is expected");
  int depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : body) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth)
        bad("invalid_json", "JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    // nlohmann's message names the byte offset and what was expected.
    bad("invalid_json", std::string("malformed JSON: ") + e.what());
  }
  if (!j.is_object())
    bad("invalid_json",
        std::string("the request body must be a JSON object, got ") + j.type_name());
  return j;
}

// Typed access to the fields of one JSON object; null is "not given".
class Fields {
 public:
  Fields(const json& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  const json* get(const char* key) const {
    const auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  std::string name(const char* key) const { return prefix_ + key; }

  std::optional<std::string> text(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) invalid(name(key) + " must be a string, got " + v->type_name());
    return v->get<std::string>();
  }
  std::optional<bool> boolean(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    // A1111 sends some flags as 0/1 (inpainting_mask_invert).
    if (v->is_number_integer() && (v->get<int64_t>() == 0 || v->get<int64_t>() == 1))
      return v->get<int64_t>() == 1;
    if (!v->is_boolean()) invalid(name(key) + " must be true or false, got " + v->type_name());
    return v->get<bool>();
  }
  // An integer from lo to hi; a float with an integral value (20.0) counts as one.
  std::optional<int64_t> integer(const char* key, int64_t lo, int64_t hi) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    int64_t r = 0;
    if (v->is_number_unsigned()) {
      const uint64_t u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(hi)) out_of_range(key, lo, hi, std::to_string(u));
      r = static_cast<int64_t>(u);
    } else if (v->is_number_integer()) {
      r = v->get<int64_t>();
    } else if (v->is_number_float()) {
      const double d = v->get<double>();
      if (!std::isfinite(d) || d != std::floor(d) || d < -9.2e18 || d > 9.2e18)
        invalid(name(key) + " must be an integer, got " + v->dump());
      r = static_cast<int64_t>(d);
    } else {
      invalid(name(key) + " must be an integer, got " + v->type_name());
    }
    if (r < lo || r > hi) out_of_range(key, lo, hi, std::to_string(r));
    return r;
  }
  std::optional<double> number(const char* key, double lo, double hi) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) invalid(name(key) + " must be a number, got " + v->type_name());
    const double d = v->get<double>();
    if (!std::isfinite(d) || d < lo || d > hi)
      invalid(name(key) + " must be a number from " + a1111_number(lo) + " to " + a1111_number(hi) +
              ", got " + v->dump());
    return d;
  }
  const json* object(const char* key) const {
    const json* v = get(key);
    if (v && !v->is_object()) invalid(name(key) + " must be an object, got " + v->type_name());
    return v;
  }

 private:
  [[noreturn]] void out_of_range(const char* key, int64_t lo, int64_t hi,
                                 const std::string& got) const {
    invalid(name(key) + " must be an integer from " + std::to_string(lo) + " to " +
            std::to_string(hi) + ", got " + got);
  }
  const json& obj_;
  std::string prefix_;
};

// A side in pixels: a multiple of 8, within the server's --max-size.
int checked_side(int64_t v, const char* field, const Limits& limits) {
  if (v > limits.max_size)
    bad("limit_exceeded", std::string(field) + " " + std::to_string(v) +
                              " is above this server's limit --max-size " +
                              std::to_string(limits.max_size));
  if (v < 8 || v % 8 != 0)
    invalid(std::string(field) + " must be a multiple of 8 from 8 to " +
            std::to_string(limits.max_size) + " (--max-size), got " + std::to_string(v));
  return static_cast<int>(v);
}

void check_steps(int64_t steps, const Limits& limits) {
  if (steps > limits.max_steps)
    bad("limit_exceeded", "steps " + std::to_string(steps) +
                              " is above this server's limit --max-steps " +
                              std::to_string(limits.max_steps));
}

void check_images(int64_t images, const std::string& what, const Limits& limits) {
  if (images > limits.max_batch)
    bad("limit_exceeded", what + " asks for " + std::to_string(images) +
                              " images, above this server's limit --max-batch " +
                              std::to_string(limits.max_batch));
}

// Prompts are text: invalid UTF-8 is refused by the JSON parser already; NUL is refused here
// because the tokenizer and the PNG text chunk both end a string at it.
std::string prompt_text(const Fields& f, const char* key) {
  std::string s = f.text(key).value_or("");
  if (s.find('\0') != std::string::npos) invalid(f.name(key) + " must not contain NUL characters");
  if (s.size() > 65536) invalid(f.name(key) + " is longer than 65536 bytes");
  return s;
}

// Refuses an A1111 feature sdpal lacks when the request turns it on.
void refuse_if(bool on, const std::string& what) {
  if (on) bad("not_supported", what + " is not supported by sdpal");
}

void read_override_settings(const Fields& top, GenerationRequest& r) {
  const json* o = top.object("override_settings");
  if (!o) return;
  const Fields f(*o, "override_settings.");
  if (auto m = f.text("sd_model_checkpoint")) r.model = *m;
  if (auto v = f.integer("CLIP_stop_at_last_layers", 1, 12)) r.settings.clip_skip = int(*v);
  if (auto v = f.number("token_merging_ratio", 0, 0.9)) r.settings.tome.ratio = *v;
  if (auto v = f.number("eta_ddim", 0, 1)) r.settings.eta = float(*v);
  if (auto v = f.boolean("sdpal_int8")) r.int8 = *v;
  if (auto v = f.boolean("sdpal_taesd_decode")) r.taesd_decode = *v;
  if (auto v = f.text("sdpal_timestep_spacing")) {
    if (*v != "leading" && *v != "linspace" && *v != "trailing")
      invalid("override_settings.sdpal_timestep_spacing must be leading, linspace or trailing");
    r.settings.timestep_spacing = *v;
  }
  if (auto v = f.boolean("sdpal_tome_random")) r.settings.tome.random = *v;
  if (auto v = f.integer("sdpal_tome_seed", 0, std::numeric_limits<int64_t>::max()))
    r.settings.tome.seed = static_cast<uint64_t>(*v);
  if (auto v = f.integer("sdpal_tome_max_downsample", 1, 8)) {
    if (*v != 1 && *v != 2 && *v != 4 && *v != 8)
      invalid("override_settings.sdpal_tome_max_downsample must be 1, 2, 4 or 8");
    r.settings.tome.max_downsample = int(*v);
  }
  // A misspelt sdpal setting would otherwise be ignored like A1111's other options.
  for (const auto& [key, value] : o->items())
    if (key.rfind("sdpal_", 0) == 0 && key != "sdpal_int8" && key != "sdpal_taesd_decode" &&
        key != "sdpal_timestep_spacing" && key != "sdpal_tome_random" && key != "sdpal_tome_seed" &&
        key != "sdpal_tome_max_downsample")
      invalid("unknown setting override_settings." + key);
}

// The fields txt2img and img2img share (A1111's StableDiffusionProcessing).
GenerationRequest parse_common(const json& j, const Limits& limits) {
  const Fields f(j, "");
  GenerationRequest r;
  GenerationSettings& s = r.settings;
  s.prompt = prompt_text(f, "prompt");
  s.negative_prompt = prompt_text(f, "negative_prompt");
  s.seed = f.integer("seed", -1, std::numeric_limits<int64_t>::max()).value_or(-1);
  // A1111: sampler_name, else the legacy sampler_index (a name too); default "Euler a" here.
  std::optional<std::string> sampler = f.text("sampler_name");
  if (!sampler) sampler = f.text("sampler_index");
  bool karras = false;
  s.sampler = sampler_id(sampler.value_or("Euler a"), &karras);
  if (auto sched = f.text("scheduler")) {
    if (*sched == "Karras" || *sched == "karras")
      karras = true;
    else if (*sched != "Automatic" && *sched != "automatic")
      bad("unknown_scheduler", "unknown scheduler '" + *sched + "' (Automatic or Karras)");
  }
  s.karras = karras;
  const int64_t batch = f.integer("batch_size", 1, 1 << 20).value_or(1);
  const int64_t n_iter = f.integer("n_iter", 1, 1 << 20).value_or(1);
  check_images(batch * n_iter, "batch_size x n_iter", limits);
  s.batch = int(batch);
  r.n_iter = int(n_iter);
  const int64_t steps = f.integer("steps", 1, std::numeric_limits<int64_t>::max()).value_or(20);
  check_steps(steps, limits);
  s.steps = int(steps);
  s.cfg = float(f.number("cfg_scale", 0, 100).value_or(7.0));
  if (auto w = f.integer("width", std::numeric_limits<int64_t>::min(),
                         std::numeric_limits<int64_t>::max()))
    s.width = checked_side(*w, "width", limits);
  if (auto h = f.integer("height", std::numeric_limits<int64_t>::min(),
                         std::numeric_limits<int64_t>::max()))
    s.height = checked_side(*h, "height", limits);
  if (auto eta = f.number("eta", 0, 1)) s.eta = float(*eta);
  r.send_images = f.boolean("send_images").value_or(true);
  refuse_if(f.boolean("enable_hr").value_or(false), "enable_hr (hires fix)");
  refuse_if(f.boolean("restore_faces").value_or(false), "restore_faces");
  refuse_if(f.boolean("tiling").value_or(false), "tiling");
  refuse_if(f.number("subseed_strength", 0, 1).value_or(0) != 0, "subseed_strength (variations)");
  refuse_if(!f.text("script_name").value_or("").empty(), "script_name (scripts)");
  if (const json* styles = f.get("styles")) {
    if (!styles->is_array())
      invalid("styles must be a list, got " + std::string(styles->type_name()));
    refuse_if(!styles->empty(), "styles");
  }
  read_override_settings(f, r);
  return r;
}

}  // namespace

std::string sampler_id(const std::string& name, bool* karras) {
  std::string n = name;
  const std::string suffix = " Karras";
  if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0) {
    n.resize(n.size() - suffix.size());
    if (karras) *karras = true;
  }
  std::string all;
  for (const SamplerName& s : sampler_names()) {
    if (n == s.display || n == s.id) return s.id;
    all += (all.empty() ? "" : ", ") + s.display;
  }
  std::string shown = name.substr(0, 64);
  bad("unknown_sampler", "unknown sampler '" + shown + "' (one of: " + all + ")");
}

Image decode_image_field(std::string_view text, const std::string& what) {
  // A1111 accepts data URLs ("data:image/png;base64,...") as well as bare base64.
  if (text.rfind("data:", 0) == 0) {
    const size_t comma = text.find(',');
    if (comma == std::string_view::npos || text.substr(0, comma).find(";base64") == text.npos)
      bad("invalid_image", what + ": a data URL must be base64 (data:image/png;base64,...)");
    text.remove_prefix(comma + 1);
  }
  std::string why;
  const auto bytes = base64_decode(text, &why);
  if (!bytes) bad("invalid_base64", what + ": " + why);
  const uint8_t* d = bytes->data();
  const size_t n = bytes->size();
  try {
    if (n >= 8 && d[0] == 0x89 && d[1] == 'P' && d[2] == 'N' && d[3] == 'G') {
      // IHDR's size, checked before libspng allocates the image.
      if (n >= 24) {
        const uint32_t w =
            (uint32_t(d[16]) << 24) | (uint32_t(d[17]) << 16) | (uint32_t(d[18]) << 8) | d[19];
        const uint32_t h =
            (uint32_t(d[20]) << 24) | (uint32_t(d[21]) << 16) | (uint32_t(d[22]) << 8) | d[23];
        if (w > uint32_t(kMaxUploadSide) || h > uint32_t(kMaxUploadSide))
          bad("invalid_image",
              what + ": the PNG is " + std::to_string(w) + "x" + std::to_string(h) + ", at most " +
                  std::to_string(kMaxUploadSide) + " pixels per side are accepted");
      }
      return decode_png(d, n, what);
    }
    if (is_jpeg(d, n)) return decode_jpeg(d, n, what, kMaxUploadSide);
  } catch (const Error& e) {
    bad("invalid_image", e.what());
  }
  bad("invalid_image", what + ": not a PNG or JPEG image (" + std::to_string(n) + " bytes)");
}

GenerationRequest parse_txt2img(std::string_view body, const Limits& limits) {
  return parse_common(parse_body(body), limits);
}

GenerationRequest parse_img2img(std::string_view body, const Limits& limits) {
  const json j = parse_body(body);
  GenerationRequest r = parse_common(j, limits);
  const Fields f(j, "");
  const json* inits = f.get("init_images");
  if (!inits) bad("missing_field", "init_images is required: a list with one base64 image");
  if (!inits->is_array())
    invalid("init_images must be a list, got " + std::string(inits->type_name()));
  if (inits->size() != 1)
    bad("not_supported",
        "init_images must hold exactly one image, got " + std::to_string(inits->size()));
  if (!(*inits)[0].is_string())
    invalid("init_images[0] must be a base64 string, got " + std::string((*inits)[0].type_name()));
  r.init_image = decode_image_field((*inits)[0].get_ref<const std::string&>(), "init_images[0]");
  r.settings.strength = float(f.number("denoising_strength", 0, 1).value_or(0.75));
  if (r.settings.strength <= 0.f)
    invalid("denoising_strength must be above 0 and at most 1, got 0");
  // A1111 resize_mode: 0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale
  // (a plain resize here).
  switch (f.integer("resize_mode", 0, 3).value_or(0)) {
    case 1:
      r.resize_mode = ResizeMode::crop;
      break;
    case 2:
      r.resize_mode = ResizeMode::fill;
      break;
    default:
      r.resize_mode = ResizeMode::stretch;
      break;
  }
  if (auto m = f.text("mask")) r.mask = decode_image_field(*m, "mask");
  r.invert_mask = f.boolean("inpainting_mask_invert").value_or(false);
  return r;
}

GenerationRequest parse_openai_generation(std::string_view body, const Limits& limits) {
  const json j = parse_body(body);
  const Fields f(j, "");
  GenerationRequest r;
  r.style = ResponseStyle::openai;
  const auto prompt = f.text("prompt");
  if (!prompt || prompt->empty()) bad("missing_field", "prompt is required");
  r.settings.prompt = prompt_text(f, "prompt");
  const int64_t n = f.integer("n", 1, 1 << 20).value_or(1);
  check_images(n, "n", limits);
  r.settings.batch = int(n);
  if (auto size = f.text("size")) {
    const size_t x = size->find('x');
    auto side = [&](const std::string& t, const char* which) -> int64_t {
      if (t.empty() || t.size() > 6 || t.find_first_not_of("0123456789") != std::string::npos)
        invalid("size must be WIDTHxHEIGHT such as 512x512, got '" + size->substr(0, 32) + "'");
      return checked_side(std::stoll(t), which, limits);
    };
    if (x == std::string::npos)
      invalid("size must be WIDTHxHEIGHT such as 512x512, got '" + size->substr(0, 32) + "'");
    r.settings.width = int(side(size->substr(0, x), "width"));
    r.settings.height = int(side(size->substr(x + 1), "height"));
  }
  const std::string format = f.text("response_format").value_or("b64_json");
  if (format != "b64_json")
    bad("not_supported", "response_format '" + format.substr(0, 32) +
                             "' is not supported: this server returns images inline (b64_json)");
  if (auto model = f.text("model")) r.model = *model;  // used only if it names a listed model
  return r;
}

OptionsUpdate parse_options_update(std::string_view body) {
  const json j = parse_body(body);
  const Fields f(j, "");
  OptionsUpdate u;
  for (const auto& [key, value] : j.items()) {
    if (key == "sd_model_checkpoint")
      u.model = f.text("sd_model_checkpoint");
    else if (key == "sdpal_int8")
      u.int8 = f.boolean("sdpal_int8");
    else
      bad("not_supported",
          "option '" + key.substr(0, 64) +
              "' cannot be set on this server (only sd_model_checkpoint and sdpal_int8; "
              "per-request settings go in override_settings)");
  }
  return u;
}

Image parse_png_info(std::string_view body) {
  const json j = parse_body(body);
  const Fields f(j, "");
  const auto image = f.text("image");
  if (!image) bad("missing_field", "image is required: a base64 PNG");
  return decode_image_field(*image, "image");
}

}  // namespace sdpal::server
