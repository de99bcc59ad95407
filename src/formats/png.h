// PNG files via libspng: 8-bit RGB output with text chunks (A1111's `parameters`), and
// input of any PNG colour type / bit depth converted to RGB8.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/image.h"

namespace sdpal {

// Encodes 8-bit RGB (interleaved, width*height*3 bytes) as PNG in memory. Each text entry
// (UTF-8) becomes a tEXt chunk when its value is representable in Latin-1 (stored as Latin-1)
// and an uncompressed iTXt chunk otherwise: the rule PIL's PngInfo.add_text applies, which
// is how A1111 stores prompts. Invalid UTF-8 is replaced by U+FFFD. Keys must be 1-79
// printable Latin-1 characters.
std::vector<uint8_t> encode_png(const uint8_t* rgb, int width, int height,
                                const std::map<std::string, std::string>& text = {});

// encode_png, then written atomically (temp file + rename): on failure the target is untouched.
void write_png(const std::string& path, const uint8_t* rgb, int width, int height,
               const std::map<std::string, std::string>& text = {});
// Writes image.rgb with image.text plus `text` (an entry in `text` wins over the same key).
void write_png(const std::string& path, const Image& image,
               const std::map<std::string, std::string>& text = {});

// Decodes any PNG to RGB8, like PIL's Image.convert("RGB") used by diffusers' load_image:
// gray is replicated to R=G=B, palettes are expanded, alpha (and tRNS) is DROPPED without
// compositing, 16-bit samples keep their high byte, gAMA is ignored. Text chunks (tEXt,
// zTXt, iTXt, before or after the image data) are returned in UTF-8 (Latin-1 chunks are
// converted); a repeated key keeps its last value. `name` is used in error messages.
Image decode_png(const uint8_t* data, size_t size, const std::string& name);
// Reads and decodes a file; throws sdpal::Error naming the file if it is missing,
// truncated, corrupt, not a PNG, or larger than 16384 pixels on a side.
Image read_png(const std::string& path);

}  // namespace sdpal
