// Socket addresses as users write them: "IP:PORT", "[IPv6]:PORT", "[IP:]PORT", "unix:/path".
// Parsing returns the reason a text is not an address, so options can say what was wrong.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <kj/string.h>

namespace tlstap {

struct SocketAddress {
  struct sockaddr_storage storage = {};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  const struct sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  uint16_t port() const;
  bool isLoopback() const;
  // 0.0.0.0 or :: (which connect() takes for this machine).
  bool isUnspecified() const;
  // "127.0.0.1:80", "[::1]:80" or "unix:/path".
  kj::String toString() const;

  static SocketAddress fromSockaddr(const struct sockaddr* address, socklen_t length);
};

// "IP:PORT" or "[IPv6]:PORT" (a numeric address; port 1-65535).
kj::Maybe<kj::String> parseIpPort(kj::StringPtr text, SocketAddress& out);

// "[IP:]PORT": a port alone binds to defaultIp.
kj::Maybe<kj::String> parseOptionalIpPort(kj::StringPtr text, kj::StringPtr defaultIp,
                                          SocketAddress& out);

// "unix:/path" or "IP:PORT".
kj::Maybe<kj::String> parseListenAddress(kj::StringPtr text, SocketAddress& out);

// Splits "HOST:PORT" or "[IPv6]:PORT" into the host (without brackets) and the port text.
kj::Maybe<kj::String> splitHostPort(kj::StringPtr text, kj::String& host, kj::String& port);

// "HOST:PORT" where HOST is a numeric address or a name resolved now (getaddrinfo).
kj::Maybe<kj::String> resolveHostPort(kj::StringPtr text, SocketAddress& out);

}  // namespace tlstap
