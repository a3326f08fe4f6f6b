// One event loop's share of the front: the connections accepted on it, the connection limit,
// and the buffers its connections share. Everything here runs on one thread; what all workers
// share (certificates, TLS settings, the backend address) is the read-only FrontContext.
#pragma once

#include <event2/event.h>
#include <stdint.h>
#include <unordered_map>
#include <kj/array.h>
#include <kj/function.h>
#include <kj/io.h>
#include <kj/memory.h>
#include <kj/vector.h>

#include "common/address.h"
#include "common/event-handle.h"
#include "front/flow-recorder.h"

namespace tlstap {

class BackendSessionCache;
class BackendTlsConfig;
class CertForger;
class CertStore;
class Connection;
class DnsResolver;
class ForgedCertCache;
class TlsServerConfig;

// Set up by main() before the loop runs; read-only afterwards.
struct FrontContext {
  const CertStore& certs;
  const TlsServerConfig& tls;
  kj::Maybe<kj::StringPtr> noSni;  // the name a ClientHello without SNI is taken to ask for
  kj::Maybe<SocketAddress> backendHost;  // --connect HOST (each route supplies the port);
                                         // nullptr: route by SNI through the worker's resolver
  kj::StringPtr backendHostName;   // --connect HOST as given
  kj::Maybe<const BackendTlsConfig&> backendTls;  // re-encrypting; nullptr with --terminate
  uint32_t handshakeTimeoutSeconds;
  uint32_t idleTimeoutSeconds;
  // Forges certificates for names no --servercert covers; without it such names are refused.
  kj::Maybe<const CertForger&> forger = nullptr;
};

// Where a listener's connections go: the -p mapping as the connection path needs it.
struct Route {
  uint16_t pcapPort;
  uint16_t forwardPort;
};

// What the connections of one worker have done (the front's counters line).
struct ConnectionCounters {
  uint64_t accepted = 0;
  uint64_t refused = 0;   // closed before relaying began (ClientHello, handshake, backend, timeout)
  uint64_t relaying = 0;  // relaying now; each has one recorded flow
  uint64_t bytesFromClient = 0;  // relayed client -> backend, by connections that have closed
  uint64_t bytesFromServer = 0;  // relayed backend -> client, by connections that have closed
};

class Worker {
public:
  Worker(event_base* base, const FrontContext& context, kj::Maybe<FlowRecorder&> recorder,
         uint32_t maxConnections);
  ~Worker() noexcept(false);
  KJ_DISALLOW_COPY(Worker);

  event_base* base() const { return eventBase; }
  const FrontContext& context() const { return frontContext; }
  kj::Maybe<FlowRecorder&> recorder() { return flowRecorder; }
  // SNI routing: this loop's resolver, set up by main() before the loop runs.
  kj::Maybe<DnsResolver&> resolver() { return dnsResolver; }
  void setResolver(DnsResolver& resolver) { dnsResolver = resolver; }
  // A read buffer shared by this worker's connections, only used within one callback.
  kj::ArrayPtr<kj::byte> scratch() { return scratchBuffer; }
  // This loop's forged certificates, when the context has a forger.
  kj::Maybe<ForgedCertCache&> forgedCerts();
  // This loop's session tickets from TLS backends, when re-encrypting.
  kj::Maybe<BackendSessionCache&> backendSessions();

  // Takes over a freshly accepted socket. Never throws: a connection that cannot be set up is
  // closed with a log line.
  void accept(kj::AutoCloseFd fd, const SocketAddress& peer, Route route);

  size_t size() const { return connections.size(); }
  bool full() const { return connections.size() >= maxConnections; }
  // Called whenever a connection ends while the worker was full, so accepting can resume.
  void setOnRoom(kj::Function<void()> callback) { onRoom = kj::mv(callback); }

  // A connection that has closed hands itself back; it is freed from the event loop shortly
  // after, once no callback of it is on the stack.
  void retire(Connection& connection);

  // Shutdown: ends every connection now (recorded as an orderly close).
  void closeAll();

  // Counted by the connections themselves. liveCounters() adds the bytes of open connections.
  ConnectionCounters& counters() { return connectionCounters; }
  ConnectionCounters liveCounters() const;

private:
  event_base* eventBase;
  const FrontContext& frontContext;
  kj::Maybe<FlowRecorder&> flowRecorder;
  kj::Maybe<DnsResolver&> dnsResolver;
  uint32_t maxConnections;
  kj::Array<kj::byte> scratchBuffer;
  kj::Maybe<kj::Own<ForgedCertCache>> forged;
  kj::Maybe<kj::Own<BackendSessionCache>> backendSessionCache;
  std::unordered_map<Connection*, kj::Own<Connection>> connections;
  kj::Vector<kj::Own<Connection>> retired;
  EventHandle reaper;
  kj::Maybe<kj::Function<void()>> onRoom;
  ConnectionCounters connectionCounters;

  static void reap(evutil_socket_t, short, void* self);
};

}  // namespace tlstap
