#include "core/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc >= 2.28)
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "core/crash_point.h"
#include "core/error.h"

namespace sdpal {

namespace fs = std::filesystem;

namespace {

bool pid_running(long pid) {
  return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

// Removes entries "<prefix><pid>" in `dir` whose pid no longer runs: temps of killed writers.
void remove_stale_temps(const fs::path& dir, const std::string& prefix) {
  std::error_code ec;
  fs::directory_iterator it(dir.empty() ? fs::path(".") : dir, ec);
  if (ec) return;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return;
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    const long pid = std::stol(digits);
    if (pid == ::getpid() || pid_running(pid)) continue;
    std::error_code ignored;
    fs::remove_all(it->path(), ignored);
  }
}

// Makes a rename or a new file in `dir` durable (power loss; a kill needs nothing).
void sync_folder(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void sync_file(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) fail("cannot write " + p.string() + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (rc != 0) fail(write_error_message(p.string(), e));
}

}  // namespace

std::string write_error_message(const std::string& path, int err) {
  if (err == ENOSPC || err == EDQUOT || err == EFBIG)
    return "disk full or file too large writing " + path + " (" + std::strerror(err) + ")";
  return "cannot write " + path + ": " + std::strerror(err);
}

void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write) {
  const fs::path target(path);
  const std::string prefix = target.filename().string() + ".tmp-";
  remove_stale_temps(target.parent_path(), prefix);
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("cannot write " + path + ": " + std::strerror(errno));
  crash_point();  // an empty temp file
  try {
    try {
      write(f);
      crash_point();  // the data written, partly still buffered
      if (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0) fail(write_error_message(path, errno));
    } catch (...) {
      // A failed fwrite leaves errno and the stream's error flag: say what happened (disk full)
      // whatever the writer threw for its short write.
      const int e = errno;
      if (std::ferror(f)) fail(write_error_message(path, e));
      throw;
    }
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  crash_point();  // the temp file complete and synced
  if (std::fclose(f) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    fail(write_error_message(path, e));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    fail("cannot rename temp file to " + path + ": " + std::strerror(e));
  }
  crash_point();  // the new version in place
  sync_folder(target.parent_path());
}

fs::path temp_folder_for(const fs::path& target) {
  return target.parent_path() /
         ("." + target.filename().string() + ".sdpal-tmp-" + std::to_string(::getpid()));
}

void replace_folder_atomic(const fs::path& tmp, const fs::path& target) {
  remove_stale_temps(target.parent_path(), "." + target.filename().string() + ".sdpal-tmp-");
  remove_stale_temps(target.parent_path(), "." + target.filename().string() + ".sdpal-old-");
  try {
    for (const auto& e : fs::recursive_directory_iterator(tmp))
      if (e.is_regular_file()) sync_file(e.path());
    for (const auto& e : fs::recursive_directory_iterator(tmp))
      if (e.is_directory()) sync_folder(e.path());
    sync_folder(tmp);
  } catch (const fs::filesystem_error& e) {
    fail("cannot write " + target.string() + ": " + e.what());
  }
  crash_point();  // the new folder complete under its temp name
  fs::path old;   // where the previous version waits to be removed
  if (fs::exists(target)) {
    old = tmp;
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) != 0) {
      if (errno != EINVAL && errno != ENOSYS)
        fail("cannot replace " + target.string() + ": " + std::strerror(errno));
      // A file system without RENAME_EXCHANGE: the target name is missing for a moment between
      // the two renames (a kill there leaves the previous version under the "-old-" name).
      old = target.parent_path() /
            ("." + target.filename().string() + ".sdpal-old-" + std::to_string(::getpid()));
      std::error_code ec;
      fs::remove_all(old, ec);
      fs::rename(target, old, ec);
      if (ec) fail("cannot replace " + target.string() + ": " + ec.message());
    }
  }
  if (old != tmp && std::rename(tmp.c_str(), target.c_str()) != 0)
    fail("cannot rename " + tmp.string() + " to " + target.string() + ": " + std::strerror(errno));
  crash_point();  // the new version in place; with an exchange the old one is under tmp
  sync_folder(target.parent_path());
  if (!old.empty()) {
    std::error_code ec;
    fs::remove_all(old, ec);  // the previous version; a leftover is removed by the next write
    crash_point();
  }
}

}  // namespace sdpal
