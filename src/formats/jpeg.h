// JPEG input via libjpeg(-turbo): baseline and progressive, grey / YCbCr / CMYK-free RGB output.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "formats/image.h"

namespace sdpal {

// True if `data` starts with the JPEG SOI marker (FF D8 FF).
bool is_jpeg(const uint8_t* data, size_t size);

// Decodes a JPEG to RGB8 (grey is replicated; CMYK/YCCK are refused). The frame size is checked
// against `max_side` before any pixel memory is allocated. Throws sdpal::Error naming `name` on a
// truncated, corrupt or unsupported file.
Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name, int max_side);

}  // namespace sdpal
