// Test helpers for `sdpal serve`: an ApiServer on 127.0.0.1 at a free port, run on its own
// thread, and clients that talk to it over real HTTP (cpp-httplib) or raw TCP (for requests no
// well-behaved client would send).
#pragma once
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "formats/image.h"
#include "server/api_server.h"

namespace sdpal::test {

// ../shared/fixtures/demo-fashion/model and tiny-sd1/model.
std::string demo_model_dir();
std::string tiny_sd1_dir();

// Options for a server on the demo model at a free port, logging nowhere.
server::ServeOptions demo_serve_options();

class TestServer {
 public:
  explicit TestServer(server::ServeOptions o);
  ~TestServer();
  int port() const { return port_; }
  // A client with the given read timeout (seconds).
  std::unique_ptr<httplib::Client> client(int timeout_s = 120) const;

 private:
  server::ApiServer server_;
  int port_;
  std::thread thread_;
};

// The response body as JSON (fails the test and returns null if it is not JSON).
nlohmann::json body_json(const httplib::Result& r);
// A base64 PNG from a response, decoded (with its text chunks).
Image decode_b64_png(const std::string& b64);
std::string b64_png(const Image& img);

// Sends `bytes` on a fresh TCP connection to 127.0.0.1:port, then reads until the server closes
// the connection or `wait_s` pass. `half_close`: shut the writing side after sending.
struct RawExchange {
  std::string response;      // what the server sent
  bool closed = false;       // the server closed the connection within wait_s
  double seconds = 0;        // time until close (or wait_s)
  double first_byte_s = -1;  // time until the first byte of the response (-1: none came)
};
RawExchange raw_exchange(int port, const std::string& bytes, double wait_s,
                         bool half_close = false);

// Peak resident set size of this process so far, in MiB (VmHWM).
double peak_rss_mib();

}  // namespace sdpal::test
