#include "support/server_harness.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "formats/png.h"
#include "server/base64.h"
#include "support/fixtures.h"

namespace sdpal::test {

std::string demo_model_dir() { return model_dir("demo-fashion"); }
std::string tiny_sd1_dir() { return model_dir("tiny-sd1"); }

server::ServeOptions demo_serve_options() {
  server::ServeOptions o;
  o.model = demo_model_dir();
  o.host = "127.0.0.1";
  o.port = 0;
  o.log = nullptr;
  o.version = "sdpal test";
  o.read_timeout_s = 2;
  return o;
}

TestServer::TestServer(server::ServeOptions o) : server_(std::move(o)), port_(server_.bind()) {
  thread_ = std::thread([this] { server_.run(); });
}

TestServer::~TestServer() {
  server_.stop();
  thread_.join();
}

std::unique_ptr<httplib::Client> TestServer::client(int timeout_s) const {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
  c->set_read_timeout(timeout_s, 0);
  c->set_write_timeout(timeout_s, 0);
  c->set_connection_timeout(10, 0);
  return c;
}

nlohmann::json body_json(const httplib::Result& r) {
  if (!r) {
    ADD_FAILURE() << "no response: " << httplib::to_string(r.error());
    return nullptr;
  }
  try {
    return nlohmann::json::parse(r->body);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON (" << e.what() << "): " << r->body.substr(0, 300);
    return nullptr;
  }
}

Image decode_b64_png(const std::string& b64) {
  std::string why;
  const auto bytes = server::base64_decode(b64, &why);
  EXPECT_TRUE(bytes.has_value()) << why;
  if (!bytes) return {};
  return decode_png(bytes->data(), bytes->size(), "response image");
}

std::string b64_png(const Image& img) {
  return server::base64_encode(encode_png(img.rgb.data(), img.width, img.height, img.text));
}

RawExchange raw_exchange(int port, const std::string& bytes, double wait_s, bool half_close) {
  RawExchange r;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ADD_FAILURE() << "cannot connect to port " << port;
    close(fd);
    return r;
  }
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may refuse and close before reading everything
    sent += size_t(n);
  }
  if (half_close) shutdown(fd, SHUT_WR);
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    const double left =
        wait_s - std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, int(left * 1000) + 1) <= 0) continue;
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      r.closed = true;
      break;
    }
    if (r.response.empty())
      r.first_byte_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.response.append(buf, size_t(n));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  close(fd);
  return r;
}

double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

}  // namespace sdpal::test
