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

}  // namespace sdpal
