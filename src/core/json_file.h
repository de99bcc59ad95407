// JSON documents of our own (analyses, calibrations): read with their key order kept, errors that
// name the file and what it should have been, and atomic writes. Also the bounded parsing of any
// untrusted JSON text (core/limits.h: depth, file size).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace sdpal {

// Throws sdpal::Error "<what>: JSON nested deeper than N levels" when arrays/objects in `text`
// nest deeper than limits::kMaxJsonDepth (a linear scan that skips strings, run before parsing so
// that a hostile document cannot make the parser recurse or allocate for its nesting).
void check_json_depth(std::string_view text, const std::string& what);

[[noreturn]] void throw_json_error(const std::string& what, const std::string& why);

// Parses untrusted JSON text: depth-checked first, and every parser exception (syntax errors, but
// also out_of_range for numbers like 1e400) becomes sdpal::Error "<what>: not valid JSON (...)".
template <class Json = nlohmann::json>
Json parse_json_text(std::string_view text, const std::string& what) {
  check_json_depth(text, what);
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw_json_error(what, e.what());
  }
}

// The whole file as text; throws naming the file if it cannot be read or holds more than
// `max_bytes` (checked before reading).
std::string read_text_file(const std::string& path, uint64_t max_bytes, const std::string& what);

// `what` names the document in errors: "cannot open <what> file P" / "P: not valid JSON
// (corrupted or truncated <what> file?)". Bounded: limits::kMaxJsonFileBytes, kMaxJsonDepth.
nlohmann::ordered_json read_json_document(const std::string& path, const std::string& what);
// Pretty-printed (2 spaces, final newline), via write_file_atomic.
void write_json_document(const std::string& path, const nlohmann::ordered_json& j);

// Python's json module writes NaN, Infinity and -Infinity as bare words, which are not JSON
// (diffusers' configs hold e.g. "lambda_min_clipped": -Infinity). Returns `text` with those words
// outside strings quoted ("-Infinity"), for readers that accept them as strings.
std::string quote_python_number_words(const std::string& text);

}  // namespace sdpal
