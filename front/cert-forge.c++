#include "cert-forge.h"

#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <kj/debug.h>
#include <kj/vector.h>

namespace tlstap {

namespace {

// Seven days: long enough that a client with a slow clock and a long-lived connection never
// sees one expire, short enough that a forged certificate that leaves the lab (a capture, a
// client's cache) is soon worthless, and far below the limits browsers set for leaf lifetimes.
constexpr time_t LEAF_VALIDITY_SECONDS = 7 * 24 * 3600;
// Valid from an hour ago: clients whose clocks are behind must not see "not yet valid".
constexpr time_t CLOCK_SKEW_SECONDS = 3600;
// RFC 5280 ub-common-name: longer DNS names go in the SAN only.
constexpr size_t MAX_COMMON_NAME = 64;

class Certificate {
public:
  Certificate() {
    int rc = gnutls_x509_crt_init(&crt);
    KJ_REQUIRE(rc == 0, "gnutls_x509_crt_init", gnutls_strerror(rc));
  }
  ~Certificate() { gnutls_x509_crt_deinit(crt); }
  KJ_DISALLOW_COPY(Certificate);
  gnutls_x509_crt_t crt = nullptr;
};

void check(int rc, const char* what) {
  KJ_REQUIRE(rc >= 0, "forging a certificate", what, gnutls_strerror(rc));
}

kj::Array<kj::byte> keyIdOf(gnutls_x509_crt_t crt) {
  kj::byte id[64];
  size_t size = sizeof(id);
  check(gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, id, &size), "key id");
  return kj::heapArray<kj::byte>(id, size);
}

}  // namespace

CertForger::CertForger(const RootCa& ca) : ca(ca) {
  check(gnutls_x509_privkey_init(&leafKey.key), "privkey_init");
  check(gnutls_x509_privkey_generate(leafKey.key, GNUTLS_PK_ECDSA,
                                     GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
        "generating the leaf key");
  kj::byte id[64];
  size_t size = sizeof(id);
  check(gnutls_x509_privkey_get_key_id(leafKey.key, GNUTLS_KEYID_USE_SHA1, id, &size),
        "leaf key id");
  leafKeyId = kj::heapArray<kj::byte>(id, size);
  // Clients find the issuer by the authority key identifier; a loaded CA may not carry a
  // subject key identifier, so take what it has, or the same SHA-1 of its key that GnuTLS
  // and OpenSSL would put there.
  size = sizeof(id);
  unsigned critical = 0;
  if (gnutls_x509_crt_get_subject_key_id(ca.certificate(), id, &size, &critical) >= 0) {
    caKeyId = kj::heapArray<kj::byte>(id, size);
  } else {
    caKeyId = keyIdOf(ca.certificate());
  }
}

CertForger::~CertForger() noexcept(false) {}

kj::Own<ForgedCredentials> CertForger::forge(kj::StringPtr name, time_t now) const {
  Certificate leaf;
  auto crt = leaf.crt;
  check(gnutls_x509_crt_set_version(crt, 3), "version");
  kj::byte serial[16];
  check(gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial)), "serial");
  // Positive, without a leading zero byte (a minimal DER INTEGER).
  serial[0] = (serial[0] & 0x7f) | 0x40;
  check(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), "serial");
  if (name.size() <= MAX_COMMON_NAME) {
    check(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, name.begin(),
                                        name.size()),
          "common name");
  }
  check(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, name.begin(), name.size(),
                                             GNUTLS_FSAN_SET),
        "subject alt name");
  time_t notAfter = now + LEAF_VALIDITY_SECONDS;
  time_t caNotAfter = ca.expiration();
  if (caNotAfter != time_t(-1) && caNotAfter < notAfter) notAfter = caNotAfter;
  check(gnutls_x509_crt_set_activation_time(crt, now - CLOCK_SKEW_SECONDS), "activation");
  check(gnutls_x509_crt_set_expiration_time(crt, notAfter), "expiration");
  check(gnutls_x509_crt_set_key(crt, leafKey.key), "key");
  check(gnutls_x509_crt_set_basic_constraints(crt, 0, -1), "basic constraints");
  check(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE), "key usage");
  check(gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0), "key purpose");
  check(gnutls_x509_crt_set_subject_key_id(crt, leafKeyId.begin(), leafKeyId.size()),
        "subject key id");
  check(gnutls_x509_crt_set_authority_key_id(crt, caKeyId.begin(), caKeyId.size()),
        "authority key id");
  check(gnutls_x509_crt_privkey_sign(crt, ca.certificate(), ca.signingKey(), GNUTLS_DIG_SHA256,
                                     0),
        "signing");

  // The leaf, then the CA and whatever chain came with it. GnuTLS leaves a self-signed root out
  // of what it sends: the client has it as its trust anchor, and some clients refuse a chain
  // that carries one. A loaded intermediate CA is sent.
  auto chain = ca.certificates();
  kj::Vector<gnutls_x509_crt_t> sent(chain.size() + 1);
  sent.add(crt);
  sent.addAll(chain);
  auto result = kj::refcounted<ForgedCredentials>();
  // New credentials come with an empty trust list of 127 buckets, over half of what a cached
  // entry costs; these never verify a peer, so one bucket does.
  gnutls_x509_trust_list_t trust;
  check(gnutls_x509_trust_list_init(&trust, 1), "trust list");
  gnutls_certificate_set_trust_list(result->get(), trust, 0);  // owned by the credentials now
  // GnuTLS would check that the key matches the certificate with a test signature and its
  // verification, which costs twice the forging itself; the key is the one just certified.
  gnutls_certificate_set_flags(result->get(), GNUTLS_CERTIFICATE_SKIP_KEY_CERT_MATCH);
  check(gnutls_certificate_set_x509_key(result->get(), sent.begin(), sent.size(), leafKey.key),
        "credentials");
  result->notAfter = notAfter;
  return result;
}

ForgedCertCache::ForgedCertCache(const CertForger& forger, size_t capacity)
    : forger(forger), capacity(kj::max(capacity, size_t(1))) {}

ForgedCertCache::~ForgedCertCache() noexcept(false) {
  // kj::List insists that its elements are unlinked before they are destroyed.
  while (order.size() > 0) order.remove(order.front());
}

kj::Own<ForgedCredentials> ForgedCertCache::get(kj::StringPtr name, time_t now) {
  KJ_IF_MAYBE(found, entries.find(name)) {
    auto& entry = **found;
    order.remove(entry);
    order.add(entry);  // the most recently used goes last
    if (now - entry.forgedAt < REFORGE_AFTER_SECONDS && now >= entry.forgedAt) {
      return kj::addRef(*entry.credentials);
    }
    entry.credentials = forger.forge(name, now);
    entry.forgedAt = now;
    forged++;
    return kj::addRef(*entry.credentials);
  }
  auto credentials = forger.forge(name, now);
  forged++;
  if (entries.size() >= capacity) {
    auto& oldest = order.front();
    order.remove(oldest);
    auto victim = kj::heapString(oldest.name);  // the key must outlive the entry it names
    entries.erase(victim);
  }
  auto entry = kj::heap<Entry>();
  entry->name = kj::heapString(name);
  entry->credentials = kj::addRef(*credentials);
  entry->forgedAt = now;
  order.add(*entry);
  kj::StringPtr key = entry->name;
  entries.insert(key, kj::mv(entry));
  return credentials;
}

}  // namespace tlstap
