// One log line per HTTP request: method, path, status, time taken and time spent in the queue,
// as text for people or as a JSON object per line (--log-format json) for log collectors.
#pragma once
#include <string>

namespace sdpal::server {

enum class LogFormat { text, json };

struct RequestLogEntry {
  std::string method, path, remote;
  int status = 0;
  double ms = -1;           // < 0: unknown (the request failed before routing)
  long queue_wait_ms = -1;  // < 0: the request did not queue
};

// text: 2026-12-07T23:59:59Z POST /sdapi/v1/txt2img 200 1234.5 ms queue 12 ms 127.0.0.1
// json: {"time":"...","method":"POST","path":"/sdapi/v1/txt2img","status":200,"ms":1234.5,
//        "queue_ms":12,"remote":"127.0.0.1"}
std::string format_log_line(const RequestLogEntry& e, LogFormat format);

}  // namespace sdpal::server
