#include "client-hello.h"

#include <stdint.h>
#include <string.h>

namespace tlstap {

namespace {

constexpr kj::byte CONTENT_TYPE_HANDSHAKE = 22;
constexpr kj::byte HANDSHAKE_CLIENT_HELLO = 1;
constexpr size_t RECORD_HEADER_BYTES = 5;
constexpr size_t HANDSHAKE_HEADER_BYTES = 4;
constexpr size_t MAX_RECORD_PAYLOAD = 16384;  // 2^14, RFC 8446 section 5.1
constexpr uint32_t EXTENSION_SERVER_NAME = 0;
constexpr uint32_t EXTENSION_ALPN = 16;
constexpr uint32_t NAME_TYPE_HOST_NAME = 0;
constexpr size_t MAX_HOST_NAME_BYTES = 253;
// Real clients offer a handful; a list of thousands is an attack on the allocator.
constexpr size_t MAX_ALPN_PROTOCOLS = 64;
// Signalling values in the cipher suite list that are not ciphers: the renegotiation info SCSV
// (RFC 5746) and the fallback SCSV (RFC 7507).
constexpr uint32_t SCSV_RENEGOTIATION_INFO = 0x00ff;
constexpr uint32_t SCSV_FALLBACK = 0x5600;

enum class Step { OK, SHORT, BAD };

#define TLSTAP_TRY_STEP(expression)      \
  do {                                   \
    Step step_ = (expression);           \
    if (step_ != Step::OK) return step_; \
  } while (false)

// A window over one length-prefixed structure of which we may hold only a prefix. `end` is where
// the structure ends by its declared length, `have` where our bytes end (have <= end). Reading
// past `end` is BAD: the structure is malformed whatever arrives later. Reading past `have` but
// not `end` is SHORT: the bytes may still come.
class Cursor {
public:
  Cursor(const kj::byte* base, size_t pos, size_t end, size_t have, kj::String& error)
      : base(base), pos(pos), end(end), have(have < end ? have : end), error(&error) {}

  bool atEnd() const { return pos == end; }
  size_t declaredLeft() const { return end - pos; }

  Step take(size_t n, const kj::byte*& out, const char* what) {
    if (n > end - pos) return bad(what);
    if (n > have - pos) return Step::SHORT;
    out = base + pos;
    pos += n;
    return Step::OK;
  }

  Step skip(size_t n, const char* what) {
    const kj::byte* ignored;
    return take(n, ignored, what);
  }

  Step readInt(size_t bytes, uint32_t& value, const char* what) {
    const kj::byte* p;
    TLSTAP_TRY_STEP(take(bytes, p, what));
    value = 0;
    for (size_t i = 0; i < bytes; i++) value = (value << 8) | p[i];
    return Step::OK;
  }

  // Opens the next n bytes as a structure of their own and moves past them here, even when we
  // hold only part of them: the caller reads the child before anything after it.
  Step sub(size_t n, Cursor& child, const char* what) {
    if (n > end - pos) return bad(what);
    child = Cursor(base, pos, pos + n, have, *error);
    pos += n;
    return Step::OK;
  }

  // A length prefix of `prefixBytes` followed by that many bytes.
  Step vector(size_t prefixBytes, Cursor& child, const char* what) {
    uint32_t length;
    TLSTAP_TRY_STEP(readInt(prefixBytes, length, what));
    return sub(length, child, what);
  }

