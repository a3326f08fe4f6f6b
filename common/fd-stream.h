// A kj::AsyncIoStream over a non-blocking socket, woken by libevent, so that Cap'n Proto RPC (or
// anything else written against KJ streams) runs on the thread's event_base (see event-port.h).
#pragma once

#include <event2/event.h>
#include <kj/async-io.h>
#include <kj/io.h>

#include "common/address.h"

namespace tlstap {

// Takes ownership of `fd` and makes it non-blocking. Reads and writes try the system call first
// and only wait for libevent readiness when the socket would block. Writes never raise SIGPIPE
// (MSG_NOSIGNAL); a peer that went away fails the write with a DISCONNECTED exception.
//
// whenWriteDisconnected() resolves when the socket reports a hang-up or error, or a write failed
// because the peer is gone. A peer that only shut down its sending side (a TCP half-close) is not
// a write disconnection; after one, only a failed write is noticed.
//
// The event_base must outlive the stream, and a KjOnLibevent (event-port.h) must run on it.
kj::Own<kj::AsyncIoStream> wrapSocketFd(event_base* base, kj::AutoCloseFd fd);

// Connects a new non-blocking TCP socket to `address` without blocking the loop, and resolves
// with the stream once connected; rejects (DISCONNECTED) with "connect to ADDRESS: cause".
kj::Promise<kj::Own<kj::AsyncIoStream>> connectSocket(event_base* base,
                                                      const SocketAddress& address);

}  // namespace tlstap
