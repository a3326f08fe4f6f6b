#include "plain-stream.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <kj/debug.h>

namespace tlstap {

void PlainStream::fail(const char* what, int error) {
  if (error == ECONNRESET || error == EPIPE || error == ECONNABORTED) {
    kj::throwFatalException(kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                                          kj::str(peer, " reset the connection")));
  }
  kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                        kj::str(peer, " ", what, ": ", strerror(error))));
}

TlsResult PlainStream::recv(kj::ArrayPtr<kj::byte> buffer) {
  for (;;) {
    ssize_t n = ::recv(socket, buffer.begin(), buffer.size(), 0);
    if (n > 0) return {TlsStatus::DONE, size_t(n)};
    if (n == 0) return {TlsStatus::END, 0};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      againForWrite = false;
      return {TlsStatus::AGAIN, 0};
    }
    fail("read", errno);
  }
}

TlsResult PlainStream::send(kj::ArrayPtr<const kj::byte> bytes) {
  for (;;) {
    ssize_t n = ::send(socket, bytes.begin(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) return {TlsStatus::DONE, size_t(n)};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      againForWrite = true;
      return {TlsStatus::AGAIN, 0};
    }
    fail("write", errno);
  }
}

}  // namespace tlstap
