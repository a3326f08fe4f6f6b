#include "fd-stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <kj/debug.h>

#include "common/event-port.h"

namespace tlstap {

namespace {

kj::Exception streamError(int error, kj::StringPtr what) {
  // A peer that went away is DISCONNECTED, which Cap'n Proto and callers treat as "the other side
  // is gone" rather than as a bug.
  auto type = error == EPIPE || error == ECONNRESET || error == ENOTCONN
                  ? kj::Exception::Type::DISCONNECTED
                  : kj::Exception::Type::FAILED;
  return kj::Exception(type, __FILE__, __LINE__, kj::str(what, ": ", strerror(error)));
}

// Waits, as a promise, for one libevent condition (EV_READ, EV_WRITE, EV_CLOSED) on a fd. The
// event is added only while someone waits, and removed when that promise is dropped.
class Readiness {
public:
  Readiness(event_base* base, int fd, short what) : event(base, fd, what, &callback, this) {}
  ~Readiness() noexcept(false) {
    KJ_IF_MAYBE(w, waiter) {
      w->owner = nullptr;
      w->fulfiller.reject(KJ_EXCEPTION(DISCONNECTED, "stream destroyed while waiting"));
    }
  }
  KJ_DISALLOW_COPY(Readiness);

  kj::Promise<void> when() { return kj::newAdaptedPromise<void, Waiter>(*this); }

private:
  class Waiter {
  public:
    Waiter(kj::PromiseFulfiller<void>& fulfiller, Readiness& owner)
        : fulfiller(fulfiller), owner(owner) {
      KJ_REQUIRE(owner.waiter == nullptr, "two waits for the same condition on one stream");
      owner.waiter = *this;
      KJ_REQUIRE(owner.event.add(), "event_add() failed");
    }
    ~Waiter() noexcept(false) {
      KJ_IF_MAYBE(o, owner) {
        o->waiter = nullptr;
        o->event.remove();
      }
    }
    KJ_DISALLOW_COPY(Waiter);

    kj::PromiseFulfiller<void>& fulfiller;
    kj::Maybe<Readiness&> owner;
  };

  static void callback(evutil_socket_t, short, void* arg) {
    // fulfill() only queues a KJ event; nothing here can throw into libevent.
    auto& self = *static_cast<Readiness*>(arg);
    KJ_IF_MAYBE(w, self.waiter) {
      self.waiter = nullptr;
      w->owner = nullptr;  // the event is not persistent: libevent already removed it
      w->fulfiller.fulfill();
    }
  }

  EventHandle event;
  kj::Maybe<Waiter&> waiter;
};

class FdStream final : public kj::AsyncIoStream {
public:
  FdStream(event_base* base, kj::AutoCloseFd fdParam)
      : fd(kj::mv(fdParam)),
        readable(base, fd, EV_READ),
        writable(base, fd, EV_WRITE),
        hangup(base, fd, EV_CLOSED) {
    int flags;
    KJ_SYSCALL(flags = fcntl(fd, F_GETFL));
    if (!(flags & O_NONBLOCK)) {
      KJ_SYSCALL(fcntl(fd, F_SETFL, flags | O_NONBLOCK));
    }
    auto paf = kj::newPromiseAndFulfiller<void>();
    writeFailed = kj::mv(paf.promise);
    writeFailedFulfiller = kj::mv(paf.fulfiller);
  }

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    if (maxBytes == 0) return size_t(0);
    // Returning 0 means EOF to every caller, so always wait for at least one byte.
    return readLoop(static_cast<kj::byte*>(buffer), kj::max(minBytes, size_t(1)), maxBytes, 0);
  }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
    return write(kj::arrayPtr(&piece, 1));
  }

  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    auto iov = kj::heapArrayBuilder<struct iovec>(pieces.size());
    for (auto& piece : pieces) {
      if (piece.size() == 0) continue;
      struct iovec entry;
      entry.iov_base = const_cast<kj::byte*>(piece.begin());
      entry.iov_len = piece.size();
      iov.add(entry);
    }
    return writeLoop(iov.finish(), 0);
  }

  kj::Promise<void> whenWriteDisconnected() override {
    if (disconnected == nullptr) {
      auto hangUp = hangup.when().then([this]() -> kj::Promise<void> {
        struct pollfd p;
        p.fd = fd;
        p.events = 0;  // POLLHUP and POLLERR are always reported
        p.revents = 0;
        if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR))) return kj::READY_NOW;
        // Only the peer's sending side closed; it may still read. EV_CLOSED is level-triggered
        // and would now fire forever, so stop watching: a failed write still reports it.
        return kj::Promise<void>(kj::NEVER_DONE);
      });
      kj::Promise<void> failed = kj::NEVER_DONE;
      KJ_IF_MAYBE(promise, writeFailed) {
        failed = kj::mv(*promise);
        writeFailed = nullptr;
      }
      disconnected = hangUp.exclusiveJoin(kj::mv(failed)).fork();
    }
    return KJ_ASSERT_NONNULL(disconnected).addBranch();
  }

  void shutdownWrite() override {
    // ENOTCONN: the peer is already gone, which is as shut down as it gets.
    if (::shutdown(fd, SHUT_WR) < 0 && errno != ENOTCONN) {
      KJ_FAIL_SYSCALL("shutdown(SHUT_WR)", errno);
    }
  }

  void abortRead() override { ::shutdown(fd, SHUT_RD); }

  void getsockopt(int level, int option, void* value, uint* length) override {
    socklen_t socklen = *length;
    if (::getsockopt(fd, level, option, value, &socklen) < 0) throwSockoptError("getsockopt");
    *length = socklen;
  }

  void setsockopt(int level, int option, const void* value, uint length) override {
    if (::setsockopt(fd, level, option, value, length) < 0) throwSockoptError("setsockopt");
  }

  void getsockname(struct sockaddr* addr, uint* length) override {
    socklen_t socklen = *length;
    KJ_SYSCALL(::getsockname(fd, addr, &socklen));
    *length = socklen;
  }

  void getpeername(struct sockaddr* addr, uint* length) override {
    socklen_t socklen = *length;
    KJ_SYSCALL(::getpeername(fd, addr, &socklen));
    *length = socklen;
  }

  kj::Maybe<int> getFd() const override { return fd.get(); }

