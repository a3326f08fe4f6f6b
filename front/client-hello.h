// Reads the SNI and ALPN of a TLS ClientHello from bytes peeked (recv(MSG_PEEK)) off a fresh
// connection, before any TLS session exists: the front needs both to pick a certificate and to
// connect the backend before it can start GnuTLS with the backend's ALPN choice
// (DESIGN.md, "Findings": ALPN forwarding).
//
// The input is hostile. Every length is checked against both the bytes we have and the length of
// the structure that contains it, so a truncated prefix of a good ClientHello is NEED_MORE and a
// prefix that can no longer become a good one is INVALID as early as possible.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <kj/array.h>
#include <kj/string.h>
#include <kj/vector.h>

namespace tlstap {

struct ClientHelloInfo {
  kj::Maybe<kj::String> sni;    // host_name from server_name, lower-cased; nullptr if absent
  kj::Vector<kj::String> alpn;  // protocols in client order
  // The client's first cipher suite (ignoring GREASE and signalling values) is ChaCha20-Poly1305.
  bool prefersChaCha20 = false;
  size_t recordBytes = 0;       // total bytes of the TLS records holding the whole ClientHello
};

enum class HelloStatus { COMPLETE, NEED_MORE, INVALID };

struct HelloResult {
  HelloStatus status;
  ClientHelloInfo info;
  kj::String error;  // one-line cause when INVALID
};

// The most bytes of records a ClientHello may take; bigger is INVALID ("ClientHello too large").
// The caller never needs to peek more than this.
constexpr size_t MAX_CLIENT_HELLO_BYTES = 32768;

// `peeked` is everything received so far from a fresh connection (not consumed).
HelloResult parseClientHello(kj::ArrayPtr<const kj::byte> peeked);

// Whether a TLS cipher suite number is one of the ChaCha20-Poly1305 suites.
bool isChaCha20Suite(uint32_t suite);

// A DNS host name as SNI carries it and as --servercert / --nosni name it: labels of letters,
// digits, '-' and '_', 1-63 bytes each, at most 253 bytes in all, no trailing dot.
bool isValidHostName(kj::StringPtr name);

// ASCII lower case (host names compare case-insensitively).
kj::String lowerCaseAscii(kj::StringPtr text);

}  // namespace tlstap
