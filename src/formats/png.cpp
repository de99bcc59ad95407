#include "formats/png.h"

#include <spng.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/limits.h"
#include "core/unicode_text.h"

namespace sdpal {

namespace {

constexpr uint32_t kMaxSide = limits::kMaxImageSide;
// Deflate encodes at most 258 bytes in 2 bits: no zlib stream expands by more than 1032 times.
constexpr uint64_t kMaxDeflateRatio = 1032;
constexpr size_t kMaxChunkBytes = size_t{64} << 20;    // one text/ICC/... chunk
constexpr size_t kMaxCachedBytes = size_t{256} << 20;  // all ancillary chunks together
constexpr uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

struct CtxFree {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};
using Ctx = std::unique_ptr<spng_ctx, CtxFree>;

// UTF-8 -> code points; malformed sequences (bad lead/continuation bytes, overlong forms,
// surrogates, values past U+10FFFF) become U+FFFD, one per offending byte.
std::u32string decode_utf8(const std::string& s) {
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = b0 < 0x80           ? 1
              : (b0 >> 5) == 0x6  ? 2
              : (b0 >> 4) == 0xE  ? 3
              : (b0 >> 3) == 0x1E ? 4
                                  : 0;
    char32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      ok = (b & 0xC0) == 0x80;
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr char32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && cp >= kMinForLength[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.push_back(cp);
      i += len;
    } else {
      out.push_back(0xFFFD);
      i += 1;
    }
  }
  return out;
}

std::string latin1_to_utf8(const char* data, size_t n) {
  std::u32string cps(n, 0);
  for (size_t i = 0; i < n; ++i) cps[i] = static_cast<unsigned char>(data[i]);
  return unicode::encode_utf8(cps);
}

// Latin-1 bytes of `cps`, or false if some code point is above U+00FF.
bool to_latin1(const std::u32string& cps, std::string* out) {
  out->clear();
  for (char32_t cp : cps) {
    if (cp > 0xFF) return false;
    *out += static_cast<char>(cp);
  }
  return true;
}

// Holds the strings spng_text points into until encoding is done.
struct TextChunk {
  std::string keyword;  // Latin-1
  std::string value;    // Latin-1 (tEXt) or UTF-8 (iTXt)
  bool international = false;
};

std::vector<TextChunk> prepare_text(const std::map<std::string, std::string>& text) {
  std::vector<TextChunk> chunks;
  for (const auto& [key, value] : text) {
    TextChunk c;
    SDPAL_CHECK(
        to_latin1(decode_utf8(key), &c.keyword) && !c.keyword.empty() && c.keyword.size() < 80,
        "PNG text key \"" + key + "\" must be 1-79 Latin-1 characters");
    SDPAL_CHECK(value.find('\0') == std::string::npos,
                "PNG text value for key \"" + key + "\" contains a NUL byte");
    const std::u32string cps = decode_utf8(value);
    if (!to_latin1(cps, &c.value)) {
      c.value = unicode::encode_utf8(cps);
      c.international = true;
    }
    chunks.push_back(std::move(c));
  }
  return chunks;
}

void check_spng(int rc, const std::string& what) {
  if (rc != 0) fail(what + ": " + spng_strerror(rc));
}

}  // namespace

std::vector<uint8_t> encode_png(const uint8_t* rgb, int width, int height,
                                const std::map<std::string, std::string>& text) {
  SDPAL_CHECK(
      width > 0 && height > 0 && static_cast<uint32_t>(width) <= kMaxSide &&
          static_cast<uint32_t>(height) <= kMaxSide,
      "encode_png: invalid image size " + std::to_string(width) + "x" + std::to_string(height));
  Ctx ctx(spng_ctx_new(SPNG_CTX_ENCODER));
  SDPAL_CHECK(ctx, "encode_png: out of memory");
  check_spng(spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1), "encode_png");

  spng_ihdr ihdr{};
  ihdr.width = static_cast<uint32_t>(width);
  ihdr.height = static_cast<uint32_t>(height);
  ihdr.bit_depth = 8;
  ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
  check_spng(spng_set_ihdr(ctx.get(), &ihdr), "encode_png: header");

  std::vector<TextChunk> chunks = prepare_text(text);
  std::vector<spng_text> entries(chunks.size());
  char empty[1] = {0};  // iTXt language tag and translated keyword
  for (size_t i = 0; i < chunks.size(); ++i) {
    spng_text& e = entries[i];
    std::memcpy(e.keyword, chunks[i].keyword.c_str(), chunks[i].keyword.size() + 1);
    e.type = chunks[i].international ? SPNG_ITXT : SPNG_TEXT;
    e.length = chunks[i].value.size();
    e.text = chunks[i].value.data();
    e.compression_flag = 0;
    e.compression_method = 0;
    e.language_tag = empty;
    e.translated_keyword = empty;
  }
  if (!entries.empty()) {
    check_spng(spng_set_text(ctx.get(), entries.data(), static_cast<uint32_t>(entries.size())),
               "encode_png: text chunk \"" + chunks.front().keyword + "\"...");
  }

  const size_t bytes = static_cast<size_t>(width) * height * 3;
  check_spng(spng_encode_image(ctx.get(), rgb, bytes, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE),
             "encode_png");
  size_t size = 0;
  int err = 0;
  void* buffer = spng_get_png_buffer(ctx.get(), &size, &err);
  check_spng(err, "encode_png");
  SDPAL_CHECK(buffer, "encode_png: no output");
  std::vector<uint8_t> png(static_cast<uint8_t*>(buffer), static_cast<uint8_t*>(buffer) + size);
  std::free(buffer);
  return png;
}

