// PNG decoding (formats/png.h) of init images: arbitrary bytes through decode_png, then the
// image paths an init image takes (fit_image to the generation size, image_to_tensor).
// Invariants of a decoded image: 1..16384 pixels a side, width*height*3 bytes, text entries
// valid UTF-8; re-encoding it (with its text, when the keys are writable) and decoding again
// gives the same pixels and text; fitted images have the asked size; tensors lie in [-1, 1].
#include <cmath>

#include "core/unicode_text.h"
#include "formats/image.h"
#include "formats/png.h"
#include "fuzz/fuzz_support.h"

using namespace sdpal;

namespace {

bool writable_key(const std::string& k) {
  // encode_png's rule: 1-79 printable Latin-1 characters (given in UTF-8).
  if (k.empty()) return false;
  std::u32string u;
  try {
    u = unicode::decode_utf8(k, "key");
  } catch (const Error&) {
    return false;
  }
  if (u.size() > 79) return false;
  for (char32_t c : u)
    if (c < 0x20 || (c > 0x7E && c < 0xA1) || c > 0xFF) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FUZZ_EXPECT_ERRORS({
    const Image img = decode_png(data, size, "input.png");
    FUZZ_CHECK(img.width >= 1 && img.height >= 1 && img.width <= 16384 && img.height <= 16384,
               "size " + std::to_string(img.width) + "x" + std::to_string(img.height));
    FUZZ_CHECK(img.rgb.size() == static_cast<size_t>(img.width) * img.height * 3, "pixel bytes");
    bool keys_ok = true;
    for (const auto& [k, v] : img.text) {
      unicode::decode_utf8(v, "text value");  // throws (an escape) if not UTF-8
      keys_ok = keys_ok && writable_key(k);
    }
    const auto png = fuzz::must_succeed(
        [&] {
          return encode_png(img.rgb.data(), img.width, img.height,
                            keys_ok ? img.text : std::map<std::string, std::string>{});
        },
        "re-encoding a decoded image");
    const Image again =
        fuzz::must_succeed([&] { return decode_png(png.data(), png.size(), "re-encoded.png"); },
                           "decoding the re-encoded image");
    FUZZ_CHECK(again.width == img.width && again.height == img.height && again.rgb == img.rgb,
               "pixels changed in an encode/decode round trip");
    if (keys_ok) FUZZ_CHECK(again.text == img.text, "text changed in a round trip");
    if (static_cast<int64_t>(img.width) * img.height <= 256 * 256) {
      const int w = 8 * (1 + data[size / 2] % 8), h = 8 * (1 + data[size / 3] % 8);
      for (ResizeMode mode : {ResizeMode::stretch, ResizeMode::crop, ResizeMode::fill}) {
        std::string what;
        const Image fit = fit_image(img, w, h, mode, &what);
        FUZZ_CHECK(
            fit.width == w && fit.height == h && fit.rgb.size() == static_cast<size_t>(w) * h * 3,
            "fit_image gave another size");
      }
      const Tensor t = image_to_tensor(img);
      for (int64_t i = 0; i < t.numel(); ++i)
        FUZZ_CHECK(t.data()[i] >= -1.f && t.data()[i] <= 1.f, "pixel outside [-1, 1]");
    }
  });
  return 0;
}
