#include "tls-session.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <kj/debug.h>
#include <kj/exception.h>

namespace tlstap {

namespace {

// TLS 1.3 and 1.2 only; the server's cipher order wins so weak client preferences do not.
// X25519 leads the groups: with NORMAL's order (P-256 first) and server precedence, every
// OpenSSL client, which sends only an X25519 key share, would be sent a HelloRetryRequest
// and pay a second round trip and key exchange.
constexpr const char* PRIORITY =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:"
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:"
    "%SERVER_PRECEDENCE";

[[noreturn]] void throwTls(kj::Exception::Type type, kj::StringPtr what, kj::StringPtr reason) {
  kj::throwFatalException(kj::Exception(type, __FILE__, __LINE__, kj::str(what, ": ", reason)));
}

bool isResetErrno(int error) {
  return error == ECONNRESET || error == EPIPE || error == ECONNABORTED;
}

// The largest TLS record on the wire: header and 2^14 bytes of plaintext plus TLS 1.2's largest
// expansion (TLS 1.3 adds less).
constexpr size_t MAX_RECORD_PLAINTEXT = 16384;
constexpr size_t MAX_RECORD_WIRE_BYTES = 5 + MAX_RECORD_PLAINTEXT + 2048;
// Records one send() gathers: 64 KiB of plaintext, as much as the relay holds per direction, is
// one system call and, over loopback, one 64 KiB segment instead of four.
constexpr size_t OUTBOX_RECORDS = 4;
constexpr size_t OUTBOX_BYTES = OUTBOX_RECORDS * MAX_RECORD_WIRE_BYTES;

}  // namespace

kj::FixedArray<kj::byte, 7> makeFatalAlertRecord(uint8_t description) {
  kj::FixedArray<kj::byte, 7> record;
  record[0] = 21;    // content type: alert
  record[1] = 0x03;  // legacy record version TLS 1.2 (0x0303), as TLS 1.3 servers send too
  record[2] = 0x03;
  record[3] = 0x00;  // length: 2
  record[4] = 0x02;
  record[5] = 2;     // level: fatal
  record[6] = description;
  return record;
}

TlsServerConfig::TlsServerConfig() {
  const char* errorPosition = nullptr;
  int rc = gnutls_priority_init(&priorityCache, PRIORITY, &errorPosition);
  if (rc < 0) {
    throwTls(kj::Exception::Type::FAILED, "TLS priority string", gnutls_strerror(rc));
  }
  // One key for the life of the process: tickets stay valid across connections and workers, and
  // a restart invalidates them, which is what a rotation would do.
  rc = gnutls_session_ticket_key_generate(&ticketKeyDatum.datum);
  if (rc < 0) {
    gnutls_priority_deinit(priorityCache);
    throwTls(kj::Exception::Type::FAILED, "session ticket key", gnutls_strerror(rc));
  }
}

TlsServerConfig::~TlsServerConfig() noexcept {
  if (priorityCache != nullptr) gnutls_priority_deinit(priorityCache);
}

TlsSession::TlsSession(unsigned role, int fd, kj::StringPtr peer) : socket(fd), peer(peer) {
  int rc = gnutls_init(&session, role | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
  if (rc < 0) {
    session = nullptr;
    throwTls(kj::Exception::Type::FAILED, "gnutls_init", gnutls_strerror(rc));
  }
  // Our own transport functions so that the errno of a failed recv/send survives until we
  // classify the error (a reset is the peer's doing, anything else is a failure).
  gnutls_transport_set_ptr(session, this);
  gnutls_transport_set_pull_function(session, &TlsSession::pull);
  gnutls_transport_set_vec_push_function(session, &TlsSession::vecPush);
}

kj::Own<TlsSession> newServerSession(const TlsServerConfig& config,
                                     gnutls_certificate_credentials_t credentials, int fd,
                                     kj::StringPtr alpn) {
  auto tls = kj::heap<TlsSession>(GNUTLS_SERVER, fd, "client");
  auto session = tls->handle();
  int rc = gnutls_priority_set(session, config.priority());
  if (rc >= 0) rc = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, credentials);
  if (rc >= 0) rc = gnutls_session_ticket_enable_server(session, &config.ticketKey());
  if (rc >= 0 && alpn.size() > 0) {
    // GnuTLS copies the protocol names.
    gnutls_datum_t protocol = {reinterpret_cast<unsigned char*>(const_cast<char*>(alpn.begin())),
                               static_cast<unsigned>(alpn.size())};
    rc = gnutls_alpn_set_protocols(session, &protocol, 1, GNUTLS_ALPN_SERVER_PRECEDENCE);
  }
  if (rc < 0) throwTls(kj::Exception::Type::FAILED, "TLS session set-up", gnutls_strerror(rc));
  return tls;
}

TlsSession::~TlsSession() noexcept {
  if (session != nullptr) gnutls_deinit(session);
}

ssize_t TlsSession::pull(gnutls_transport_ptr_t ptr, void* data, size_t size) {
  auto& self = *reinterpret_cast<TlsSession*>(ptr);
  ssize_t n = ::recv(self.socket, data, size, 0);
  if (n < 0) {
    self.lastErrno = errno;
    gnutls_transport_set_errno(self.session, errno);
  }
  return n;
}

ssize_t TlsSession::vecPush(gnutls_transport_ptr_t ptr, const giovec_t* iov, int count) {
  auto& self = *reinterpret_cast<TlsSession*>(ptr);
  size_t total = 0;
  for (int i = 0; i < count; i++) total += iov[i].iov_len;
  if (self.corked && total <= OUTBOX_BYTES - self.outEnd) {
    // Gathered for send()'s one write at the end; GnuTLS frees its copy when we return.
    if (self.outbox == nullptr) self.outbox = kj::heapArray<kj::byte>(OUTBOX_BYTES);
    for (int i = 0; i < count; i++) {
      memcpy(self.outbox.begin() + self.outEnd, iov[i].iov_base, iov[i].iov_len);
      self.outEnd += iov[i].iov_len;
    }
    return total;
  }
  if (self.hasPendingOutput()) {
    // Ciphertext from an earlier send() goes first, or records would reach the peer reordered.
    int error = self.drainOutbox();
    if (error != 0) {
      self.lastErrno = error;
      self.pushAgain = error == EAGAIN || error == EWOULDBLOCK;
      gnutls_transport_set_errno(self.session, error);
      return -1;
    }
  }
  struct msghdr message = {};
  message.msg_iov = const_cast<struct iovec*>(iov);
  message.msg_iovlen = count;
  ssize_t n = ::sendmsg(self.socket, &message, MSG_NOSIGNAL);
  if (n < 0) {
    self.lastErrno = errno;
    self.pushAgain = errno == EAGAIN || errno == EWOULDBLOCK;
    gnutls_transport_set_errno(self.session, errno);
  }
  return n;
}

int TlsSession::drainOutbox() {
  while (outEnd > outBegin) {
    ssize_t n = ::send(socket, outbox.begin() + outBegin, outEnd - outBegin, MSG_NOSIGNAL);
    if (n > 0) {
      outBegin += n;
    } else if (n < 0 && errno != EINTR) {
      return errno;
    }
  }
  // The storage stays for the next send(): allocating and freeing 72 KiB per send made glibc
  // shrink and regrow the heap each time, and the page faults cost more than the copy saved.
  outBegin = outEnd = 0;
  return 0;
}

void TlsSession::releaseOutbox() {
  if (!hasPendingOutput()) outbox = nullptr;
}

bool TlsSession::drainOrThrow(const char* what) {
  int error = drainOutbox();
  if (error == 0) return true;
  if (error == EAGAIN || error == EWOULDBLOCK) {
    againForWrite = true;
    return false;
  }
  failure = GNUTLS_E_PUSH_ERROR;  // nothing to answer with an alert: the transport is broken
  if (isResetErrno(error)) {
    throwTls(kj::Exception::Type::DISCONNECTED, what, kj::str("connection reset by ", peer));
  }
  throwTls(kj::Exception::Type::FAILED, what, strerror(error));
}

template <typename Call>
TlsResult TlsSession::call(const char* what, Call&& gnutlsCall) {
  for (;;) {
    lastErrno = 0;
    pushAgain = false;
    ssize_t rc = gnutlsCall();
    if (rc >= 0) return {TlsStatus::DONE, size_t(rc)};
    switch (rc) {
      case GNUTLS_E_AGAIN:
      case GNUTLS_E_INTERRUPTED:
        againForWrite = pushAgain || gnutls_record_get_direction(session) == 1;
        return {TlsStatus::AGAIN, 0};
      case GNUTLS_E_PREMATURE_TERMINATION:
        // TCP EOF without close_notify: many clients end this way; the stream is over all the
        // same, and it is not a reset.
        return {TlsStatus::END, 0};
      case GNUTLS_E_REHANDSHAKE:
        // A client asking to renegotiate: refuse with a warning and go on with the session.
        gnutls_alert_send(session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
        continue;
      case GNUTLS_E_PUSH_ERROR:
      case GNUTLS_E_PULL_ERROR:
        failure = int(rc);
        if (isResetErrno(lastErrno)) {
          throwTls(kj::Exception::Type::DISCONNECTED, what, kj::str("connection reset by ", peer));
        }
        throwTls(kj::Exception::Type::FAILED, what,
                 lastErrno != 0 ? strerror(lastErrno) : gnutls_strerror(rc));
      default:
        if (!gnutls_error_is_fatal(rc)) continue;  // e.g. a warning alert: nothing to act on
        failure = int(rc);
        if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
          throwTls(kj::Exception::Type::FAILED, what,
                   kj::str(peer, " sent fatal alert: ",
                           gnutls_alert_get_name(gnutls_alert_get(session))));
        }
        if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
          throwTls(kj::Exception::Type::FAILED, what, verificationFailure());
        }
        throwTls(kj::Exception::Type::FAILED, what, gnutls_strerror(rc));
    }
  }
}

