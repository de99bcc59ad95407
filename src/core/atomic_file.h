// Crash-safe file and folder output. A reader of the target path sees either nothing, the previous
// complete version or the new complete version, whenever the writing process is killed:
//  - a file is written to "<path>.tmp-<pid>" beside the target, flushed, fsynced and renamed over
//    it (rename(2) replaces atomically);
//  - a folder (a compressed or random model) is built under a temp name beside the target and
//    swapped in with renameat2(RENAME_EXCHANGE), so the target name never goes missing.
// Temp files and folders that a killed process left behind (their pid no longer runs) are removed
// by the next write of the same target. On failure the temp is removed and the target untouched;
// a full disk or RLIMIT_FSIZE gives "disk full or file too large writing PATH".
#pragma once
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

namespace sdpal {

// Calls write(FILE*) on a temp file, then renames it to `path`. Throws sdpal::Error on failure.
// A write error inside `write` (a short fwrite) may be reported by throwing anything: the stream's
// error state decides the message.
void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write);

// "<dir>/.<name>.sdpal-tmp-<pid>": where a folder for `target` is built before
// replace_folder_atomic swaps it in.
std::filesystem::path temp_folder_for(const std::filesystem::path& target);

// Makes the finished folder `tmp` (from temp_folder_for) appear as `target`: its files are fsynced,
// then it takes the target's place in one step (an existing target, empty or replaced with
// --force, is exchanged with it and removed afterwards). Throws sdpal::Error on failure.
void replace_folder_atomic(const std::filesystem::path& tmp, const std::filesystem::path& target);

// The message for a failed write of `path` with errno `err`: ENOSPC, EDQUOT and EFBIG read
// "disk full or file too large writing PATH (...)".
std::string write_error_message(const std::string& path, int err);

}  // namespace sdpal