  Step bad(const char* what) {
    *error = kj::str("malformed ClientHello: ", what, " runs past the end of its structure");
    return Step::BAD;
  }

private:
  const kj::byte* base;
  size_t pos;
  size_t end;
  size_t have;
  kj::String* error;
};

Step fail(kj::String& error, kj::String message) {
  error = kj::mv(message);
  return Step::BAD;
}

Step parseServerName(Cursor extension, ClientHelloInfo& info, kj::String& error) {
  Cursor list = extension;
  TLSTAP_TRY_STEP(extension.vector(2, list, "server_name list"));
  if (!extension.atEnd()) return fail(error, kj::str("malformed ClientHello: bytes after the "
                                                     "server_name list"));
  if (list.atEnd()) return fail(error, kj::str("malformed ClientHello: empty server_name list"));
  while (!list.atEnd()) {
    uint32_t type, length;
    TLSTAP_TRY_STEP(list.readInt(1, type, "server_name type"));
    TLSTAP_TRY_STEP(list.readInt(2, length, "server_name length"));
    // Checked before the bytes arrive so a huge name is refused at once.
    if (type == NAME_TYPE_HOST_NAME && length > MAX_HOST_NAME_BYTES + 1) {
      return fail(error, kj::str("server name too long (", length, " bytes)"));
    }
    const kj::byte* bytes;
    TLSTAP_TRY_STEP(list.take(length, bytes, "server name"));
    // RFC 6066 defines only host_name; other types are skipped as opaque, as GnuTLS does.
    if (type != NAME_TYPE_HOST_NAME) continue;
    if (info.sni != nullptr) return fail(error, kj::str("ClientHello names two host names"));
    if (length == 0) return fail(error, kj::str("empty server name"));
    // A trailing dot names the same host; clients that send one still mean it.
    size_t used = bytes[length - 1] == '.' ? length - 1 : length;
    auto name = kj::heapString(reinterpret_cast<const char*>(bytes), used);
    if (!isValidHostName(name)) {
      // Never echo raw hostile bytes into a log line: show the printable part only.
      auto shown = kj::heapString(kj::min(used, size_t(64)));
      for (size_t i = 0; i < shown.size(); i++) {
        char c = name[i];
        shown[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
      }
      return fail(error, kj::str("invalid server name '", shown, "'"));
    }
    info.sni = lowerCaseAscii(name);
  }
  return Step::OK;
}

Step parseAlpn(Cursor extension, ClientHelloInfo& info, kj::String& error) {
  Cursor list = extension;
  TLSTAP_TRY_STEP(extension.vector(2, list, "ALPN protocol list"));
  if (!extension.atEnd()) return fail(error, kj::str("malformed ClientHello: bytes after the "
                                                     "ALPN protocol list"));
  if (list.atEnd()) return fail(error, kj::str("malformed ClientHello: empty ALPN list"));
  while (!list.atEnd()) {
    uint32_t length;
    TLSTAP_TRY_STEP(list.readInt(1, length, "ALPN protocol length"));
    if (length == 0) return fail(error, kj::str("malformed ClientHello: empty ALPN protocol"));
    const kj::byte* bytes;
    TLSTAP_TRY_STEP(list.take(length, bytes, "ALPN protocol"));
    if (info.alpn.size() == MAX_ALPN_PROTOCOLS) {
      return fail(error, kj::str("ClientHello offers more than ", MAX_ALPN_PROTOCOLS,
                                 " ALPN protocols"));
    }
    // kj::String is NUL-terminated for C APIs; a name with a NUL in it could not be forwarded
    // faithfully, and no registered protocol has one.
    if (memchr(bytes, 0, length) != nullptr) {
      return fail(error, kj::str("ALPN protocol name contains a NUL byte"));
    }
    info.alpn.add(kj::heapString(reinterpret_cast<const char*>(bytes), length));
  }
  return Step::OK;
}

// GREASE values (RFC 8701) are 0x?A?A with both bytes equal: placeholders, never chosen.
bool isGrease(uint32_t suite) {
  return (suite & 0x0f0f) == 0x0a0a && (suite >> 8) == (suite & 0xff);
}

// Whether the client's most preferred real cipher suite is a ChaCha20-Poly1305 one: clients
// without AES instructions put it first, and for them it is much faster than AES-GCM.
Step parseCipherSuites(Cursor list, ClientHelloInfo& info) {
  while (!list.atEnd()) {
    uint32_t suite;
    TLSTAP_TRY_STEP(list.readInt(2, suite, "cipher_suites"));
    if (isGrease(suite) || suite == SCSV_RENEGOTIATION_INFO || suite == SCSV_FALLBACK) continue;
    info.prefersChaCha20 = isChaCha20Suite(suite);
    return list.skip(list.declaredLeft(), "cipher_suites");
  }
  return Step::OK;
}

// The body of a ClientHello handshake message (RFC 8446 section 4.1.2, which TLS 1.0-1.2 share).
Step parseBody(Cursor body, ClientHelloInfo& info, kj::String& error) {
  uint32_t version;
  TLSTAP_TRY_STEP(body.readInt(2, version, "legacy_version"));
  if ((version >> 8) != 3) {
    return fail(error, kj::str("not a TLS ClientHello (version 0x", kj::hex(version), ")"));
  }
  TLSTAP_TRY_STEP(body.skip(32, "random"));
  Cursor part = body;
  TLSTAP_TRY_STEP(body.vector(1, part, "session_id"));
  if (part.declaredLeft() > 32) return fail(error, kj::str("malformed ClientHello: session_id "
                                                           "longer than 32 bytes"));
  TLSTAP_TRY_STEP(part.skip(part.declaredLeft(), "session_id"));
  TLSTAP_TRY_STEP(body.vector(2, part, "cipher_suites"));
  if (part.declaredLeft() < 2 || part.declaredLeft() % 2 != 0) {
    return fail(error, kj::str("malformed ClientHello: bad cipher_suites length"));
  }
  TLSTAP_TRY_STEP(parseCipherSuites(part, info));
  TLSTAP_TRY_STEP(body.vector(1, part, "compression_methods"));
  if (part.atEnd()) return fail(error, kj::str("malformed ClientHello: no compression method"));
  TLSTAP_TRY_STEP(part.skip(part.declaredLeft(), "compression_methods"));
  // Extensions are optional in TLS 1.0-1.2: the message may simply end here.
  if (body.atEnd()) return Step::OK;

  Cursor extensions = body;
  TLSTAP_TRY_STEP(body.vector(2, extensions, "extensions"));
  if (!body.atEnd()) return fail(error, kj::str("malformed ClientHello: bytes after the "
                                                "extensions"));
  bool seenServerName = false;
  bool seenAlpn = false;
  while (!extensions.atEnd()) {
    uint32_t type;
    TLSTAP_TRY_STEP(extensions.readInt(2, type, "extension type"));
    Cursor data = extensions;
    TLSTAP_TRY_STEP(extensions.vector(2, data, "extension"));
    if (type == EXTENSION_SERVER_NAME) {
      if (seenServerName) return fail(error, kj::str("ClientHello repeats server_name"));
      seenServerName = true;
      TLSTAP_TRY_STEP(parseServerName(data, info, error));
    } else if (type == EXTENSION_ALPN) {
      if (seenAlpn) return fail(error, kj::str("ClientHello repeats the ALPN extension"));
      seenAlpn = true;
      TLSTAP_TRY_STEP(parseAlpn(data, info, error));
    } else {
      TLSTAP_TRY_STEP(data.skip(data.declaredLeft(), "extension"));
    }
  }
  return Step::OK;
}

#undef TLSTAP_TRY_STEP

HelloResult needMore() { return HelloResult{HelloStatus::NEED_MORE, {}, kj::String()}; }

HelloResult invalid(kj::String why) {
  return HelloResult{HelloStatus::INVALID, {}, kj::mv(why)};
}

kj::String tooLarge(size_t bytes) {
  return kj::str("ClientHello too large (at least ", bytes, " bytes, limit ",
                 MAX_CLIENT_HELLO_BYTES, ")");
}

}  // namespace

HelloResult parseClientHello(kj::ArrayPtr<const kj::byte> peeked) {
  if (peeked.size() == 0) return needMore();
  if (peeked[0] & 0x80) {
    // An SSLv2 record header has the top bit set and message type 1 in its third byte; no TLS
    // content type does.
    if (peeked.size() < 3 || peeked[2] == 1) {
      return invalid(kj::str("SSLv2-style ClientHello not supported"));
    }
    return invalid(kj::str("not a TLS handshake (first byte 0x", kj::hex(peeked[0]), ")"));
  }

  // The handshake message, reassembled from the fragments of the records we hold.
  kj::Vector<kj::byte> message(kj::min(peeked.size(), MAX_CLIENT_HELLO_BYTES));
  size_t pos = 0;                  // start of the next record header
  size_t declaredWireEnd = 0;      // end of the last record by its declared length
  size_t declaredMessageBytes = 0; // handshake bytes the records seen so far declare
  bool lastRecordWhole = true;
  size_t messageEnd = 0;           // 4 + message length, once the header is known

  while (pos < peeked.size()) {
    size_t have = peeked.size() - pos;
    const kj::byte* header = peeked.begin() + pos;
    if (header[0] != CONTENT_TYPE_HANDSHAKE) {
      if (pos == 0) {
        return invalid(kj::str("not a TLS handshake (first byte 0x", kj::hex(header[0]), ")"));
      }
      return invalid(kj::str("record of type ", header[0], " inside the ClientHello"));
    }
    if (have >= 2 && header[1] != 3) {
      return invalid(kj::str("not a TLS record (version major ", header[1], ")"));
    }
    if (have >= 3 && header[2] > 4) {
      return invalid(kj::str("not a TLS record (version 3.", header[2], ")"));
    }
    if (have < RECORD_HEADER_BYTES) {
      lastRecordWhole = false;
      break;
    }
    size_t recordLength = (size_t(header[3]) << 8) | header[4];
    if (recordLength == 0) return invalid(kj::str("empty handshake record"));
    if (recordLength > MAX_RECORD_PAYLOAD) {
      return invalid(kj::str("TLS record of ", recordLength, " bytes (limit ",
                             MAX_RECORD_PAYLOAD, ")"));
    }
    declaredWireEnd = pos + RECORD_HEADER_BYTES + recordLength;
    if (declaredWireEnd > MAX_CLIENT_HELLO_BYTES) return invalid(tooLarge(declaredWireEnd));
    declaredMessageBytes += recordLength;
    size_t taken = kj::min(recordLength, have - RECORD_HEADER_BYTES);
    message.addAll(header + RECORD_HEADER_BYTES, header + RECORD_HEADER_BYTES + taken);
    if (taken < recordLength) {
      lastRecordWhole = false;
      break;
    }
    pos = declaredWireEnd;
    if (message.size() >= HANDSHAKE_HEADER_BYTES) {
      messageEnd = HANDSHAKE_HEADER_BYTES + ((size_t(message[1]) << 16) |
                                             (size_t(message[2]) << 8) | message[3]);
      if (message.size() >= messageEnd) break;
    }
  }

  if (message.size() >= 1 && message[0] != HANDSHAKE_CLIENT_HELLO) {
    return invalid(kj::str("expected a ClientHello, got handshake message type ", message[0]));
  }
  if (message.size() < HANDSHAKE_HEADER_BYTES) {
    // Still at most two records, both far under the cap.
    return needMore();
  }
  messageEnd = HANDSHAKE_HEADER_BYTES + ((size_t(message[1]) << 16) |
                                         (size_t(message[2]) << 8) | message[3]);
  if (messageEnd > MAX_CLIENT_HELLO_BYTES) return invalid(tooLarge(messageEnd));
  if (declaredMessageBytes > messageEnd) {
    // A client sends nothing else before the server's first flight, so a ClientHello that ends
    // inside a record is malformed.
    return invalid(kj::str("unexpected handshake data after the ClientHello"));
  }
  // The fewest bytes the rest can take: the rest of the current record, then one more record.
  size_t missing = messageEnd - declaredMessageBytes;
  size_t wireAtLeast = kj::max(declaredWireEnd, pos) +
                       (missing > 0 ? RECORD_HEADER_BYTES + missing : 0);
  if (wireAtLeast > MAX_CLIENT_HELLO_BYTES) return invalid(tooLarge(wireAtLeast));

  HelloResult result = needMore();
  size_t have = kj::min(message.size(), messageEnd);
  Cursor body(message.begin(), HANDSHAKE_HEADER_BYTES, messageEnd, have, result.error);
  switch (parseBody(body, result.info, result.error)) {
    case Step::BAD:
      return invalid(kj::mv(result.error));
    case Step::SHORT:
      return needMore();
    case Step::OK:
      break;
  }
  // parseBody only succeeds once it has read up to messageEnd, so every byte is here and, as
  // declaredMessageBytes == messageEnd, the last record is whole. Checked without throwing: the
  // caller runs in an event callback, which no exception may unwind through.
  if (have != messageEnd || !lastRecordWhole || missing != 0) {
    return invalid(kj::str("internal error: ClientHello parsed past the bytes received"));
  }
  result.status = HelloStatus::COMPLETE;
  result.info.recordBytes = pos;
  return result;
}

bool isChaCha20Suite(uint32_t suite) {
  // TLS_CHACHA20_POLY1305_SHA256 (TLS 1.3) and the TLS 1.2 ECDHE/DHE/PSK ChaCha20 suites
  // (RFC 7905: 0xCCA8-0xCCAE).
  return suite == 0x1303 || (suite >= 0xcca8 && suite <= 0xccae);
}

bool isValidHostName(kj::StringPtr name) {
  if (name.size() == 0 || name.size() > MAX_HOST_NAME_BYTES) return false;
  size_t labelLength = 0;
  for (char c : name) {
    if (c == '.') {
      if (labelLength == 0) return false;
      labelLength = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok || ++labelLength > 63) return false;
  }
  return labelLength > 0;
}

kj::String lowerCaseAscii(kj::StringPtr text) {
  auto result = kj::heapString(text);
  for (char& c : result) {
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  }
  return result;
}

}  // namespace tlstap
