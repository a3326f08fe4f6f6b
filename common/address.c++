#include "address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>
#include <sys/un.h>

#include "options.h"

namespace tlstap {

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  }
  return 0;
}

bool SocketAddress::isLoopback() const {
  if (family() == AF_INET) {
    auto addr = ntohl(reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr);
    return (addr >> 24) == 127;
  }
  if (family() == AF_INET6) {
    auto& addr = reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(&addr);
  }
  return family() == AF_UNIX;
}

bool SocketAddress::isUnspecified() const {
  if (family() == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr == INADDR_ANY;
  }
  if (family() == AF_INET6) {
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr);
  }
  return false;
}

kj::String SocketAddress::toString() const {
  char text[INET6_ADDRSTRLEN] = "";
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, text,
              sizeof(text));
    return kj::str(text, ":", port());
  }
  if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, text,
              sizeof(text));
    return kj::str("[", text, "]:", port());
  }
  if (family() == AF_UNIX) {
    return kj::str("unix:", reinterpret_cast<const sockaddr_un*>(&storage)->sun_path);
  }
  return kj::str("(unknown address family ", family(), ")");
}

SocketAddress SocketAddress::fromSockaddr(const struct sockaddr* address, socklen_t length) {
  SocketAddress result;
  if (length > sizeof(result.storage)) length = sizeof(result.storage);
  memcpy(&result.storage, address, length);
  result.length = length;
  return result;
}

namespace {

kj::Maybe<kj::String> numericAddress(kj::StringPtr host, kj::StringPtr portText,
                                     SocketAddress& out) {
  KJ_IF_MAYBE(port, parseUnsigned(portText, 1, 65535)) {
    out = SocketAddress();
    auto v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
    auto v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (inet_pton(AF_INET, host.cStr(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(*port);
      out.length = sizeof(*v4);
      return nullptr;
    }
    if (inet_pton(AF_INET6, host.cStr(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(*port);
      out.length = sizeof(*v6);
      return nullptr;
    }
    return kj::str("'", host, "' is not an IPv4 or IPv6 address");
  }
  return kj::str("'", portText, "' is not a port (1-65535)");
}

}  // namespace

kj::Maybe<kj::String> splitHostPort(kj::StringPtr text, kj::String& host, kj::String& port) {
  if (text.startsWith("[")) {
    KJ_IF_MAYBE(close, text.findFirst(']')) {
      if (*close + 1 >= text.size() || text[*close + 1] != ':') {
        return kj::str("'", text, "': expected [IPv6]:PORT");
      }
      host = kj::heapString(text.slice(1, *close));
      port = kj::heapString(text.slice(*close + 2));
      return nullptr;
    }
    return kj::str("'", text, "': missing ']'");
  }
  KJ_IF_MAYBE(colon, text.findLast(':')) {
    host = kj::heapString(text.slice(0, *colon));
    port = kj::heapString(text.slice(*colon + 1));
    if (host.findFirst(':') != nullptr) {
      return kj::str("'", text, "': write IPv6 addresses as [ADDRESS]:PORT");
    }
    return nullptr;
  }
  return kj::str("'", text, "': expected HOST:PORT");
}

kj::Maybe<kj::String> parseIpPort(kj::StringPtr text, SocketAddress& out) {
  kj::String host, port;
  KJ_IF_MAYBE(error, splitHostPort(text, host, port)) return kj::mv(*error);
  return numericAddress(host, port, out);
}

kj::Maybe<kj::String> parseOptionalIpPort(kj::StringPtr text, kj::StringPtr defaultIp,
                                          SocketAddress& out) {
  if (text.findFirst(':') == nullptr) return numericAddress(defaultIp, text, out);
  return parseIpPort(text, out);
}

kj::Maybe<kj::String> parseListenAddress(kj::StringPtr text, SocketAddress& out) {
  if (text.startsWith("unix:")) {
    auto path = text.slice(5);
    out = SocketAddress();
    auto un = reinterpret_cast<sockaddr_un*>(&out.storage);
    if (path.size() == 0) return kj::str("'", text, "': empty socket path");
    if (path.size() >= sizeof(un->sun_path)) return kj::str("'", text, "': socket path too long");
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path.begin(), path.size());
    out.length = sizeof(*un);
    return nullptr;
  }
  return parseIpPort(text, out);
}

kj::Maybe<kj::String> resolveHostPort(kj::StringPtr text, SocketAddress& out) {
  kj::String host, port;
  KJ_IF_MAYBE(error, splitHostPort(text, host, port)) return kj::mv(*error);
  if (numericAddress(host, port, out) == nullptr) return nullptr;
  if (parseUnsigned(port, 1, 65535) == nullptr) {
    return kj::str("'", port, "' is not a port (1-65535)");
  }
  struct addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* found = nullptr;
  int rc = getaddrinfo(host.cStr(), port.cStr(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    return kj::str("cannot resolve '", host, "': ", gai_strerror(rc));
  }
  out = SocketAddress::fromSockaddr(found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  return nullptr;
}

}  // namespace tlstap
