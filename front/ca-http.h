// --certhttp PORT: a tiny plain-HTTP server that hands out the root CA certificate, so clients
// can fetch and install it (PolarProxy does the same). Any GET (or HEAD) gets 200 with the DER
// certificate as application/x-x509-ca-cert; nothing else is served. It runs on the worker's
// libevent loop and can never stall it: requests are bounded in size, clients in number, and each
// connection in time.
#pragma once

#include <event2/event.h>
#include <stdint.h>
#include <unordered_map>
#include <kj/array.h>
#include <kj/io.h>
#include <kj/memory.h>
#include <kj/string.h>
#include <kj/vector.h>

#include "common/address.h"
#include "common/event-handle.h"

namespace tlstap {

// Binds PORT on 0.0.0.0 and [::] (IPv6 only where the host has it), at start-up while the front
// may still bind ports below 1024. Returns the cause (the caller names --certhttp) or nullptr.
kj::Maybe<kj::String> bindCaHttp(uint16_t port, kj::Vector<kj::AutoCloseFd>& out);

class CaHttpServer {
public:
  // Most a request's head may take: a browser's GET with its headers fits many times over.
  static constexpr size_t MAX_REQUEST_BYTES = 8192;
  // Clients served at once; more are closed at accept.
  static constexpr size_t MAX_CLIENTS = 64;
  // A client has this long to send its request and read the answer.
  static constexpr uint32_t TIMEOUT_SECONDS = 10;

  CaHttpServer(event_base* base, kj::Vector<kj::AutoCloseFd> listeners,
               kj::ArrayPtr<const kj::byte> der, uint32_t timeoutSeconds = TIMEOUT_SECONDS);
  ~CaHttpServer() noexcept(false);
  KJ_DISALLOW_COPY(CaHttpServer);

  void start();
  size_t clientCount() const { return clients.size(); }

private:
  struct Listener {
    CaHttpServer& server;
    kj::AutoCloseFd fd;
    EventHandle event;
  };
  struct Client {
    CaHttpServer& server;
    kj::AutoCloseFd fd;
    kj::String peer;
    EventHandle readable;
    EventHandle writable;
    EventHandle timer;
    kj::Array<kj::byte> request;
    size_t received = 0;
    kj::ArrayPtr<const kj::byte> response;  // what is left to send, in one of the server's arrays
    bool answered = false;                  // response chosen; then drained to EOF
  };

  event_base* base;
  uint32_t timeoutSeconds;
  kj::Array<kj::byte> okResponse;    // 200 with the certificate
  kj::Array<kj::byte> headResponse;  // the same headers, no body
  kj::Array<kj::byte> badMethod;     // 405
  kj::Array<kj::byte> badRequest;    // 400, also for a head that is too large
  kj::Vector<kj::Own<Listener>> listeners;
  std::unordered_map<Client*, kj::Own<Client>> clients;

  static void onAccept(evutil_socket_t, short, void* listener);
  static void onClientEvent(evutil_socket_t, short what, void* client);
  void accept(Listener& listener);
  void service(Client& client, short what);
  void readRequest(Client& client);
  void answer(Client& client, kj::ArrayPtr<const kj::byte> response);
  void sendResponse(Client& client);
  void drain(Client& client);
  void finish(Client& client);
};

}  // namespace tlstap
