// TLS over any KJ stream: a kj::AsyncIoStream that runs a GnuTLS session on top of another
// kj::AsyncIoStream, for the link between tlstap-front and a recorder on another host. GnuTLS
// reads and writes only memory buffers (its push and pull functions); this class moves those
// buffers over the inner stream, so it runs on any KJ event loop: the front's libevent-driven one
// (common/event-port.h) and the recorder's kj::setupAsyncIo().
//
// Every GnuTLS call goes through one wrapper in the shape of KJ's sslCall() (kj/compat/tls.c++):
// "again" waits for more ciphertext from the inner stream and retries, EOF is EOF, anything fatal
// is an exception that ends this stream only.
//
// Sessions are set up (credentials, priorities, verification) by tls-link.h; this file only
// moves bytes.
#pragma once

#include <gnutls/gnutls.h>
#include <kj/async-io.h>
#include <kj/function.h>
#include <kj/string.h>
#include <kj/vector.h>

namespace tlstap {

// One gnutls_session_t, deinitialised when destroyed.
class TlsSessionHandle {
public:
  // `flags`: GNUTLS_CLIENT or GNUTLS_SERVER. Throws with the GnuTLS reason.
  explicit TlsSessionHandle(unsigned flags);
  ~TlsSessionHandle() noexcept;
  TlsSessionHandle(TlsSessionHandle&& other) noexcept : session(other.session) {
    other.session = nullptr;
  }
  KJ_DISALLOW_COPY(TlsSessionHandle);

  gnutls_session_t get() const { return session; }

private:
  gnutls_session_t session = nullptr;
};

class TlsStream final : public kj::AsyncIoStream {
public:
  // Checks the peer during the handshake: returns why it is refused, or nullptr to accept it.
  using PeerCheck = kj::Function<kj::Maybe<kj::String>(gnutls_session_t)>;

  // `session` has its credentials and priorities set and has not started its handshake.
  // `peerCheck`, if given, runs when the peer's certificate has arrived; a refusal aborts the
  // handshake before any application data is exchanged.
  TlsStream(kj::Own<kj::AsyncIoStream> inner, TlsSessionHandle session,
            kj::Maybe<PeerCheck> peerCheck = nullptr);
  ~TlsStream() noexcept(false);
  KJ_DISALLOW_COPY(TlsStream);

  // Runs the handshake. Rejects with one line saying why it failed: the reason peerCheck or
  // noteAuthFailure() gave, the peer's alert, or GnuTLS's error text.
  kj::Promise<void> handshake();

  gnutls_session_t session() const { return tls.get(); }
  // The GnuTLS error that failed the last call, 0 if none did.
  int failureCode() const { return failure; }

  // For credential callbacks (e.g. an unknown PSK identity): the reason the handshake of the
  // stream owning `session` will give when it fails.
  static void noteAuthFailure(gnutls_session_t session, kj::String reason);

  // kj::AsyncIoStream
  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;
  // Sends close_notify, then shuts down the inner stream's sending side once it is written.
  void shutdownWrite() override;
  void abortRead() override;
  // Socket options and addresses are the inner stream's (Cap'n Proto sizes its flow-control
  // window from SO_SNDBUF).
  void getsockopt(int level, int option, void* value, uint* length) override;
  void setsockopt(int level, int option, const void* value, uint length) override;
  void getsockname(struct sockaddr* addr, uint* length) override;
  void getpeername(struct sockaddr* addr, uint* length) override;

private:
  kj::Own<kj::AsyncIoStream> inner;
  TlsSessionHandle tls;
  kj::Maybe<PeerCheck> peerCheck;
  kj::Maybe<kj::String> authFailure;
  int failure = 0;
  bool handshakeDone = false;
  bool peerClosed = false;  // close_notify received: reads return EOF

  // Ciphertext read from `inner` that GnuTLS has not pulled yet: [readBegin, readEnd).
  kj::Array<kj::byte> readBuffer;
  size_t readBegin = 0;
  size_t readEnd = 0;
  bool innerEof = false;

  // Ciphertext GnuTLS has pushed that is not yet handed to `inner`.
  kj::Vector<kj::byte> queued;
  // Every write to `inner`, chained so that writes from write(), the handshake and the read side
  // (a TLS 1.3 KeyUpdate answer) reach the inner stream one at a time and in order.
  kj::ForkedPromise<void> lastWrite;
  // Plaintext gathered from small pieces of write(pieces) into whole records.
  kj::Array<kj::byte> staging;
  size_t stagingUsed = 0;

  // The sslCall() of this stream: runs `call` until it returns a result >= 0, waiting for
  // ciphertext from `inner` while it says "again". Rejects on a fatal error.
  template <typename Call>
  kj::Promise<ssize_t> tlsCall(const char* what, Call&& call);
  [[noreturn]] void throwFailure(const char* what, ssize_t rc);

  kj::Promise<void> readMore();
  // True when a read would produce plaintext without waiting for the inner stream.
  bool readableNow();
  // Hands everything queued to `inner` after the writes before it; resolves when it is written.
  kj::Promise<void> flushQueued();
  kj::Promise<size_t> readLoop(kj::byte* buffer, size_t minBytes, size_t maxBytes, size_t done);
  kj::Promise<void> writeLoop(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces,
                              size_t piece, size_t offset);
  // Encrypts one record of plaintext into `queued`.
  void sendRecord(kj::ArrayPtr<const kj::byte> plaintext);

  static ssize_t pull(gnutls_transport_ptr_t self, void* data, size_t size);
  static int pullTimeout(gnutls_transport_ptr_t self, unsigned int ms);
  static ssize_t vecPush(gnutls_transport_ptr_t self, const giovec_t* iov, int count);
  static int verifyPeer(gnutls_session_t session);
};

}  // namespace tlstap
