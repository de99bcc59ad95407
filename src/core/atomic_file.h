// Atomic file output: write to "<path>.tmp-<pid>" beside the target, fsync, rename over it.
// If anything fails the temp file is removed and the target is left untouched.
#pragma once
#include <cstdio>
#include <functional>
#include <string>

namespace sdpal {

// Calls write(FILE*) on a temp file, then renames it to `path`. Throws sdpal::Error on failure.
void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write);

}  // namespace sdpal
