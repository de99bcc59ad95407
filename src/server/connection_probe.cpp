#include "server/connection_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

namespace sdpal::server {

namespace {

// The address and port of a sockaddr, as cpp-httplib writes remote_addr (inet_ntop).
bool address_of(const sockaddr_storage& a, std::string* host, int* port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
    *port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    *port = ntohs(v6->sin6_port);
  } else {
    return false;
  }
  *host = buf;
  return true;
}

bool matches(int fd, int local_port, const std::string& remote_addr, int remote_port) {
  sockaddr_storage local{}, peer{};
  socklen_t n = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &n) != 0) return false;
  n = sizeof peer;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &n) != 0) return false;
  std::string lh, ph;
  int lp = 0, pp = 0;
  return address_of(local, &lh, &lp) && address_of(peer, &ph, &pp) && lp == local_port &&
         pp == remote_port && ph == remote_addr;
}

// The descriptors that may be open: /proc/self/fd on Linux, else the first few thousand.
template <typename F>
void for_each_fd(F&& f) {
  std::error_code ec;
  if (std::filesystem::is_directory("/proc/self/fd", ec)) {
    std::vector<int> fds;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
         it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos)
        fds.push_back(std::stoi(name));
    }
    for (int fd : fds)
      if (f(fd)) return;
    return;
  }
  for (int fd = 0; fd < 4096; ++fd)
    if (f(fd)) return;
}

}  // namespace

bool widen_listen_backlog(int port, int backlog) {
  bool found = false;
  for_each_fd([&](int fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening)
      return false;
    sockaddr_storage local{};
    socklen_t n = sizeof local;
    std::string host;
    int p = 0;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &n) != 0 ||
        !address_of(local, &host, &p) || p != port)
      return false;
    found = listen(fd, backlog) == 0;
    return true;
  });
  return found;
}

ConnectionProbe::ConnectionProbe(int local_port, const std::string& remote_addr, int remote_port) {
  if (local_port <= 0 || remote_port <= 0) return;
  for_each_fd([&](int fd) {
    if (!matches(fd, local_port, remote_addr, remote_port)) return false;
    fd_ = fd;
    return true;
  });
}

bool ConnectionProbe::peer_closed() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return true;
  if (!(p.revents & POLLIN)) return false;
  // Readable: either the next pipelined request (still there) or end of stream (gone).
  char c;
  const ssize_t r = recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return r == 0;
}

}  // namespace sdpal::server
