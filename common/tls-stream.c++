#include "tls-stream.h"

#include <errno.h>
#include <string.h>
#include <kj/debug.h>

namespace tlstap {

namespace {

constexpr size_t MAX_RECORD_PLAINTEXT = 16384;
// A record on the wire: 5-byte header, at most 2^14 + 256 bytes of TLS 1.3 ciphertext.
constexpr size_t RECORD_HEADER_BYTES = 5;
constexpr size_t MAX_RECORD_WIRE_BYTES = RECORD_HEADER_BYTES + MAX_RECORD_PLAINTEXT + 256;
// Ciphertext read per call on the inner stream: several records per system call in bulk.
constexpr size_t READ_BUFFER_BYTES = 64 << 10;
// Ciphertext a write() encrypts before handing it to the inner stream: large enough for few
// system calls, small enough that a large write does not hold a second copy of itself.
constexpr size_t FLUSH_BYTES = 4 * MAX_RECORD_WIRE_BYTES;

[[noreturn]] void throwTls(kj::Exception::Type type, kj::StringPtr what, kj::StringPtr reason) {
  kj::throwFatalException(kj::Exception(type, __FILE__, __LINE__, kj::str(what, ": ", reason)));
}

}  // namespace

TlsSessionHandle::TlsSessionHandle(unsigned flags) {
  int rc = gnutls_init(&session, flags | GNUTLS_NONBLOCK);
  if (rc < 0) throwTls(kj::Exception::Type::FAILED, "gnutls_init", gnutls_strerror(rc));
}

TlsSessionHandle::~TlsSessionHandle() noexcept {
  if (session != nullptr) gnutls_deinit(session);
}

TlsStream::TlsStream(kj::Own<kj::AsyncIoStream> innerParam, TlsSessionHandle sessionParam,
                     kj::Maybe<PeerCheck> peerCheckParam)
    : inner(kj::mv(innerParam)),
      tls(kj::mv(sessionParam)),
      peerCheck(kj::mv(peerCheckParam)),
      readBuffer(kj::heapArray<kj::byte>(READ_BUFFER_BYTES)),
      lastWrite(kj::Promise<void>(kj::READY_NOW).fork()) {
  auto session = tls.get();
  // The transport pointer leads back to this stream in every callback; the session pointer is
  // left to whoever set up the credentials (tls-link.c++ keeps its PSK there).
  gnutls_transport_set_ptr(session, this);
  gnutls_transport_set_pull_function(session, &TlsStream::pull);
  gnutls_transport_set_pull_timeout_function(session, &TlsStream::pullTimeout);
  gnutls_transport_set_vec_push_function(session, &TlsStream::vecPush);
  // Time limits belong to the caller, which knows what it is waiting for.
  gnutls_handshake_set_timeout(session, 0);
  if (peerCheck != nullptr) gnutls_session_set_verify_function(session, &TlsStream::verifyPeer);
  queued.reserve(FLUSH_BYTES + MAX_RECORD_WIRE_BYTES);
}

TlsStream::~TlsStream() noexcept(false) {
  if (staging.size() > 0) memset(staging.begin(), 0, staging.size());
}

void TlsStream::noteAuthFailure(gnutls_session_t session, kj::String reason) {
  auto& self = *static_cast<TlsStream*>(gnutls_transport_get_ptr(session));
  if (self.authFailure == nullptr) self.authFailure = kj::mv(reason);
}

// --- GnuTLS transport callbacks: memory only, never blocking ------------------------------------

ssize_t TlsStream::pull(gnutls_transport_ptr_t ptr, void* data, size_t size) {
  auto& self = *static_cast<TlsStream*>(ptr);
  size_t available = self.readEnd - self.readBegin;
  if (available == 0) {
    if (self.innerEof) return 0;
    gnutls_transport_set_errno(self.tls.get(), EAGAIN);
    return -1;
  }
  size_t n = kj::min(size, available);
  memcpy(data, self.readBuffer.begin() + self.readBegin, n);
  self.readBegin += n;
  if (self.readBegin == self.readEnd) self.readBegin = self.readEnd = 0;
  return ssize_t(n);
}

int TlsStream::pullTimeout(gnutls_transport_ptr_t ptr, unsigned int) {
  auto& self = *static_cast<TlsStream*>(ptr);
  return self.readEnd > self.readBegin || self.innerEof ? 1 : 0;
}

ssize_t TlsStream::vecPush(gnutls_transport_ptr_t ptr, const giovec_t* iov, int count) {
  // Always taken whole: the inner stream's write is asynchronous, so ciphertext waits here, and
  // write() bounds how much it lets accumulate.
  auto& self = *static_cast<TlsStream*>(ptr);
  size_t total = 0;
  for (int i = 0; i < count; i++) {
    self.queued.addAll(kj::arrayPtr(static_cast<const kj::byte*>(iov[i].iov_base),
                                    iov[i].iov_len));
    total += iov[i].iov_len;
  }
  return ssize_t(total);
}

int TlsStream::verifyPeer(gnutls_session_t session) {
  // Called from inside gnutls_handshake(): nothing may unwind through GnuTLS.
  auto& self = *static_cast<TlsStream*>(gnutls_transport_get_ptr(session));
  kj::Maybe<kj::String> refusal;
  KJ_IF_MAYBE(check, self.peerCheck) {
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { refusal = (*check)(session); })) {
      refusal = kj::str("checking the peer's certificate: ", exception->getDescription());
    }
  }
  KJ_IF_MAYBE(reason, refusal) {
    if (self.authFailure == nullptr) self.authFailure = kj::mv(*reason);
    return GNUTLS_E_CERTIFICATE_ERROR;
  }
  return 0;
}