TlsResult TlsSession::handshake() {
  return call("TLS handshake", [&]() -> ssize_t { return gnutls_handshake(session); });
}

TlsResult TlsSession::recv(kj::ArrayPtr<kj::byte> buffer) {
  auto result = call("TLS read", [&]() -> ssize_t {
    return gnutls_record_recv(session, buffer.begin(), buffer.size());
  });
  // A zero-byte DONE is close_notify.
  if (result.status == TlsStatus::DONE && result.bytes == 0) result.status = TlsStatus::END;
  return result;
}

TlsResult TlsSession::send(kj::ArrayPtr<const kj::byte> bytes) {
  if (!drainOrThrow("TLS write")) return {TlsStatus::AGAIN, 0};
  if (bytes.size() <= MAX_RECORD_PLAINTEXT) {
    // One record: nothing to gather, and small responses must not pay for the outbox.
    return call("TLS write", [&]() -> ssize_t {
      return gnutls_record_send(session, bytes.begin(), bytes.size());
    });
  }
  size_t taken = 0;
  TlsResult result = {TlsStatus::DONE, 0};
  corked = true;
  KJ_DEFER(corked = false);
  while (taken < bytes.size()) {
    // One record per call (at most 16 KiB of plaintext), encrypted into the outbox.
    auto rest = bytes.slice(taken, bytes.size());
    result = call("TLS write", [&]() -> ssize_t {
      return gnutls_record_send(session, rest.begin(), rest.size());
    });
    if (result.status != TlsStatus::DONE) break;
    taken += result.bytes;
    if (OUTBOX_BYTES - outEnd < MAX_RECORD_WIRE_BYTES) break;  // the next record might not fit
  }
  corked = false;
  // AGAIN or END at the first record: nothing was taken. At a later record the bytes before it
  // are reported taken; the caller's next call starts with the interrupted record's bytes, as
  // GnuTLS requires.
  if (taken == 0) return result;
  // Whatever the socket does not take now waits in the outbox and goes out first next time.
  drainOrThrow("TLS write");
  return {TlsStatus::DONE, taken};
}

