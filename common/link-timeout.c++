#include "link-timeout.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "common/log.h"

namespace tlstap {

void addLinkTimeoutOption(OptionParser& parser, uint32_t& seconds) {
  parser.addOption("link-timeout", 0, "SECONDS",
                   "give up a recorder link silent this long, and reconnect (default 30)",
                   [&seconds](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     KJ_IF_MAYBE(number, parseUnsigned(value, 2, 3600)) {
                       seconds = uint32_t(*number);
                       return nullptr;
                     }
                     return kj::str("'", value, "' is not a number of seconds (2-3600)");
                   });
}

void boundLinkSilence(kj::AsyncIoStream& stream, kj::Duration timeout) {
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    struct sockaddr_storage local = {};
    uint length = sizeof(local);
    stream.getsockname(reinterpret_cast<sockaddr*>(&local), &length);
    if (local.ss_family != AF_INET && local.ss_family != AF_INET6) return;
    int seconds = int(kj::max(timeout / kj::SECONDS, int64_t(3)));
    // Idle for half the timeout, then three probes a sixth apart: gone after about `timeout` of
    // silence.
    int one = 1;
    int idle = kj::max(seconds / 2, 1);
    int interval = kj::max(seconds / 6, 1);
    int probes = 3;
    unsigned userTimeoutMs = unsigned(timeout / kj::MILLISECONDS);
    stream.setsockopt(SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    stream.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    stream.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
    stream.setsockopt(IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes));
    stream.setsockopt(IPPROTO_TCP, TCP_USER_TIMEOUT, &userTimeoutMs, sizeof(userTimeoutMs));
  })) {
    logWarning("recorder link: cannot set TCP keepalive (", exception->getDescription(),
               "); a vanished peer is noticed only by its silence");
  }
}

}  // namespace tlstap
