#include "tls-link-source.h"

#include <kj/debug.h>

#include "common/fd-stream.h"
#include "common/link-timeout.h"

namespace tlstap {

kj::Maybe<kj::String> TlsLinkSource::create(event_base* base, kj::Timer& timer,
                                            kj::StringPtr hostPort, const TlsLinkOptions& link,
                                            kj::Duration silence,
                                            kj::Own<TlsLinkSource>& out) {
  kj::String host, port;
  KJ_IF_MAYBE(error, splitHostPort(hostPort, host, port)) return kj::str("--recorder: ", *error);
  SocketAddress address;
  KJ_IF_MAYBE(error, resolveHostPort(hostPort, address)) return kj::str("--recorder: ", *error);
  kj::Maybe<kj::Own<TlsLink>> tls;
  if (link.given()) {
    kj::Own<TlsLink> loaded;
    KJ_IF_MAYBE(error, TlsLink::load(link, TlsLink::Role::CLIENT, loaded)) return kj::mv(*error);
    tls = kj::mv(loaded);
  } else if (!address.isLoopback()) {
    // The link carries decrypted traffic: off this host it is never sent in the clear.
    return kj::str("--recorder: ", hostPort, " (", address.toString(), ") is not on loopback: "
                   "the link needs TLS (give --link-cert with --link-ca or --link-pin, or "
                   "--link-psk)");
  }
  out = kj::heap<TlsLinkSource>(base, timer, kj::heapString(hostPort), kj::mv(host), address,
                                kj::mv(tls), silence);
  return nullptr;
}

TlsLinkSource::TlsLinkSource(event_base* base, kj::Timer& timer, kj::String hostPort,
                             kj::String host, SocketAddress address,
                             kj::Maybe<kj::Own<TlsLink>> tls, kj::Duration silence)
    : base(base), timer(timer), hostPort(kj::mv(hostPort)), host(kj::mv(host)),
      address(address), tls(kj::mv(tls)), silence(silence) {}

kj::Promise<kj::Own<kj::AsyncIoStream>> TlsLinkSource::connect() {
  auto connected = connectSocket(base, address).then([this](kj::Own<kj::AsyncIoStream> stream) {
    boundLinkSilence(*stream, silence);
    return stream;
  });
  KJ_IF_MAYBE(link, tls) {
    auto& tlsLink = **link;
    connected = connected.then([this, &tlsLink](kj::Own<kj::AsyncIoStream> stream) {
      return tlsLink.wrap(kj::mv(stream), host);
    });
  }
  auto timeout = timer.afterDelay(CONNECT_TIMEOUT).then([]() -> kj::Own<kj::AsyncIoStream> {
    kj::throwFatalException(KJ_EXCEPTION(
        DISCONNECTED, kj::str("no connection within ", CONNECT_TIMEOUT / kj::SECONDS, " s")));
  });
  return connected.exclusiveJoin(kj::mv(timeout));
}

}  // namespace tlstap
