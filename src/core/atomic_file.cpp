#include "core/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace sdpal {

void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("cannot write " + path + ": " + std::strerror(errno));
  try {
    write(f);
    if (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0)
      fail("cannot write " + path + ": " + std::strerror(errno));
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    fail("cannot write " + path + ": " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    fail("cannot rename temp file to " + path + ": " + std::strerror(e));
  }
}

}  // namespace sdpal
