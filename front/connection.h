// One proxied connection, from accept to close:
//
//   PEEKING              recv(MSG_PEEK) until the whole ClientHello is in (SNI, ALPN), without
//                        consuming it
//   RESOLVING            without --connect: the name looked up in DNS (routing by SNI)
//   CONNECTING           certificate chosen for the name; non-blocking connect to the backend
//   BACKEND_HANDSHAKING  (re-encrypting, no --terminate) TLS client handshake with the backend,
//                        forwarding the client's SNI and ALPN; the backend's ALPN choice is what
//                        the client will be offered (DESIGN.md, "Findings")
//   HANDSHAKING          GnuTLS server handshake with that certificate
//   RELAYING             the Relay moves plaintext both ways; the recording sees every byte
//
// Until the client's handshake starts, a failure is answered with a fatal alert (refuse()). The
// stages before RELAYING share the handshake timeout; relaying has the idle timeout. Every
// libevent callback enters through one boundary that catches any exception and closes this
// connection only.
#pragma once

#include <gnutls/gnutls.h>
#include <stdint.h>
#include <kj/io.h>
#include <kj/memory.h>
#include <kj/string.h>

#include "common/address.h"
#include "front/cert-forge.h"
#include "front/client-hello.h"
#include "common/event-handle.h"
#include "front/dns-resolver.h"
#include "front/flow-recorder.h"
#include "front/plain-stream.h"
#include "front/relay.h"
#include "front/tls-session.h"
#include "front/worker.h"

namespace tlstap {

class Connection {
public:
  Connection(Worker& worker, kj::AutoCloseFd client, const SocketAddress& peer, Route route);
  ~Connection() noexcept(false);
  KJ_DISALLOW_COPY(Connection);

  // Starts waiting for the ClientHello. Never throws.
  void start();
  // Shutdown: closes now; a relayed connection is recorded as closed in order. Never throws.
  void stop();
  // Plaintext relayed from `side` so far (0 before relaying).
  uint64_t bytesFrom(Side side) const;

private:
  enum class Stage {
    PEEKING, RESOLVING, CONNECTING, BACKEND_HANDSHAKING, HANDSHAKING, RELAYING, DONE
  };

  Worker& worker;
  const FrontContext& context;
  SocketAddress peer;
  Route route;
  int64_t acceptedUs;
  Stage stage = Stage::PEEKING;

  size_t peekedBytes = 0;  // what the last peek saw, to tell new bytes from an EOF
  ClientHelloInfo hello;
  gnutls_certificate_credentials_t credentials = nullptr;
  // Keeps a forged certificate alive while the session uses it (the cache may drop it).
  kj::Maybe<kj::Own<ForgedCredentials>> forgedCredentials;
  kj::StringPtr alpnOffer;
  kj::String backendAlpn;  // the protocol the TLS backend chose, offered to the client
  SocketAddress backendAddress;
  // SNI routing: the addresses the name resolved to, tried in turn until one connects.
  kj::Array<SocketAddress> routeAddresses;
  size_t nextRouteAddress = 0;
  uint64_t lastActivity = 0;    // Relay::activity() when the idle clock was last restarted
  int64_t lastActivityUs = 0;   // monotonic time of that

  // Declaration order is teardown order reversed: the flow (whose drain callback wakes us) and
  // the relay go first, then the TLS session, then the events, and the sockets last.
  kj::AutoCloseFd clientFd;
  kj::AutoCloseFd backendFd;
  EventHandle clientReadable;
  EventHandle clientWritable;
  EventHandle backendReadable;
  EventHandle backendWritable;
  EventHandle timer;
  EventHandle wake;
  kj::Maybe<kj::Own<DnsLookup>> lookup;
  kj::Maybe<DnsAnswer> dnsAnswer;  // handed from the lookup's callback to onResolved()
  kj::Maybe<kj::Own<TlsSession>> tls;         // with the client
  kj::Maybe<kj::Own<TlsSession>> backendTls;  // with the backend, when re-encrypting
  kj::Maybe<kj::Own<PlainStream>> backendPlain;  // with the backend, with --terminate
  kj::Maybe<kj::Own<RecordedFlow>> flow;
  kj::Maybe<kj::Own<Relay>> relay;

  // The only way in from libevent: runs `method`, catches everything, closes on an exception.
  template <void (Connection::*method)()>
  static void boundary(evutil_socket_t, short, void* self);

  void onSocketReady();
  void onTimer();

  void peekHello();
  void chooseCertificate();
  void connectBackend();
  kj::StringPtr routeName() const;
  void resolveBackend();
  void onResolved();
  bool connectNextAddress(int error);
  void startBackendConnect();
  void backendConnected();
  void startBackendHandshake();
  void continueBackendHandshake();
  // A certificate for routeName() from the worker's forged cache; false (refused) if forging fails.
  bool forgeCertificate();
  void startHandshake();
  void continueHandshake();
  void startRelay();
  void pumpRelay();
  void endRelay();

  // Refuses a connection whose ClientHello was only peeked at: consumes it, answers with a
  // fatal alert and closes, after one log line.
  void refuse(uint8_t alert, kj::StringPtr why);
  void fail(kj::Exception&& exception) noexcept;
  // Ends the recording (if any), closes both sockets (with RST when `reset`) and hands this
  // connection back to the worker.
  void close(bool reset, kj::Maybe<Side> resetBy) noexcept;
  void closeRecording(kj::Maybe<Side> resetBy) noexcept;
  void setClientLowWater(int bytes);
  kj::String who() const;
  kj::String backendWho() const;
  // The name the backend is asked for (SNI) and must prove (its certificate): the client's SNI,
  // else the --nosni name, else the --connect host.
  kj::StringPtr backendName() const;
};

}  // namespace tlstap