TlsResult TlsSession::flush() {
  if (!drainOrThrow("TLS write")) return {TlsStatus::AGAIN, 0};
  return {TlsStatus::DONE, 0};
}

TlsResult TlsSession::bye() {
  return call("TLS close", [&]() -> ssize_t { return gnutls_bye(session, GNUTLS_SHUT_WR); });
}

kj::String TlsSession::verificationFailure() const {
  unsigned status = gnutls_session_get_verify_cert_status(session);
  gnutls_datum_t text = {nullptr, 0};
  if (status == 0 || gnutls_certificate_verification_status_print(
                         status, gnutls_certificate_type_get(session), &text, 0) < 0) {
    return kj::str("certificate verification failed");
  }
  kj::StringPtr printed(reinterpret_cast<const char*>(text.data), text.size);
  while (printed.size() > 0 && printed[printed.size() - 1] == ' ') {
    printed = kj::StringPtr(printed.begin(), printed.size() - 1);
  }
  auto result = kj::str("certificate verification failed: ", printed);
  gnutls_free(text.data);
  return result;
}

void TlsSession::sendAlertForFailure() {
  // Transport errors and alerts from the peer leave nothing worth answering.
  if (failure == 0 || failure == GNUTLS_E_PUSH_ERROR || failure == GNUTLS_E_PULL_ERROR ||
      failure == GNUTLS_E_FATAL_ALERT_RECEIVED) {
    return;
  }
  gnutls_alert_send_appropriate(session, failure);
}

kj::String TlsSession::version() const {
  const char* name = gnutls_protocol_get_name(gnutls_protocol_get_version(session));
  return kj::heapString(name != nullptr ? name : "");
}

kj::String TlsSession::cipher() const {
  const char* name = gnutls_ciphersuite_get(session);
  return kj::heapString(name != nullptr ? name : "");
}

kj::String TlsSession::negotiatedAlpn() const {
  gnutls_datum_t protocol = {nullptr, 0};
  if (gnutls_alpn_get_selected_protocol(session, &protocol) < 0) return kj::heapString("");
  return kj::heapString(reinterpret_cast<const char*>(protocol.data), protocol.size);
}

bool TlsSession::resumed() const { return gnutls_session_is_resumed(session) != 0; }

}  // namespace tlstap
