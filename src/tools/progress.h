// A one-line progress bar on stderr, redrawn in place with '\r':
//   sampling  12/20 [############--------]  1.85 it/s  ETA 4s
// Rates below one step a second are shown as seconds per step ("3.20 s/it"), like tqdm.
// Silent when disabled (--quiet) or when the stream is not a terminal, so logs and pipes
// stay clean.
#pragma once
#include <chrono>
#include <cstdio>
#include <string>

namespace sdpal {

class Progress {
 public:
  Progress(std::string label, int total, bool enabled, std::FILE* out = stderr);
  ~Progress();  // ends the line if finish() was not called
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void set_total(int total);
  void update(int done);  // `done` steps completed so far
  void finish();          // final redraw with the total time, then a newline

  bool active() const { return enabled_; }

  // The text of one redraw (no '\r'); elapsed_s is the time since the bar was created.
  // Exposed for tests: it depends on nothing but its arguments.
  static std::string format_line(const std::string& label, int done, int total, double elapsed_s,
                                 bool finished = false);

 private:
  void draw(int done, bool finished);

  std::string label_;
  int total_;
  bool enabled_;
  std::FILE* out_;
  int done_ = 0;
  bool drawn_ = false;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace sdpal
