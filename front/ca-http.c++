#include "ca-http.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <kj/debug.h>

#include "common/listen-socket.h"
#include "common/log.h"

namespace tlstap {

namespace {

// Accepts per readiness callback: a burst is drained, the loop is not held for long.
constexpr int ACCEPTS_PER_CALLBACK = 16;

kj::Array<kj::byte> bytesOf(kj::StringPtr head, kj::ArrayPtr<const kj::byte> body = nullptr) {
  auto result = kj::heapArray<kj::byte>(head.size() + body.size());
  memcpy(result.begin(), head.begin(), head.size());
  if (body.size() > 0) memcpy(result.begin() + head.size(), body.begin(), body.size());
  return result;
}

// Where the request head ends ("\r\n\r\n", or "\n\n" from a sloppy client), if it has.
bool headComplete(kj::ArrayPtr<const kj::byte> bytes) {
  auto text = reinterpret_cast<const char*>(bytes.begin());
  return memmem(text, bytes.size(), "\r\n\r\n", 4) != nullptr ||
         memmem(text, bytes.size(), "\n\n", 2) != nullptr;
}

kj::String peerOf(const sockaddr_storage& storage, socklen_t length) {
  return SocketAddress::fromSockaddr(reinterpret_cast<const sockaddr*>(&storage), length)
      .toString();
}

}  // namespace

kj::Maybe<kj::String> bindCaHttp(uint16_t port, kj::Vector<kj::AutoCloseFd>& out) {
  SocketAddress any4, any6;
  KJ_ASSERT(parseIpPort(kj::str("0.0.0.0:", port), any4) == nullptr);
  KJ_ASSERT(parseIpPort(kj::str("[::]:", port), any6) == nullptr);
  kj::AutoCloseFd fd4;
  KJ_IF_MAYBE(cause, openListenSocket(any4, fd4)) {
    return kj::str("cannot listen on ", any4.toString(), ": ", *cause);
  }
  out.add(kj::mv(fd4));
  kj::AutoCloseFd fd6;
  KJ_IF_MAYBE(cause, openListenSocket(any6, fd6)) {
    // A host without IPv6 is fine; a port taken on IPv6 is the same error as on IPv4.
    if (cause->endsWith(strerror(EADDRINUSE))) {
      return kj::str("cannot listen on ", any6.toString(), ": ", *cause);
    }
    logDebug("--certhttp: not listening on ", any6.toString(), ": ", *cause);
  } else {
    out.add(kj::mv(fd6));
  }
  return nullptr;
}

CaHttpServer::CaHttpServer(event_base* base, kj::Vector<kj::AutoCloseFd> fds,
                           kj::ArrayPtr<const kj::byte> der, uint32_t timeoutSeconds)
    : base(base), timeoutSeconds(timeoutSeconds) {
  auto head = kj::str("HTTP/1.1 200 OK\r\n"
                      "Content-Type: application/x-x509-ca-cert\r\n"
                      "Content-Length: ", der.size(), "\r\n"
                      "Cache-Control: no-store\r\n"
                      "Connection: close\r\n\r\n");
  okResponse = bytesOf(head, der);
  headResponse = bytesOf(head);
  badMethod = bytesOf("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"
                      "Content-Length: 0\r\nConnection: close\r\n\r\n");
  badRequest = bytesOf("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                       "Connection: close\r\n\r\n");
  for (auto& fd : fds) {
    auto listener = kj::heap<Listener>(Listener{*this, kj::mv(fd), EventHandle()});
    listener->event = EventHandle(base, listener->fd.get(), EV_READ | EV_PERSIST,
                                  &CaHttpServer::onAccept, listener.get());
    listeners.add(kj::mv(listener));
  }
}

CaHttpServer::~CaHttpServer() noexcept(false) {}

void CaHttpServer::start() {
  for (auto& listener : listeners) listener->event.add();
}

void CaHttpServer::onAccept(evutil_socket_t, short, void* arg) {
  auto& listener = *reinterpret_cast<Listener*>(arg);
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { listener.server.accept(listener); })) {
    logError("--certhttp: ", exception->getDescription());
  }
}

