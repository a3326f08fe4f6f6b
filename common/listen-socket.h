// Listening sockets for both programs, made the same way everywhere: non-blocking, close-on-exec,
// SO_REUSEADDR, IPv6 sockets IPv6-only, unix sockets replacing a stale socket file and
// readable only by their owner.
#pragma once

#include <kj/io.h>
#include <kj/string.h>

#include "common/address.h"

namespace tlstap {

// Returns the cause on failure ("address in use", ...), or nullptr with `out` listening.
kj::Maybe<kj::String> openListenSocket(const SocketAddress& address, kj::AutoCloseFd& out);

// The port a listening socket actually got (useful after binding port 0 in tests).
uint16_t boundPort(int fd);

}  // namespace tlstap
