// Base64 (RFC 4648, standard alphabet) for the HTTP API's images.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdpal::server {

std::string base64_encode(const uint8_t* data, size_t size);
inline std::string base64_encode(const std::vector<uint8_t>& v) {
  return base64_encode(v.data(), v.size());
}

// Strict decoding: '=' padding optional, ASCII whitespace (line breaks) skipped, anything else
// outside the alphabet rejected. Returns nullopt and sets `why` on the first bad character
// (naming its offset) or a bad length.
std::optional<std::vector<uint8_t>> base64_decode(std::string_view text, std::string* why);

}  // namespace sdpal::server
