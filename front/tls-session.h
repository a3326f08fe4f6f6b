// The GnuTLS boundary of the front: every call into a session, the server session facing the
// client and the client session facing a TLS backend alike, goes through one wrapper (in the
// shape of KJ's sslCall()) that turns GnuTLS's return codes into three outcomes the relay can act
// on (done, try again when the socket is ready, the peer ended the stream) and throws for
// everything fatal. The caller's event callback catches that exception and closes this one
// connection; nothing else is affected.
#pragma once

#include <gnutls/gnutls.h>
#include <stdint.h>
#include <kj/array.h>
#include <kj/memory.h>
#include <kj/string.h>

#include "common/password.h"
#include "front/relay-stream.h"

namespace tlstap {

// Alert descriptions (RFC 8446 section 6) the front sends by hand, before a session exists.
constexpr uint8_t TLS_ALERT_HANDSHAKE_FAILURE = 40;
constexpr uint8_t TLS_ALERT_INTERNAL_ERROR = 80;
constexpr uint8_t TLS_ALERT_UNRECOGNIZED_NAME = 112;

// The 7-byte TLS record that carries one fatal alert. The front refuses a ClientHello it has only
// peeked at (no certificate for the name, backend down) before any GnuTLS session exists, so it
// writes this record itself.
kj::FixedArray<kj::byte, 7> makeFatalAlertRecord(uint8_t description);

// Settings every server session shares, read-only after construction (so one instance serves
// every worker thread): protocol priorities and the session ticket key.
class TlsServerConfig {
public:
  // Throws with the GnuTLS reason if the priority string or ticket key cannot be set up.
  TlsServerConfig();
  ~TlsServerConfig() noexcept;
  KJ_DISALLOW_COPY(TlsServerConfig);

  gnutls_priority_t priority() const { return priorityCache; }
  const gnutls_datum_t& ticketKey() const { return ticketKeyDatum.datum; }

private:
  gnutls_priority_t priorityCache = nullptr;
  SecretDatum ticketKeyDatum;
};

// One TLS session on a connected, non-blocking socket (which it does not own).
class TlsSession final : public RelayStream {
public:
  // `role`: GNUTLS_SERVER or GNUTLS_CLIENT. `peer` names the other end in error descriptions
  // ("client", "backend"). The caller sets the session up through handle() (priorities,
  // credentials, ALPN, ...) before the first handshake(); see newServerSession() and
  // newBackendSession() (backend-tls.h).
  TlsSession(unsigned role, int fd, kj::StringPtr peer);
  ~TlsSession() noexcept;
  KJ_DISALLOW_COPY(TlsSession);

  gnutls_session_t handle() const { return session; }

  // Each of these returns DONE, AGAIN or END, or throws a kj::Exception: DISCONNECTED when the
  // peer reset the connection, FAILED for any other fatal TLS or socket error (for a failed
  // certificate verification, with GnuTLS's text of the verification status).
  TlsResult handshake();
  TlsResult recv(kj::ArrayPtr<kj::byte> buffer) override;
  // After AGAIN, call again with at least the bytes of the interrupted call, which GnuTLS has
  // already encrypted and will send first; DONE then reports how many bytes were taken.
  //
  // Given more than one record's worth, one call encrypts up to four records and hands them to
  // the socket in one send(): a system call, a loopback packet and a wake-up of the reader per
  // 16 KiB record is what cost the most in bulk transfers. Ciphertext the socket did not take stays in the session
  // (hasPendingOutput()) and goes out first, before anything else is written.
  TlsResult send(kj::ArrayPtr<const kj::byte> bytes) override;
  // Writes the ciphertext a send() left behind: DONE once there is none, AGAIN (waiting for
  // writable) while the socket is full.
  TlsResult flush() override;
  bool hasPendingOutput() const override { return outEnd > outBegin; }
  // Frees the gathering buffer if it holds nothing: for when the connection goes quiet, so that
  // an idle connection keeps no buffer.
  void releaseOutbox() override;
  // Sends close_notify (our direction only; the peer may go on sending), after pending output.
  TlsResult bye() override;

  bool wantsWrite() const override { return againForWrite; }
  int fd() const override { return socket; }

  // After a call threw: sends the alert that matches its GnuTLS error, best effort (the socket is
  // non-blocking and the connection is closed right after either way).
  void sendAlertForFailure();

  kj::String version() const;
  kj::String cipher() const;
  kj::String negotiatedAlpn() const;
  bool resumed() const;

private:
  gnutls_session_t session = nullptr;
  int socket;
  kj::StringPtr peer;
  int lastErrno = 0;  // errno of the last failed transport call, to tell a reset from a failure
  int failure = 0;    // the GnuTLS error of the last call that threw
  bool againForWrite = false;  // what the last call that returned AGAIN waits for
  bool pushAgain = false;      // the last write to the socket found it full

  // Ciphertext of a send() not yet taken by the socket: [outBegin, outEnd) of `outbox`. The
  // storage is kept between sends while data flows and released by releaseOutbox().
  kj::Array<kj::byte> outbox;
  size_t outBegin = 0;
  size_t outEnd = 0;
  bool corked = false;  // inside send(): records are gathered in the outbox, not sent

  // Writes the outbox until it is empty (0), the socket is full (EAGAIN) or fails (the errno).
  int drainOutbox();
  // drainOutbox() for send() and flush(): false while the socket is full; throws on failure.
  bool drainOrThrow(const char* what);

  template <typename Call>
  TlsResult call(const char* what, Call&& gnutlsCall);
  // Why the peer's certificate was not accepted, in GnuTLS's words.
  kj::String verificationFailure() const;

  static ssize_t pull(gnutls_transport_ptr_t self, void* data, size_t size);
  static ssize_t vecPush(gnutls_transport_ptr_t self, const giovec_t* iov, int count);
};

// The server session that answers a client: the shared priorities and ticket key, the
// certificate chosen for the name, and `alpn`, the one protocol to select if the client offers
// it (empty for no ALPN).
kj::Own<TlsSession> newServerSession(const TlsServerConfig& config,
                                     gnutls_certificate_credentials_t credentials, int fd,
                                     kj::StringPtr alpn);

}  // namespace tlstap
