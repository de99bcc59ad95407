#include "server/request_log.h"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

namespace sdpal::server {

namespace {

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Paths come from clients: control characters and non-ASCII bytes are escaped so that a request
// cannot forge log lines.
std::string printable(const std::string& s) {
  std::string out;
  for (const unsigned char c : s.substr(0, 512)) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

std::string format_log_line(const RequestLogEntry& e, LogFormat format) {
  const double ms = e.ms >= 0 ? std::round(e.ms * 10) / 10 : -1;
  if (format == LogFormat::json) {
    nlohmann::ordered_json j = {{"time", utc_now()},
                        {"method", printable(e.method)},
                        {"path", printable(e.path)},
                        {"status", e.status},
                        {"ms", ms >= 0 ? nlohmann::ordered_json(ms) : nlohmann::ordered_json(nullptr)},
                        {"queue_ms", e.queue_wait_ms >= 0 ? nlohmann::ordered_json(e.queue_wait_ms)
                                                          : nlohmann::ordered_json(nullptr)},
                        {"remote", printable(e.remote)}};
    return j.dump();
  }
  char timing[64] = "- ms";
  if (ms >= 0) std::snprintf(timing, sizeof timing, "%.1f ms", ms);
  std::string line = utc_now() + " " + printable(e.method) + " " + printable(e.path) + " " +
                     std::to_string(e.status) + " " + timing;
  line += e.queue_wait_ms >= 0 ? " queue " + std::to_string(e.queue_wait_ms) + " ms" : " queue -";
  return line + " " + printable(e.remote);
}

}  // namespace sdpal::server
