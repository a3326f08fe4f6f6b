// How long a recorder link may stay silent before it counts as gone (--link-timeout, both
// programs). Without a bound, a cut network or a peer that is alive but never answers holds the
// front's record queues (and with --recorder-down block, its clients) until TCP itself gives up,
// which takes about 15 minutes of retransmissions, and a front that vanished keeps its flows open
// in the recorder for as long.
//
//   front:    pings the recorder (proto: Recorder.ping) every third of the timeout; a ping that is
//             not answered within the timeout ends the link, which is then reopened as after any
//             loss (front/recorder-client-link.c++).
//   both:     TCP keepalive and TCP_USER_TIMEOUT on the link's TCP socket, so that the kernel
//             also ends a connection whose peer is unreachable for that long, whether it is idle
//             (keepalive) or has data unacknowledged (user timeout).
#pragma once

#include <stdint.h>
#include <kj/async-io.h>
#include <kj/time.h>

#include "common/options.h"

namespace tlstap {

// Long enough for a ping queued behind a full link backlog (a few MiB) on a slow WAN link.
constexpr uint32_t DEFAULT_LINK_TIMEOUT_SECONDS = 30;

// Registers --link-timeout SECONDS (2 to 3600).
void addLinkTimeoutOption(OptionParser& parser, uint32_t& seconds);

// Sets keepalive and TCP_USER_TIMEOUT on the TCP socket under `stream` so that the kernel ends
// the connection when the peer has been unreachable for about `timeout`. Does nothing for unix
// sockets (their peer cannot vanish without the kernel knowing). Never throws: a socket that
// refuses an option keeps the front's ping as its only bound, which is logged.
void boundLinkSilence(kj::AsyncIoStream& stream, kj::Duration timeout);

}  // namespace tlstap