void write_png(const std::string& path, const uint8_t* rgb, int width, int height,
               const std::map<std::string, std::string>& text) {
  std::vector<uint8_t> png;
  try {
    png = encode_png(rgb, width, height, text);
  } catch (const Error& e) {
    fail("cannot write " + path + ": " + e.what());
  }
  write_file_atomic(path, [&](std::FILE* f) {
    if (std::fwrite(png.data(), 1, png.size(), f) != png.size())
      fail("cannot write " + path + ": " + std::strerror(errno));
  });
}

void write_png(const std::string& path, const Image& image,
               const std::map<std::string, std::string>& text) {
  SDPAL_CHECK(image.rgb.size() == static_cast<size_t>(image.width) * image.height * 3,
              "cannot write " + path + ": image buffer does not match its size");
  std::map<std::string, std::string> all = text;
  all.insert(image.text.begin(), image.text.end());  // keeps the entries of `text`
  write_png(path, image.rgb.data(), image.width, image.height, all);
}

Image decode_png(const uint8_t* data, size_t size, const std::string& name) {
  if (size == 0 || std::memcmp(data, kSignature, std::min(size, sizeof(kSignature))) != 0)
    fail(name + " is not a PNG file");
  if (size <= sizeof(kSignature)) fail("cannot read PNG " + name + ": file is truncated");

  Ctx ctx(spng_ctx_new(0));
  SDPAL_CHECK(ctx, "cannot read PNG " + name + ": out of memory");
  auto check = [&](int rc) {
    if (rc == SPNG_IO_EOF || rc == SPNG_EOF)
      fail("cannot read PNG " + name + ": file is truncated");
    if (rc == SPNG_EWIDTH || rc == SPNG_EHEIGHT || rc == SPNG_EUSER_WIDTH ||
        rc == SPNG_EUSER_HEIGHT)
      fail("cannot read PNG " + name + ": image too large (limit " + std::to_string(kMaxSide) +
           " pixels a side) or invalid size");
    if (rc != 0) fail("cannot read PNG " + name + ": " + spng_strerror(rc));
  };
  check(spng_set_image_limits(ctx.get(), kMaxSide, kMaxSide));
  check(spng_set_chunk_limits(ctx.get(), kMaxChunkBytes, kMaxCachedBytes));
  check(spng_set_png_buffer(ctx.get(), data, size));

  spng_ihdr ihdr{};
  check(spng_get_ihdr(ctx.get(), &ihdr));
  // The header's size is checked against what the file can hold before the image buffer is
  // allocated: a truncated 128-byte file declaring 16384x16384 would otherwise cost 805 MB.
  const uint64_t pixels = uint64_t(ihdr.width) * ihdr.height;
  if (pixels > limits::kMaxImagePixels)
    fail("cannot read PNG " + name + ": " + std::to_string(ihdr.width) + "x" +
         std::to_string(ihdr.height) + " is more than the bound of " +
         std::to_string(limits::kMaxImagePixels) + " pixels");
  const int channels = ihdr.color_type == SPNG_COLOR_TYPE_TRUECOLOR         ? 3
                       : ihdr.color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA ? 4
                       : ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ? 2
                                                                            : 1;
  const uint64_t row_bytes = (uint64_t(ihdr.width) * channels * ihdr.bit_depth + 7) / 8;
  const uint64_t stored = row_bytes * ihdr.height;  // scanlines without their filter bytes
  if (stored > (uint64_t(size) + 1) * kMaxDeflateRatio)
    fail("cannot read PNG " + name + ": file is truncated (its " + std::to_string(size) +
         " bytes cannot hold the " + std::to_string(ihdr.width) + "x" +
         std::to_string(ihdr.height) + " image its header declares)");
  size_t bytes = 0;
  check(spng_decoded_image_size(ctx.get(), SPNG_FMT_RGB8, &bytes));
  Image image;
  image.width = static_cast<int>(ihdr.width);
  image.height = static_cast<int>(ihdr.height);
  image.rgb.resize(bytes);
  check(spng_decode_image(ctx.get(), image.rgb.data(), bytes, SPNG_FMT_RGB8, 0));
  check(spng_decode_chunks(ctx.get()));  // text chunks after the image data, up to IEND

  uint32_t n_text = 0;
  int rc = spng_get_text(ctx.get(), nullptr, &n_text);
  if (rc == SPNG_ECHUNKAVAIL) return image;
  check(rc);
  std::vector<spng_text> entries(n_text);
  check(spng_get_text(ctx.get(), entries.data(), &n_text));
  for (const spng_text& e : entries) {
    const std::string key = latin1_to_utf8(e.keyword, std::strlen(e.keyword));
    image.text[key] =
        e.type == SPNG_ITXT ? std::string(e.text, e.length) : latin1_to_utf8(e.text, e.length);
  }
  return image;
}

Image read_png(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("cannot open " + path + ": " + std::strerror(errno));
  std::vector<uint8_t> data;
  uint8_t buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0)
    data.insert(data.end(), buffer, buffer + n);
  const int read_errno = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (read_errno != 0) fail("cannot read " + path + ": " + std::strerror(read_errno));
  return decode_png(data.data(), data.size(), path);
}

}  // namespace sdpal
