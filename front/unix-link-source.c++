#include "unix-link-source.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <kj/debug.h>

#include "common/fd-stream.h"

namespace tlstap {

UnixLinkSource::UnixLinkSource(event_base* base, SocketAddress address, kj::String name)
    : base(base), address(address), name(kj::mv(name)) {}

kj::Promise<kj::Own<kj::AsyncIoStream>> UnixLinkSource::connect() {
  // Non-blocking, so a recorder whose listen backlog is full fails this attempt (EAGAIN) instead
  // of stalling the event loop; a unix connect otherwise completes at once.
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return KJ_EXCEPTION(FAILED, kj::str("cannot connect to ", name, ": socket: ", strerror(errno)));
  }
  kj::AutoCloseFd owned(fd);
  if (::connect(fd, address.get(), address.length) != 0) {
    return KJ_EXCEPTION(DISCONNECTED, kj::str("cannot connect to ", name, ": ", strerror(errno)));
  }
  int buffer = LOCAL_LINK_BUFFER_BYTES;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  return wrapSocketFd(base, kj::mv(owned));
}

}  // namespace tlstap