// --- The call wrapper ----------------------------------------------------------------------------

template <typename Call>
kj::Promise<ssize_t> TlsStream::tlsCall(const char* what, Call&& call) {
  for (;;) {
    ssize_t rc = call();
    // Whatever the call produced (handshake messages, a KeyUpdate answer, an alert) goes out in
    // order behind earlier writes; callers that must know it was written wait on flushQueued().
    if (queued.size() > 0) flushQueued();
    if (rc >= 0) return rc;
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
      // The push function never blocks, so "again" always means "needs more ciphertext".
      return readMore().then([this, what, call = kj::fwd<Call>(call)]() mutable {
        return tlsCall(what, kj::mv(call));
      });
    }
    if (!gnutls_error_is_fatal(int(rc))) continue;  // e.g. a warning alert: nothing to act on
    if (!handshakeDone) {
      // Tell the peer why, so that its log says more than "connection closed", and let that
      // alert reach the socket before the caller drops this stream.
      gnutls_alert_send_appropriate(tls.get(), int(rc));
      return flushQueued().then([this, what, rc]() -> ssize_t { throwFailure(what, rc); },
                                [this, what, rc](kj::Exception&&) -> ssize_t {
                                  throwFailure(what, rc);
                                });
    }
    throwFailure(what, rc);
  }
}

void TlsStream::throwFailure(const char* what, ssize_t rc) {
  failure = int(rc);
  KJ_IF_MAYBE(reason, authFailure) throwTls(kj::Exception::Type::FAILED, what, *reason);
  switch (rc) {
    case GNUTLS_E_FATAL_ALERT_RECEIVED:
      throwTls(kj::Exception::Type::FAILED, what,
               kj::str("the peer refused: ", gnutls_alert_get_name(gnutls_alert_get(tls.get()))));
    case GNUTLS_E_PREMATURE_TERMINATION:
      throwTls(kj::Exception::Type::DISCONNECTED, what,
               handshakeDone ? "the peer closed the connection without close_notify"
                             : "the peer closed the connection");
    case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
    case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
    case GNUTLS_E_UNEXPECTED_PACKET:
      if (!handshakeDone) {
        throwTls(kj::Exception::Type::FAILED, what,
                 kj::str("not a TLS 1.3 client hello (", gnutls_strerror(int(rc)), ")"));
      }
      break;
    default:
      break;
  }
  throwTls(kj::Exception::Type::FAILED, what, gnutls_strerror(int(rc)));
}

kj::Promise<void> TlsStream::readMore() {
  if (readBegin > 0) {
    memmove(readBuffer.begin(), readBuffer.begin() + readBegin, readEnd - readBegin);
    readEnd -= readBegin;
    readBegin = 0;
  }
  KJ_REQUIRE(readEnd < readBuffer.size(), "TLS read buffer full without a complete record");
  return inner->tryRead(readBuffer.begin() + readEnd, 1, readBuffer.size() - readEnd)
      .then([this](size_t n) {
        if (n == 0) innerEof = true;
        readEnd += n;
      });
}

kj::Promise<void> TlsStream::flushQueued() {
  if (queued.size() > 0) {
    auto data = queued.releaseAsArray();
    queued.reserve(FLUSH_BYTES + MAX_RECORD_WIRE_BYTES);
    lastWrite = lastWrite.addBranch()
                    .then([this, data = kj::mv(data)]() mutable {
                      auto promise = inner->write(data.begin(), data.size());
                      return promise.attach(kj::mv(data));
                    })
                    .fork();
  }
  return lastWrite.addBranch();
}

// --- Handshake, reading, writing ---------------------------------------------------------------

kj::Promise<void> TlsStream::handshake() {
  return kj::evalNow([this]() {
    return tlsCall("TLS handshake", [this]() -> ssize_t { return gnutls_handshake(tls.get()); })
        .then([this](ssize_t) {
          handshakeDone = true;
          return flushQueued();
        });
  });
}

bool TlsStream::readableNow() {
  if (gnutls_record_check_pending(tls.get()) > 0) return true;
  // A whole record already read from the inner stream decrypts without waiting.
  size_t available = readEnd - readBegin;
  if (available < RECORD_HEADER_BYTES) return false;
  auto header = readBuffer.begin() + readBegin;
  size_t length = (size_t(header[3]) << 8) | header[4];
  return available >= RECORD_HEADER_BYTES + length;
}

