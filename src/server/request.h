// The HTTP API's request layer, free of HTTP and of any model: a JSON body in, a validated request
// out, or a RequestError carrying the 4xx status and the {error, detail} the client gets. Kept
// pure so that it can be tested and fuzzed on its own (tests/fuzz/fuzz_server_request.cpp).
//
// Field names are A1111's (modules/api/models.py: StableDiffusionTxt2ImgProcessingAPI,
// ...Img2Img...) and OpenAI's (images/generations). null counts as absent; unknown fields are
// ignored, as A1111's pydantic models do, but a known A1111 feature sdpal lacks (hires fix, face
// restoration, tiling, variation seeds, scripts, styles) is refused rather than silently dropped.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "formats/image.h"
#include "pipeline/generation_settings.h"

namespace sdpal::server {

class RequestError : public std::runtime_error {
 public:
  RequestError(int status, std::string error, const std::string& detail)
      : std::runtime_error(detail), status_(status), error_(std::move(error)) {}
  int status() const { return status_; }
  const std::string& error() const { return error_; }  // short kind: "invalid_json", ...
  std::string detail() const { return what(); }

 private:
  int status_;
  std::string error_;
};

// Per-request limits of a server (--max-size, --max-steps, --max-batch); a request above one gets
// 400 naming the option.
struct Limits {
  int max_size = 1024;  // pixels per side
  int max_steps = 150;
  int max_batch = 8;  // images per request (batch_size * n_iter, or OpenAI's n)
};

// Largest side of an uploaded image (init image, mask, PNG info) before it is decoded, so that a
// small compressed file cannot expand into gigabytes.
inline constexpr int kMaxUploadSide = 8192;

enum class ResponseStyle { a1111, openai };

struct GenerationRequest {
  GenerationSettings settings;
  int n_iter = 1;  // A1111: batches run one after another, seed + k * batch_size each
  std::optional<Image> init_image;  // img2img, decoded, not yet fitted to the size
  std::optional<Image> mask;        // masked img2img, decoded (white = repaint)
  bool invert_mask = false;         // A1111 inpainting_mask_invert
  ResizeMode resize_mode = ResizeMode::stretch;
  std::string model;          // override_settings.sd_model_checkpoint ("" = the current one)
  std::optional<bool> int8;   // override_settings.sdpal_int8 (unset = as loaded)
  bool taesd_decode = false;  // override_settings.sdpal_taesd_decode
  bool send_images = true;
  ResponseStyle style = ResponseStyle::a1111;
};

GenerationRequest parse_txt2img(std::string_view body, const Limits& limits);
GenerationRequest parse_img2img(std::string_view body, const Limits& limits);
// OpenAI POST /v1/images/generations: prompt, n, size "WxH", response_format (b64_json only),
// model (a listed model's name; other names, such as "dall-e-2", mean the current model).
GenerationRequest parse_openai_generation(std::string_view body, const Limits& limits);

// POST /sdapi/v1/options: the settings sdpal can change (sd_model_checkpoint, sdpal_int8); other
// A1111 options are refused by name, since this server keeps no settings beyond its model.
struct OptionsUpdate {
  std::optional<std::string> model;
  std::optional<bool> int8;
};
OptionsUpdate parse_options_update(std::string_view body);

// POST /sdapi/v1/png-info {image: base64 PNG}: the decoded image with its text chunks.
Image parse_png_info(std::string_view body);

// A base64 image (optionally a data: URL) decoded to RGB: PNG or JPEG, at most kMaxUploadSide
// pixels per side. `what` names the field in errors.
Image decode_image_field(std::string_view base64, const std::string& what);

// The sampler id for an A1111 name ("Euler a", "DPM++ 2M"; the legacy "... Karras" names set
// `karras`) or an sdpal id ("euler_a"); RequestError 400 listing the samplers otherwise.
std::string sampler_id(const std::string& name, bool* karras);

}  // namespace sdpal::server
