#include "listen-socket.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace tlstap {

namespace {

kj::String causeOf(const char* step, int error) { return kj::str(step, ": ", strerror(error)); }

// A unix socket file left behind by a process that died would make bind() fail. Remove it only
// if it is a socket nobody listens on, never a regular file someone pointed us at by mistake.
kj::Maybe<kj::String> removeStaleUnixSocket(const sockaddr_un* address) {
  struct stat info;
  if (lstat(address->sun_path, &info) != 0) return nullptr;
  if (!S_ISSOCK(info.st_mode)) {
    return kj::str(address->sun_path, " exists and is not a socket");
  }
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return causeOf("socket", errno);
  kj::AutoCloseFd closer(probe);
  if (connect(probe, reinterpret_cast<const sockaddr*>(address), sizeof(*address)) == 0) {
    return kj::str(address->sun_path, " is in use by a running process");
  }
  if (unlink(address->sun_path) != 0) return causeOf("unlink", errno);
  return nullptr;
}

}  // namespace

kj::Maybe<kj::String> openListenSocket(const SocketAddress& address, kj::AutoCloseFd& out) {
  int fd = socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return causeOf("socket", errno);
  kj::AutoCloseFd socketFd(fd);
  int one = 1;
  if (address.family() == AF_UNIX) {
    auto un = reinterpret_cast<const sockaddr_un*>(&address.storage);
    KJ_IF_MAYBE(error, removeStaleUnixSocket(un)) return kj::mv(*error);
    // Create the socket file with no access for others from the first moment: the link carries
    // decrypted traffic.
    mode_t previous = umask(0077);
    int rc = bind(fd, address.get(), address.length);
    int bindError = errno;
    umask(previous);
    if (rc != 0) return causeOf("bind", bindError);
  } else {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (address.family() == AF_INET6) {
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, address.get(), address.length) != 0) return causeOf("bind", errno);
  }
  if (listen(fd, 1024) != 0) return causeOf("listen", errno);
  out = kj::mv(socketFd);
  return nullptr;
}

uint16_t boundPort(int fd) {
  struct sockaddr_storage storage;
  socklen_t length = sizeof(storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return 0;
  return SocketAddress::fromSockaddr(reinterpret_cast<sockaddr*>(&storage), length).port();
}

}  // namespace tlstap
