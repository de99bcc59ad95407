// Whether an HTTP client is still there while its request waits in the queue. cpp-httplib 0.11
// gives a handler no socket, so the connection's socket is found by its address pair (the handler
// runs while the library holds it open, so the descriptor cannot be reused meanwhile) and asked
// whether the peer has closed it.
#pragma once
#include <string>

namespace sdpal::server {

class ConnectionProbe {
 public:
  // Finds the socket whose local port is `local_port` and whose peer is remote_addr:remote_port.
  ConnectionProbe(int local_port, const std::string& remote_addr, int remote_port);
  // True once the peer has closed or reset the connection. False while it is open, and always
  // when the socket was not found (a probe that cannot tell never cancels anything).
  bool peer_closed() const;

 private:
  int fd_ = -1;
};

// cpp-httplib 0.11 listens with a backlog of 5 (compiled into Debian's library): a burst of
// clients overflows the accept queue and their connections fail. Finds this process's listening
// socket on `port` and listens again with `backlog` (Linux and the BSDs update the backlog of a
// listening socket this way). Returns whether the socket was found.
bool widen_listen_backlog(int port, int backlog);

}  // namespace sdpal::server
