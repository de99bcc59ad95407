#include "core/json_file.h"

#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/limits.h"

namespace sdpal {

void check_json_depth(std::string_view text, const std::string& what) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limits::kMaxJsonDepth)
        fail(what + ": JSON nested deeper than " + std::to_string(limits::kMaxJsonDepth) +
             " levels (at byte " + std::to_string(i) + ")");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

void throw_json_error(const std::string& what, const std::string& why) {
  fail(what + ": not valid JSON (" + why + ")");
}

std::string read_text_file(const std::string& path, uint64_t max_bytes, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open " + what + " file " + path);
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size >= 0 && static_cast<uint64_t>(size) > max_bytes)
    fail(path + ": " + what + " file of " + std::to_string(size) + " bytes exceeds the bound of " +
         std::to_string(max_bytes) + " bytes");
  f.seekg(0, std::ios::beg);
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail("cannot read " + what + " file " + path);
  return ss.str();
}

nlohmann::ordered_json read_json_document(const std::string& path, const std::string& what) {
  const std::string text = read_text_file(path, limits::kMaxJsonFileBytes, what);
  check_json_depth(text, path);
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, but also out_of_range for a number like 1e400.
    fail(path + ": not valid JSON (corrupted or truncated " + what + " file?): " + e.what());
  }
}

void write_json_document(const std::string& path, const nlohmann::ordered_json& j) {
  const std::string t = j.dump(2) + "\n";
  write_file_atomic(path, [&](std::FILE* f) {
    if (std::fwrite(t.data(), 1, t.size(), f) != t.size()) fail("cannot write " + path);
  });
}

std::string quote_python_number_words(const std::string& text) {
  std::string json;
  json.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      json += c;
      if (c == '\\' && i + 1 < text.size())
        json += text[++i];
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (const char* word : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::char_traits<char>::length(word);
      if (text.compare(i, n, word) == 0) {
        json += '"' + std::string(word) + '"';
        i += n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) json += c;
  }
  return json;
}

}  // namespace sdpal
