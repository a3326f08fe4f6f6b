// Certificates forged by tlstap's root CA for names no --servercert covers, and the per-worker
// cache that forges each name once. Forging runs on the worker's event loop, in the middle of a
// connection's set-up, so it is one ECDSA signature and nothing more: every forged certificate
// carries the same leaf key, made once at start-up (see CertForger).
#pragma once

#include <gnutls/gnutls.h>
#include <stdint.h>
#include <time.h>
#include <kj/array.h>
#include <kj/list.h>
#include <kj/map.h>
#include <kj/memory.h>
#include <kj/refcount.h>
#include <kj/string.h>

#include "front/cert-store.h"
#include "front/root-ca.h"

namespace tlstap {

// The credentials of one forged certificate (the leaf, any intermediate CA, the leaf key). Shared:
// a connection keeps a reference until it ends, even if the cache has dropped it meanwhile.
class ForgedCredentials : public kj::Refcounted {
public:
  gnutls_certificate_credentials_t get() const { return credentials.get(); }
  time_t notAfter = 0;

private:
  ServerCredentials credentials;
};

// Signs leaf certificates with the root CA. Read-only after construction, so one instance serves
// every worker thread (GnuTLS keys may sign from several threads at once).
class CertForger {
public:
  // Throws if GnuTLS cannot make the leaf key.
  explicit CertForger(const RootCa& ca);
  ~CertForger() noexcept(false);
  KJ_DISALLOW_COPY(CertForger);

  // A certificate for the DNS name `name` (a valid host name, lower case): SAN and CN the name,
  // valid from an hour before `now` for LEAF_VALIDITY_SECONDS (no longer than the CA), a random
  // serial. Throws with GnuTLS's reason if it cannot.
  kj::Own<ForgedCredentials> forge(kj::StringPtr name, time_t now) const;

  const RootCa& rootCa() const { return ca; }

private:
  const RootCa& ca;
  // One key for every forged certificate, never the CA's. A key per name would cost a key
  // generation per forge and buy nothing: the key lives in this process next to the CA key, which
  // could forge anything anyway, and is never written anywhere.
  PrivateKey leafKey;
  kj::Array<kj::byte> leafKeyId;
  kj::Array<kj::byte> caKeyId;
};

// Forged credentials by name, least recently used dropped first. One per worker: only touched
// from that worker's loop, so it needs no lock.
class ForgedCertCache {
public:
  // A few thousand names cover a busy interception set-up; an entry holds about 5 KiB (the
  // credentials, the certificate and a copy of the leaf key), so a full cache about 20 MiB.
  static constexpr size_t DEFAULT_CAPACITY = 4096;
  // A forged certificate is used for a day, then forged again: whichever connection gets one
  // sees at least six of its seven days ahead.
  static constexpr time_t REFORGE_AFTER_SECONDS = 24 * 3600;

  explicit ForgedCertCache(const CertForger& forger, size_t capacity = DEFAULT_CAPACITY);
  ~ForgedCertCache() noexcept(false);
  KJ_DISALLOW_COPY(ForgedCertCache);

  // The credentials for `name`, forged now if not cached (or too old). Throws if forging fails.
  kj::Own<ForgedCredentials> get(kj::StringPtr name, time_t now);

  size_t size() const { return entries.size(); }
  uint64_t forgedCount() const { return forged; }

private:
  struct Entry {
    kj::String name;
    kj::Own<ForgedCredentials> credentials;
    time_t forgedAt;
    kj::ListLink<Entry> link;
  };

  const CertForger& forger;
  size_t capacity;
  uint64_t forged = 0;
  kj::HashMap<kj::StringPtr, kj::Own<Entry>> entries;  // keys point into Entry::name
  kj::List<Entry, &Entry::link> order;                 // least recently used first
};

}  // namespace tlstap
