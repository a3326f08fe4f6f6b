// A recorder at HOST:PORT (--recorder HOST:PORT): each connect() opens a TCP connection on the
// thread's libevent loop without blocking it, and runs the TLS handshake of the link
// (common/tls-link.h), which authenticates the recorder and lets it authenticate this front.
// Without link credentials the connection stays plain TCP, which only a loopback address allows
// (checked when the source is made).
#pragma once

#include <event2/event.h>
#include <kj/timer.h>

#include "common/address.h"
#include "common/tls-link.h"
#include "front/recorder-link-source.h"

namespace tlstap {

class TlsLinkSource final : public RecorderLinkSource {
public:
  // How long one connect() may take, TCP connection and TLS handshake together.
  static constexpr auto CONNECT_TIMEOUT = 10 * kj::SECONDS;

  // Resolves HOST now (at start-up, before any sandbox closes the resolver's files) and loads
  // the link credentials. Returns "--recorder: cause" or "--link-...: cause", or nullptr with
  // `out` set. `link` may be empty only for a loopback address.
  // `silence` bounds how long the kernel keeps a connection whose peer is unreachable
  // (common/link-timeout.h).
  static kj::Maybe<kj::String> create(event_base* base, kj::Timer& timer, kj::StringPtr hostPort,
                                      const TlsLinkOptions& link, kj::Duration silence,
                                      kj::Own<TlsLinkSource>& out);

  TlsLinkSource(event_base* base, kj::Timer& timer, kj::String hostPort, kj::String host,
                SocketAddress address, kj::Maybe<kj::Own<TlsLink>> tls, kj::Duration silence);

  kj::Promise<kj::Own<kj::AsyncIoStream>> connect() override;
  kj::StringPtr describe() const override { return hostPort; }

private:
  event_base* base;
  kj::Timer& timer;
  kj::String hostPort;  // as given, for log lines
  kj::String host;      // the name the recorder's certificate must carry (with --link-ca)
  SocketAddress address;
  kj::Maybe<kj::Own<TlsLink>> tls;
  kj::Duration silence;
};

}  // namespace tlstap