private:
  kj::Promise<size_t> readLoop(kj::byte* buffer, size_t minBytes, size_t maxBytes, size_t done) {
    for (;;) {
      ssize_t n = ::read(fd, buffer, maxBytes);
      if (n < 0) {
        int error = errno;
        if (error == EINTR) continue;
        if (error == EAGAIN || error == EWOULDBLOCK) {
          return readable.when().then([this, buffer, minBytes, maxBytes, done]() {
            return readLoop(buffer, minBytes, maxBytes, done);
          });
        }
        return streamError(error, "read");
      }
      if (n == 0) return done;  // EOF
      done += n;
      if (size_t(n) >= minBytes) return done;
      buffer += n;
      minBytes -= n;
      maxBytes -= n;
    }
  }

  kj::Promise<void> writeLoop(kj::Array<struct iovec> iov, size_t first) {
    while (first < iov.size()) {
      size_t count = kj::min(iov.size() - first, size_t(IOV_MAX));
      ssize_t n;
      if (isSocket) {
        struct msghdr message;
        memset(&message, 0, sizeof(message));
        message.msg_iov = &iov[first];
        message.msg_iovlen = count;
        n = ::sendmsg(fd, &message, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) {
          isSocket = false;  // a pipe: plain writev (SIGPIPE is then the program's business)
          continue;
        }
      } else {
        n = ::writev(fd, &iov[first], count);
      }
      if (n < 0) {
        int error = errno;
        if (error == EINTR) continue;
        if (error == EAGAIN || error == EWOULDBLOCK) {
          return writable.when().then([this, iov = kj::mv(iov), first]() mutable {
            return writeLoop(kj::mv(iov), first);
          });
        }
        auto exception = streamError(error, "write");
        if (exception.getType() == kj::Exception::Type::DISCONNECTED) {
          writeFailedFulfiller->fulfill();
        }
        return kj::mv(exception);
      }
      size_t written = n;
      while (written > 0) {
        if (written >= iov[first].iov_len) {
          written -= iov[first].iov_len;
          ++first;
        } else {
          iov[first].iov_base = static_cast<kj::byte*>(iov[first].iov_base) + written;
          iov[first].iov_len -= written;
          written = 0;
        }
      }
    }
    return kj::READY_NOW;
  }

  [[noreturn]] void throwSockoptError(const char* what) {
    int error = errno;
    // Cap'n Proto asks for SO_SNDBUF and falls back to a default window on UNIMPLEMENTED.
    if (error == ENOTSOCK || error == ENOPROTOOPT) {
      kj::throwFatalException(kj::Exception(kj::Exception::Type::UNIMPLEMENTED, __FILE__,
                                            __LINE__, kj::str(what, ": ", strerror(error))));
    }
    kj::throwFatalException(streamError(error, what));
  }

  kj::AutoCloseFd fd;
  // Declared after fd and before the promises that wait on them: destroyed after those promises,
  // and their libevent events are freed before the fd is closed.
  Readiness readable;
  Readiness writable;
  Readiness hangup;
  bool isSocket = true;
  kj::Own<kj::PromiseFulfiller<void>> writeFailedFulfiller;
  kj::Maybe<kj::Promise<void>> writeFailed;
  kj::Maybe<kj::ForkedPromise<void>> disconnected;
};

}  // namespace

kj::Own<kj::AsyncIoStream> wrapSocketFd(event_base* base, kj::AutoCloseFd fd) {
  return kj::heap<FdStream>(base, kj::mv(fd));
}

kj::Promise<kj::Own<kj::AsyncIoStream>> connectSocket(event_base* base,
                                                      const SocketAddress& address) {
  auto name = address.toString();
  int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return streamError(errno, kj::str("connect to ", name, ": socket"));
  kj::AutoCloseFd owned(fd);
  int rc;
  do {
    rc = ::connect(fd, address.get(), address.length);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return wrapSocketFd(base, kj::mv(owned));
  if (errno != EINPROGRESS) {
    return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                         kj::str("connect to ", name, ": ", strerror(errno)));
  }
  // Writable means the connection attempt has ended; SO_ERROR says how.
  auto writable = kj::heap<Readiness>(base, fd, EV_WRITE);
  auto promise = writable->when();
  return promise.attach(kj::mv(writable))
      .then([base, fd = kj::mv(owned), name = kj::mv(name)]() mutable
            -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
        int error = 0;
        socklen_t length = sizeof(error);
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0) error = errno;
        if (error != 0) {
          return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                               kj::str("connect to ", name, ": ", strerror(error)));
        }
        return wrapSocketFd(base, kj::mv(fd));
      });
}

}  // namespace tlstap