void CaHttpServer::accept(Listener& listener) {
  for (int i = 0; i < ACCEPTS_PER_CALLBACK; i++) {
    sockaddr_storage storage;
    socklen_t length = sizeof(storage);
    int fd = ::accept4(listener.fd.get(), reinterpret_cast<sockaddr*>(&storage), &length,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
          errno != ECONNABORTED) {
        logInfo("--certhttp: accept: ", strerror(errno));
      }
      return;
    }
    kj::AutoCloseFd owned(fd);
    if (clients.size() >= MAX_CLIENTS) {
      logDebug("--certhttp: ", MAX_CLIENTS, " clients at once, closing ",
               peerOf(storage, length));
      continue;
    }
    auto client = kj::heap<Client>(Client{*this, kj::mv(owned), peerOf(storage, length),
                                          EventHandle(), EventHandle(), EventHandle(),
                                          kj::heapArray<kj::byte>(MAX_REQUEST_BYTES), 0,
                                          nullptr, false});
    auto self = client.get();
    client->readable = EventHandle(base, fd, EV_READ | EV_PERSIST, &onClientEvent, self);
    client->writable = EventHandle(base, fd, EV_WRITE | EV_PERSIST, &onClientEvent, self);
    client->timer = EventHandle(base, -1, 0, &onClientEvent, self);
    client->timer.addSeconds(timeoutSeconds);
    client->readable.want(true);
    clients.emplace(self, kj::mv(client));
  }
}

void CaHttpServer::onClientEvent(evutil_socket_t, short what, void* arg) {
  auto& client = *reinterpret_cast<Client*>(arg);
  auto& server = client.server;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { server.service(client, what); })) {
    // service() ends with the client freed or still listed; only a listed one is closed here.
    logError("--certhttp: ", exception->getDescription());
    auto found = server.clients.find(&client);
    if (found != server.clients.end()) server.clients.erase(found);
  }
}

// Each step either returns with the client waiting for an event, or ends in finish(), after
// which the client is gone.
void CaHttpServer::service(Client& client, short what) {
  if (what & EV_TIMEOUT) {
    logDebug("--certhttp: ", client.peer, ": timed out");
    finish(client);
  } else if (!client.answered) {
    readRequest(client);
  } else if (client.response.size() > 0) {
    sendResponse(client);
  } else {
    drain(client);
  }
}

void CaHttpServer::readRequest(Client& client) {
  auto space = client.request.slice(client.received, client.request.size());
  ssize_t n = ::recv(client.fd.get(), space.begin(), space.size(), 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    finish(client);
    return;
  }
  if (n == 0) {
    finish(client);
    return;
  }
  client.received += size_t(n);
  auto head = client.request.slice(0, client.received);
  if (!headComplete(head)) {
    if (client.received == client.request.size()) {
      logInfo("--certhttp: ", client.peer, ": request larger than ", MAX_REQUEST_BYTES,
              " bytes");
      answer(client, badRequest);
    }
    return;
  }
  auto text = kj::arrayPtr(reinterpret_cast<const char*>(head.begin()), head.size());
  auto startsWith = [&](kj::StringPtr prefix) {
    return text.size() >= prefix.size() && memcmp(text.begin(), prefix.begin(), prefix.size()) == 0;
  };
  if (startsWith("GET ")) {
    logDebug("--certhttp: ", client.peer, ": sending the root CA certificate");
    answer(client, okResponse);
  } else if (startsWith("HEAD ")) {
    answer(client, headResponse);
  } else {
    const char* space = static_cast<const char*>(memchr(text.begin(), ' ', text.size()));
    const char* newline = static_cast<const char*>(memchr(text.begin(), '\n', text.size()));
    bool looksLikeHttp = space != nullptr && space < newline && space > text.begin();
    answer(client, looksLikeHttp ? badMethod.asPtr() : badRequest.asPtr());
  }
}

void CaHttpServer::answer(Client& client, kj::ArrayPtr<const kj::byte> response) {
  client.answered = true;
  client.response = response;
  client.request = nullptr;  // no longer needed while the answer goes out
  client.readable.want(false);
  sendResponse(client);
}

void CaHttpServer::sendResponse(Client& client) {
  while (client.response.size() > 0) {
    ssize_t n = ::send(client.fd.get(), client.response.begin(), client.response.size(),
                       MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        client.writable.want(true);
        return;
      }
      if (errno == EINTR) continue;
      finish(client);
      return;
    }
    client.response = client.response.slice(n, client.response.size());
  }
  client.writable.want(false);
  // Half-close and read until the client closes: closing with unread bytes (a request body, a
  // pipelined request) would reset the connection and could destroy the answer in flight.
  ::shutdown(client.fd.get(), SHUT_WR);
  client.readable.want(true);
}

void CaHttpServer::drain(Client& client) {
  kj::byte discard[2048];
  // A client that never stops sending is ended by its timer; meanwhile it gets a bounded share
  // of each loop iteration.
  for (int reads = 0; reads < 16; reads++) {
    ssize_t n = ::recv(client.fd.get(), discard, sizeof(discard), 0);
    if (n > 0) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    finish(client);
    return;
  }
}

void CaHttpServer::finish(Client& client) {
  // Freeing the client frees its events, which libevent allows from inside their callbacks.
  auto found = clients.find(&client);
  if (found != clients.end()) clients.erase(found);
}

}  // namespace tlstap
