// Tells whether the client of a request that is still being answered has gone away. cpp-httplib
// 0.11 gives a handler no access to its socket, so the socket is found once by its address pair
// (the request's local and remote address and port, unique among open connections) among the
// process's descriptors, and then watched for the peer's close without reading from it.
// Linux only (/proc/self/fd, POLLRDHUP). A probe that cannot find its socket never reports the
// client gone: it errs on the side of finishing the work.
#pragma once

#include <string>

namespace dsv4::server {

class ConnectionProbe {
 public:
  ConnectionProbe(std::string local_addr, int local_port, std::string remote_addr, int remote_port);

  // True once the peer has closed (or reset) the connection.
  bool client_gone();

 private:
  bool matches(int fd) const;
  int find_socket() const;

  std::string local_addr_;
  int local_port_;
  std::string remote_addr_;
  int remote_port_;
  int fd_ = -1;
  bool searched_ = false;
};

}  // namespace dsv4::server
