// Opening the plaintext (or, later, TLS) connection to the backend: the address is resolved once
// at start-up, and each connection starts a non-blocking connect() that the event loop finishes.
#pragma once

#include <kj/io.h>
#include <kj/string.h>

#include "common/address.h"

namespace tlstap {

// Resolves --connect HOST (a name or a numeric IPv4/IPv6 address) to an address whose port is
// replaced per connection by the -p FORWARD port. Returns why it cannot.
kj::Maybe<kj::String> resolveBackendHost(kj::StringPtr host, SocketAddress& out);

SocketAddress withPort(const SocketAddress& address, uint16_t port);

// Starts connecting a new non-blocking socket to `address`. On success `out` holds the socket
// (connected, or with the connect in progress: wait until it is writable, then call
// connectResult()) and the result is 0; otherwise it is the errno.
int startConnect(const SocketAddress& address, kj::AutoCloseFd& out);

// After the socket became writable: 0 when connected, else the errno of the failed connect.
int connectResult(int fd);

// Low latency for a proxy: small writes (a TLS record, an HTTP header) go out at once.
void setNoDelay(int fd);

// Makes close() send a TCP RST instead of a FIN: how the front passes an abort on.
void setResetOnClose(int fd);

}  // namespace tlstap
