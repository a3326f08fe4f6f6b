// TLS session resumption towards backends (re-encrypting, no --terminate). The session tickets a
// backend sends are kept per worker under the backend's name and address, so that the next
// connection to that backend resumes: no certificate, signature or chain check on either side,
// only the (EC)DHE exchange. The name is part of the key because the ticket stands for a session
// whose certificate was checked for that name.
//
// Each ticket is used once (RFC 8446 appendix C.4: a client should not reuse a ticket, or the
// backend and anyone watching could link the connections); every connection brings new ones
// (OpenSSL servers send two), and the newest few are kept, so that connections opened at the
// same moment find one each. When there is none (a burst of connections, or a backend that sends
// none), the connection makes a full handshake as before. A backend that refuses the ticket (it restarted, its key
// rotated) gets a full handshake too, certificate check included.
#pragma once

#include <gnutls/gnutls.h>
#include <stddef.h>
#include <kj/array.h>
#include <kj/map.h>
#include <kj/string.h>
#include <kj/vector.h>

namespace tlstap {

class BackendSessionCache {
public:
  // At most `capacity` backends (name and address) are remembered, with their newest
  // TICKETS_PER_BACKEND tickets; tickets for more backends are dropped, so a front routing by SNI
  // to very many names does not grow without bound (a ticket is a few hundred bytes plus the
  // backend's certificates).
  static constexpr size_t DEFAULT_CAPACITY = 128;
  static constexpr size_t TICKETS_PER_BACKEND = 8;
  explicit BackendSessionCache(size_t capacity = DEFAULT_CAPACITY) : capacity(capacity) {}
  ~BackendSessionCache() noexcept;
  KJ_DISALLOW_COPY(BackendSessionCache);

  // Backends with at least one ticket, and tickets in all.
  size_t size() const { return entries.size(); }
  size_t tickets() const;

  // One backend connection's link to the cache. Must outlive the session it is attached to.
  class Slot {
  public:
    // `name`: what the backend is asked for (SNI) and must prove; `address`: where it is.
    Slot(BackendSessionCache& cache, kj::StringPtr name, kj::StringPtr address);
    KJ_DISALLOW_COPY(Slot);

    // Before the handshake: offers the backend's stored ticket, if any (taking it out of the
    // cache), and keeps every TLS 1.3 ticket the session receives from now on.
    void attach(gnutls_session_t session);
    // After the handshake: a TLS 1.2 backend's session (its ticket came within the handshake).
    void handshakeDone(gnutls_session_t session);

  private:
    BackendSessionCache& cache;
    kj::String key;

    // Stores the session's current resumption data; never throws (GnuTLS calls onTicket).
    void keep(gnutls_session_t session) noexcept;
    static int onTicket(gnutls_session_t session, unsigned type, unsigned when,
                        unsigned incoming, const gnutls_datum_t* message);
  };

private:
  // Session data (the ticket and the resumption secret): wiped when freed.
  class Stored {
  public:
    explicit Stored(kj::Array<kj::byte> bytes) : bytes(kj::mv(bytes)) {}
    Stored(Stored&&) = default;
    Stored& operator=(Stored&& other) noexcept;
    ~Stored() noexcept { wipe(); }
    kj::ArrayPtr<const kj::byte> get() const { return bytes; }

  private:
    kj::Array<kj::byte> bytes;
    void wipe();
  };

  size_t capacity;
  kj::HashMap<kj::String, kj::Vector<Stored>> entries;  // oldest ticket first

  // Adds a ticket for `key`, dropping its oldest when it has TICKETS_PER_BACKEND; dropped when
  // the cache is full of other keys.
  void put(kj::StringPtr key, kj::ArrayPtr<const kj::byte> data);
  // Takes the newest ticket for `key` out of the cache.
  kj::Maybe<Stored> take(kj::StringPtr key);
};

}  // namespace tlstap
