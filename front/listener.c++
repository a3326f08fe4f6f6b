#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <kj/debug.h>

#include "common/listen-socket.h"
#include "common/log.h"

namespace tlstap {

namespace {

// Accepts per readiness callback: enough to drain a burst, few enough to keep relaying.
constexpr int ACCEPTS_PER_CALLBACK = 64;
// After EMFILE/ENFILE: how long to stop accepting so that connections can close.
constexpr uint32_t RETRY_AFTER_FD_EXHAUSTION_SECONDS = 1;
// A flood keeps the front at its limit: say so once a minute, not once per connection.
constexpr int64_t LIMIT_LOG_INTERVAL_US = 60 * 1000000LL;

int64_t monotonicUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

bool isIpv4Any(const SocketAddress& address) {
  if (address.family() != AF_INET) return false;
  return reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_addr.s_addr ==
         htonl(INADDR_ANY);
}

SocketAddress ipv6Any(uint16_t port) {
  SocketAddress result;
  auto v6 = reinterpret_cast<sockaddr_in6*>(&result.storage);
  v6->sin6_family = AF_INET6;
  v6->sin6_addr = in6addr_any;
  v6->sin6_port = htons(port);
  result.length = sizeof(*v6);
  return result;
}

SocketAddress localAddress(int fd, const SocketAddress& fallback) {
  struct sockaddr_storage storage;
  socklen_t length = sizeof(storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return fallback;
  return SocketAddress::fromSockaddr(reinterpret_cast<sockaddr*>(&storage), length);
}

}  // namespace

kj::Maybe<kj::String> bindListeners(kj::ArrayPtr<const PortMapping> ports,
                                    kj::Vector<BoundListener>& out) {
  for (auto& mapping : ports) {
    Route route = {mapping.pcapPort, mapping.forwardPort};
    kj::AutoCloseFd fd;
    KJ_IF_MAYBE(cause, openListenSocket(mapping.listen, fd)) {
      return kj::str("-p: cannot listen on ", mapping.listen.toString(), ": ", *cause);
    }
    auto address = localAddress(fd.get(), mapping.listen);
    out.add(BoundListener{kj::mv(fd), address, route});

    if (isIpv4Any(mapping.listen)) {
      auto any6 = ipv6Any(address.port());
      kj::AutoCloseFd fd6;
      KJ_IF_MAYBE(cause, openListenSocket(any6, fd6)) {
        // A host without IPv6 is fine; a port taken on IPv6 is the same error as on IPv4.
        if (cause->endsWith(strerror(EADDRINUSE))) {
          return kj::str("-p: cannot listen on ", any6.toString(), ": ", *cause);
        }
        logDebug("not listening on ", any6.toString(), ": ", *cause);
      } else {
        out.add(BoundListener{kj::mv(fd6), localAddress(fd6.get(), any6), route});
      }
    }
  }
  return nullptr;
}

Acceptor::Acceptor(Worker& worker, kj::Vector<BoundListener> listeners)
    : worker(worker),
      retryTimer(worker.base(), -1, 0, &Acceptor::onRetry, this) {
  for (auto& bound : listeners) {
    auto entry = kj::heap<Listening>(Listening{*this, kj::mv(bound), EventHandle()});
    entry->event = EventHandle(worker.base(), entry->bound.fd.get(), EV_READ | EV_PERSIST,
                               &Acceptor::onReadable, entry.get());
    listening.add(kj::mv(entry));
  }
  worker.setOnRoom([this]() {
    if (!closed && paused) {
      logDebug("below --max-connections again, accepting");
      resume();
    }
  });
}

Acceptor::~Acceptor() noexcept(false) {
  worker.setOnRoom([]() {});
}

void Acceptor::start() {
  for (auto& entry : listening) {
    logDebug("listening on ", entry->bound.address.toString(), " (recorded as port ",
             entry->bound.route.pcapPort, ", forwarded to port ", entry->bound.route.forwardPort,
             ")");
  }
  resume();
}

void Acceptor::pause() {
  paused = true;
  for (auto& entry : listening) entry->event.remove();
}

void Acceptor::resume() {
  if (closed) return;
  paused = false;
  for (auto& entry : listening) entry->event.add();
}

void Acceptor::close() {
  closed = true;
  retryTimer.remove();
  listening.clear();
}

void Acceptor::onReadable(evutil_socket_t, short, void* arg) {
  auto& listener = *reinterpret_cast<Listening*>(arg);
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    listener.acceptor.acceptFrom(listener);
  })) {
    logError("accepting on ", listener.bound.address.toString(), ": ",
             exception->getDescription());
  }
}

void Acceptor::onRetry(evutil_socket_t, short, void* arg) {
  auto& acceptor = *reinterpret_cast<Acceptor*>(arg);
  if (!acceptor.worker.full()) acceptor.resume();
}

void Acceptor::acceptFrom(Listening& listener) {
  for (int i = 0; i < ACCEPTS_PER_CALLBACK && !closed; i++) {
    if (worker.full()) {
      // Leave further clients in the kernel's backlog until a connection closes.
      int64_t now = monotonicUs();
      if (limitLoggedUs < 0 || now - limitLoggedUs >= LIMIT_LOG_INTERVAL_US) {
        logWarning("--max-connections reached (", worker.size(),
                   " open): not accepting until a connection closes");
        limitLoggedUs = now;
      }
      pause();
      return;
    }
    struct sockaddr_storage storage;
    socklen_t length = sizeof(storage);
    int fd = ::accept4(listener.bound.fd.get(), reinterpret_cast<sockaddr*>(&storage), &length,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int error = errno;
      if (error == EAGAIN || error == EWOULDBLOCK) return;
      if (error == EINTR || error == ECONNABORTED || error == EPROTO) continue;
      if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
        logWarning("accept on ", listener.bound.address.toString(), ": ", strerror(error),
                   "; pausing for ", RETRY_AFTER_FD_EXHAUSTION_SECONDS, " s");
        pause();
        retryTimer.addSeconds(RETRY_AFTER_FD_EXHAUSTION_SECONDS);
        return;
      }
      logError("accept on ", listener.bound.address.toString(), ": ", strerror(error));
      return;
    }
    auto peer = SocketAddress::fromSockaddr(reinterpret_cast<sockaddr*>(&storage), length);
    worker.accept(kj::AutoCloseFd(fd), peer, listener.bound.route);
  }
}

}  // namespace tlstap
