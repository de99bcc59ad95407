// `sdpal serve`'s HTTP side on cpp-httplib: the A1111 (/sdapi/v1/...) and OpenAI
// (/v1/images/generations) endpoints, /health, the embedded web page, authentication, the body
// and per-request limits, one log line per request, and the hand-over of generations to the
// single worker (JobQueue + Generator). The request bodies are parsed by server/request.h.
#pragma once
#include <cstdio>
#include <memory>
#include <string>

#include "server/generator.h"
#include "server/request.h"
#include "server/request_log.h"

namespace sdpal::server {

struct ServeOptions {
  std::string model;       // path of the startup model (empty: models_dir's first entry)
  std::string models_dir;  // models a request may switch to by name ("" : none)
  std::string host = "127.0.0.1";
  int port = 7860;       // 0: any free port (see ApiServer::port)
  std::string api_key;   // Bearer token
  std::string api_auth;  // "user:pass" for Basic auth
  Limits limits;
  size_t queue_size = 16;
  size_t max_body = 32u << 20;  // bytes
  int read_timeout_s = 10;      // per read of a request (slow clients are cut off)
  int http_threads = 0;         // 0: queue_size + 8
  std::string save_images;      // output folder ("" : images are not saved)
  ModelLoadSettings load;
  LogFormat log_format = LogFormat::text;
  std::FILE* log = stderr;  // nullptr: no request log
  std::string version;      // e.g. "sdpal 0.1.0", for infotexts and /health
};

// Throws sdpal::Error when `o` is unsafe or inconsistent (a non-loopback host without
// authentication, a malformed --api-auth, an output folder that does not exist, bad limits).
void check_serve_options(const ServeOptions& o);

class ApiServer {
 public:
  // Checks the options and loads the startup model; throws sdpal::Error.
  explicit ApiServer(ServeOptions o);
  ~ApiServer();
  // Binds host:port (port 0 picks a free one) and returns the port; throws sdpal::Error.
  int bind();
  int port() const;
  // Serves until stop(); bind() first.
  void run();
  // Stops run() from any thread (also from a signal-watching thread).
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdpal::server
