#include "backend-connector.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace tlstap {

kj::Maybe<kj::String> resolveBackendHost(kj::StringPtr host, SocketAddress& out) {
  if (host.size() == 0) return kj::str("empty host name");
  // The port is a placeholder: each -p mapping supplies its own FORWARD port.
  bool bareIpv6 = host.findFirst(':') != nullptr && !host.startsWith("[");
  auto hostPort = bareIpv6 ? kj::str("[", host, "]:1") : kj::str(host, ":1");
  return resolveHostPort(hostPort, out);
}

SocketAddress withPort(const SocketAddress& address, uint16_t port) {
  SocketAddress result = address;
  if (result.family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&result.storage)->sin_port = htons(port);
  } else if (result.family() == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&result.storage)->sin6_port = htons(port);
  }
  return result;
}

int startConnect(const SocketAddress& address, kj::AutoCloseFd& out) {
  int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  kj::AutoCloseFd owned(fd);
  setNoDelay(fd);
  if (::connect(fd, address.get(), address.length) < 0 && errno != EINPROGRESS &&
      errno != EINTR) {
    return errno;
  }
  out = kj::mv(owned);
  return 0;
}

int connectResult(int fd) {
  int error = 0;
  socklen_t length = sizeof(error);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0) return errno;
  return error;
}

void setNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void setResetOnClose(int fd) {
  struct linger linger = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger));
}

}  // namespace tlstap
