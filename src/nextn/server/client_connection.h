// Whether the client of a request is still there. cpp-httplib 0.11 (Debian 12's) does not tell a
// handler when its client goes away, and a blocked writer only notices at its next write; so the
// connection's socket is found among this process's sockets by its two addresses (a TCP
// connection is exactly its local and remote address and port), and polled for the peer's close
// (POLLRDHUP: the client sent FIN, or reset the connection). A client that only shuts its sending
// side down while it waits for the answer counts as gone too, as nginx counts it.
#pragma once

#include <string>

namespace nextn::server {

class ClientConnection {
 public:
  // -1 ports or no match: a connection that never reports closed.
  ClientConnection(const std::string& local_addr, int local_port, const std::string& remote_addr, int remote_port);
  bool closed() const;
  bool found() const { return fd_ >= 0; }
  int fd() const { return fd_; }  // the connection's socket (httplib's), -1 when not found

 private:
  int fd_ = -1;
};

}  // namespace nextn::server