kj::Promise<size_t> TlsStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  return kj::evalNow([&]() {
    return readLoop(static_cast<kj::byte*>(buffer), kj::max(minBytes, size_t(1)), maxBytes, 0);
  });
}

kj::Promise<size_t> TlsStream::readLoop(kj::byte* buffer, size_t minBytes, size_t maxBytes,
                                        size_t done) {
  // Past minBytes, only what is already here is taken: fewer, larger reads for the caller
  // without ever waiting for more than it asked.
  while (!peerClosed && done < maxBytes && (done < minBytes || readableNow())) {
    auto recv = [this, buffer, done, maxBytes]() -> ssize_t {
      return gnutls_record_recv(tls.get(), buffer + done, maxBytes - done);
    };
    if (done >= minBytes) {
      ssize_t rc = recv();
      if (queued.size() > 0) flushQueued();
      if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) break;
      if (rc < 0 && !gnutls_error_is_fatal(int(rc))) continue;
      if (rc < 0) throwFailure("TLS read", rc);
      if (rc == 0) peerClosed = true;
      done += size_t(rc);
      continue;
    }
    return tlsCall("TLS read", kj::mv(recv))
        .then([this, buffer, minBytes, maxBytes, done](ssize_t n) -> kj::Promise<size_t> {
          if (n == 0) {
            peerClosed = true;  // close_notify: EOF from now on
            return done;
          }
          return readLoop(buffer, minBytes, maxBytes, done + size_t(n));
        });
  }
  return done;
}

void TlsStream::sendRecord(kj::ArrayPtr<const kj::byte> plaintext) {
  while (plaintext.size() > 0) {
    ssize_t rc = gnutls_record_send(tls.get(), plaintext.begin(), plaintext.size());
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) continue;  // the push never blocks
    if (rc < 0) throwFailure("TLS write", rc);
    plaintext = plaintext.slice(size_t(rc), plaintext.size());
  }
}

kj::Promise<void> TlsStream::write(const void* buffer, size_t size) {
  kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
  auto pieces = kj::heapArray<kj::ArrayPtr<const kj::byte>>(1);
  pieces[0] = piece;
  auto& ref = pieces;
  return kj::evalNow([&]() { return writeLoop(ref, 0, 0); }).attach(kj::mv(pieces));
}

kj::Promise<void> TlsStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  return kj::evalNow([&]() { return writeLoop(pieces, 0, 0); });
}

kj::Promise<void> TlsStream::writeLoop(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces,
                                       size_t piece, size_t offset) {
  // Cap'n Proto writes a message as several pieces, some of a few bytes: those are gathered
  // into whole records, while large pieces are encrypted straight from the caller's memory.
  while (piece < pieces.size() && queued.size() < FLUSH_BYTES) {
    auto rest = pieces[piece].slice(offset, pieces[piece].size());
    if (rest.size() == 0) {
      piece++;
      offset = 0;
      continue;
    }
    if (stagingUsed == 0 && rest.size() >= MAX_RECORD_PLAINTEXT) {
      sendRecord(rest.slice(0, MAX_RECORD_PLAINTEXT));
      offset += MAX_RECORD_PLAINTEXT;
      continue;
    }
    if (staging.size() == 0) staging = kj::heapArray<kj::byte>(MAX_RECORD_PLAINTEXT);
    size_t n = kj::min(MAX_RECORD_PLAINTEXT - stagingUsed, rest.size());
    memcpy(staging.begin() + stagingUsed, rest.begin(), n);
    stagingUsed += n;
    offset += n;
    if (stagingUsed == MAX_RECORD_PLAINTEXT) {
      sendRecord(staging.asPtr());
      stagingUsed = 0;
    }
  }
  if (piece == pieces.size() && stagingUsed > 0) {
    sendRecord(staging.slice(0, stagingUsed));
    stagingUsed = 0;
  }
  auto flushed = flushQueued();
  if (piece == pieces.size()) return flushed;
  return flushed.then([this, pieces, piece, offset]() { return writeLoop(pieces, piece, offset); });
}

kj::Promise<void> TlsStream::whenWriteDisconnected() { return inner->whenWriteDisconnected(); }

void TlsStream::shutdownWrite() {
  // SHUT_WR: close_notify for our direction only; the peer may still be sending.
  gnutls_bye(tls.get(), GNUTLS_SHUT_WR);
  lastWrite = flushQueued()
                  .then([this]() { inner->shutdownWrite(); },
                        [](kj::Exception&&) {
                          // The link failed before close_notify went out: nothing to shut down.
                        })
                  .fork();
}

void TlsStream::abortRead() { inner->abortRead(); }

void TlsStream::getsockopt(int level, int option, void* value, uint* length) {
  inner->getsockopt(level, option, value, length);
}

void TlsStream::setsockopt(int level, int option, const void* value, uint length) {
  inner->setsockopt(level, option, value, length);
}

void TlsStream::getsockname(struct sockaddr* addr, uint* length) {
  inner->getsockname(addr, length);
}

void TlsStream::getpeername(struct sockaddr* addr, uint* length) {
  inner->getpeername(addr, length);
}

}  // namespace tlstap
