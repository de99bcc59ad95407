#include "tools/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace sdpal {

namespace {

constexpr int kBarWidth = 20;
constexpr double kMinRedrawSeconds = 0.1;  // caps redraws when steps are very fast

std::string format_duration(double seconds) {
  const long s = std::lround(std::max(seconds, 0.0));
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof(buf), "%lds", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof(buf), "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%ldh%02ldm%02lds", s / 3600, (s / 60) % 60, s % 60);
  }
  return buf;
}

}  // namespace

Progress::Progress(std::string label, int total, bool enabled, std::FILE* out)
    : label_(std::move(label)),
      total_(std::max(total, 0)),
      enabled_(enabled && out != nullptr && ::isatty(::fileno(out)) == 1),
      out_(out),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (drawn_ && !finished_ && enabled_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

void Progress::set_total(int total) { total_ = std::max(total, 0); }

std::string Progress::format_line(const std::string& label, int done, int total, double elapsed_s,
                                  bool finished) {
  done = std::clamp(done, 0, std::max(total, 0));
  const int filled =
      total > 0 ? static_cast<int>(static_cast<int64_t>(done) * kBarWidth / total) : 0;
  std::string line = label + "  ";
  const std::string count = std::to_string(done) + "/" + std::to_string(total);
  // Right-align the count so the bar does not jump as the digits grow.
  const size_t width = 2 * std::to_string(total).size() + 1;
  line += std::string(width > count.size() ? width - count.size() : 0, ' ') + count;
  line += " [" + std::string(filled, '#') + std::string(kBarWidth - filled, '-') + "]  ";

  char rate[32];
  if (done == 0 || elapsed_s <= 0) {
    std::snprintf(rate, sizeof(rate), "? it/s");
  } else if (done >= elapsed_s) {
    std::snprintf(rate, sizeof(rate), "%.2f it/s", done / elapsed_s);
  } else {
    std::snprintf(rate, sizeof(rate), "%.2f s/it", elapsed_s / done);
  }
  line += rate;
  if (finished) {
    line += "  " + format_duration(elapsed_s);
  } else if (done > 0 && elapsed_s > 0) {
    line += "  ETA " + format_duration(elapsed_s / done * (total - done));
  } else {
    line += "  ETA ?";
  }
  return line;
}

void Progress::draw(int done, bool finished) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  // "\r" returns to the line start, "\x1b[K" clears what a longer previous line left behind.
  const std::string line = format_line(label_, done, total_, elapsed, finished);
  std::fprintf(out_, "\r%s\x1b[K", line.c_str());
  if (finished) std::fputc('\n', out_);
  std::fflush(out_);
  drawn_ = true;
  last_draw_ = now;
}

void Progress::update(int done) {
  done_ = done;
  if (!enabled_ || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  const bool due = std::chrono::duration<double>(now - last_draw_).count() >= kMinRedrawSeconds;
  if (!drawn_ || due || done >= total_) draw(done, false);
}

void Progress::finish() {
  if (finished_) return;
  if (enabled_) draw(done_, true);
  finished_ = true;
}

}  // namespace sdpal
