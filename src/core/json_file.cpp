#include "core/json_file.h"

#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"

namespace sdpal {

nlohmann::ordered_json read_json_document(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open " + what + " file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return nlohmann::ordered_json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
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
