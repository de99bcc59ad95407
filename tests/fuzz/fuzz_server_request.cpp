// The HTTP API's pure request layer (server/request.h): every body either parses into a request
// within the server's limits or is refused with a RequestError of status 4xx; nothing else may
// escape, crash or allocate without bound. The first input byte picks the endpoint, the rest is
// the body. Also: base64 decoding round-trips through the encoder.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/base64.h"
#include "server/request.h"

using namespace sdpal::server;

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_server_request: invariant broken: %s\n", what);
    std::abort();
  }
}

void check_request(const GenerationRequest& r, const Limits& l) {
  const auto& s = r.settings;
  check(s.width == 0 || (s.width >= 8 && s.width <= l.max_size && s.width % 8 == 0), "width");
  check(s.height == 0 || (s.height >= 8 && s.height <= l.max_size && s.height % 8 == 0), "height");
  check(s.steps >= 1 && s.steps <= l.max_steps, "steps");
  check(s.batch >= 1 && r.n_iter >= 1 && int64_t(s.batch) * r.n_iter <= l.max_batch, "batch");
  check(s.seed >= -1, "seed");
  check(s.strength > 0 && s.strength <= 1, "strength");
  if (r.init_image)
    check(r.init_image->width > 0 && r.init_image->width <= kMaxUploadSide &&
              r.init_image->rgb.size() == size_t(r.init_image->width) * r.init_image->height * 3,
          "init image");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  const Limits limits{256, 50, 4};
  try {
    switch (data[0] % 6) {
      case 0:
        check_request(parse_txt2img(body, limits), limits);
        break;
      case 1:
        check_request(parse_img2img(body, limits), limits);
        break;
      case 2:
        check_request(parse_openai_generation(body, limits), limits);
        break;
      case 3:
        (void)parse_options_update(body);
        break;
      case 4:
        (void)parse_png_info(body);
        break;
      default: {
        std::string why;
        const auto bytes = base64_decode(body, &why);
        if (bytes) {
          const auto again = base64_decode(base64_encode(*bytes), &why);
          check(again && *again == *bytes, "base64 round trip");
        }
        break;
      }
    }
  } catch (const RequestError& e) {
    check(e.status() >= 400 && e.status() < 500, "RequestError status is 4xx");
    check(!e.error().empty() && !e.detail().empty(), "RequestError names the error");
  }
  return 0;
}
