// Serves fronts: each connected stream gets its own Cap'n Proto two-party RPC system whose
// bootstrap capability is a RecorderService. A connection that breaks the RPC protocol (garbage,
// oversized messages) ends alone, with a log line; the flows of other connections go on.
//
// On a TCP listener with the TLS link (common/tls-link.h), a connection is served only once its
// TLS handshake has authenticated the front: one that fails (wrong certificate or key, plain TCP,
// garbage, no handshake in time) is closed with one log line before any RPC message is read.
#pragma once

#include <sys/types.h>
#include <kj/async-io.h>
#include <kj/string.h>
#include <kj/timer.h>

#include "common/link-timeout.h"
#include "common/tls-link.h"

#include "recorder/packet-sink.h"
#include "recorder/recorder-service.h"

namespace tlstap {

class LinkServer {
public:
  LinkServer(PacketSink& sink, FlowCounters& counters);
  ~LinkServer() noexcept(false);
  KJ_DISALLOW_COPY(LinkServer);

  // Fronts on a unix socket are accepted only from these uids (SO_PEERCRED); anyone else is
  // logged and closed before a single RPC message is read. Never called: no check (TCP
  // listeners are never checked this way: they have no peer credentials).
  void allowPeers(kj::Array<uid_t> uids) { allowedUids = kj::mv(uids); }

  // A front on TCP that has been unreachable this long is dropped by the kernel (keepalive and
  // TCP_USER_TIMEOUT, common/link-timeout.h), and with it its flows: a front that reconnects
  // resumes them on its new connection.
  void setLinkTimeout(kj::Duration timeout) { linkTimeout = timeout; }

  // How a listener authenticates its fronts: the link's credentials, and the timer that bounds
  // a handshake.
  struct Tls {
    TlsLink& link;
    kj::Timer& timer;
  };

  // Accepts fronts until cancelled. `name` is the listening address, for log lines. With `tls`,
  // each connection is served after its TLS handshake, and refused if it fails.
  kj::Promise<void> acceptFrom(kj::Own<kj::ConnectionReceiver> listener, kj::String name,
                               kj::Maybe<Tls> tls = nullptr);
  // Serves one connected stream; resolves when the front disconnects.
  kj::Promise<void> serve(kj::Own<kj::AsyncIoStream> stream, kj::String peerName);

  size_t connectionCount() const { return connections; }
  // Resolves once no front is connected (at shutdown: every queued message has been handled).
  kj::Promise<void> whenAllDisconnected();

  // How long a connecting front has to complete its TLS handshake.
  static constexpr auto HANDSHAKE_TIMEOUT = 10 * kj::SECONDS;

private:
  void connectionEnded();
  // True if the peer may send flows; logs a refusal.
  bool peerAllowed(kj::AsyncIoStream& stream, kj::StringPtr listenerName);
  kj::Promise<void> authenticate(Tls tls, kj::Own<kj::AsyncIoStream> stream, kj::String peer);

  class ErrorHandler final : public kj::TaskSet::ErrorHandler {
  public:
    void taskFailed(kj::Exception&& exception) override;
  };

  PacketSink& sink;
  FlowCounters& counters;
  size_t connections = 0;
  kj::Maybe<kj::Array<uid_t>> allowedUids;
  kj::Duration linkTimeout = DEFAULT_LINK_TIMEOUT_SECONDS * kj::SECONDS;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> idleWaiters;
  ErrorHandler errorHandler;
  // Last: destroying it cancels the connections, whose clean-up uses the members above.
  kj::TaskSet tasks;
};

}  // namespace tlstap
