#include "front/cert-forge.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <chrono>
#include <iostream>

#include <gnutls/x509.h>
#include <gtest/gtest.h>
#include <kj/debug.h>

namespace tlstap {
namespace {

// One generated CA for the whole suite, in a temporary --cadir.
class CertForgeTest : public testing::Test {
public:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/tlstap-forge-test-XXXXXX";
    KJ_ASSERT(mkdtemp(tmpl) != nullptr);
    dir = new kj::String(kj::heapString(tmpl));
    ca = new kj::Own<RootCa>();
    bool created;
    KJ_IF_MAYBE(error, loadOrCreateRootCa(kj::str(*dir, "/ca"), "Forge Test CA", *ca, created)) {
      FAIL() << error->cStr();
    }
  }

  static void TearDownTestSuite() {
    delete ca;
    ca = nullptr;
    if (dir != nullptr) system(kj::str("rm -rf ", *dir).cStr());
    delete dir;
    dir = nullptr;
  }

  static kj::String* dir;
  static kj::Own<RootCa>* ca;
};

kj::String* CertForgeTest::dir = nullptr;
kj::Own<RootCa>* CertForgeTest::ca = nullptr;

// The chain the credentials send: the leaf first.
class SentChain {
public:
  explicit SentChain(gnutls_certificate_credentials_t credentials) {
    KJ_ASSERT(gnutls_certificate_get_x509_crt(credentials, 0, &certs, &count) == 0);
  }
  ~SentChain() {
    for (unsigned i = 0; i < count; i++) gnutls_x509_crt_deinit(certs[i]);
    gnutls_free(certs);
  }
  KJ_DISALLOW_COPY(SentChain);
  gnutls_x509_crt_t leaf() const { return certs[0]; }
  gnutls_x509_crt_t* certs = nullptr;
  unsigned count = 0;
};

// Verifies what a client gets against the CA as its only trust anchor, for `host`, as a TLS
// server certificate.
unsigned verify(const RootCa& ca, gnutls_certificate_credentials_t credentials,
                kj::StringPtr host) {
  gnutls_x509_trust_list_t trust;
  KJ_ASSERT(gnutls_x509_trust_list_init(&trust, 0) == 0);
  KJ_DEFER(gnutls_x509_trust_list_deinit(trust, 1));
  gnutls_x509_crt_t anchor;
  KJ_ASSERT(gnutls_x509_crt_init(&anchor) == 0);
  gnutls_datum_t der = {const_cast<kj::byte*>(ca.der().begin()), unsigned(ca.der().size())};
  KJ_ASSERT(gnutls_x509_crt_import(anchor, &der, GNUTLS_X509_FMT_DER) == 0);
  KJ_ASSERT(gnutls_x509_trust_list_add_cas(trust, &anchor, 1, 0) == 1);  // takes it over
  SentChain chain(credentials);
  gnutls_typed_vdata_st data[] = {
      {GNUTLS_DT_DNS_HOSTNAME, const_cast<unsigned char*>(host.asBytes().begin()), 0},
      {GNUTLS_DT_KEY_PURPOSE_OID, (unsigned char*)GNUTLS_KP_TLS_WWW_SERVER, 0}};
  unsigned status = ~0u;
  KJ_ASSERT(gnutls_x509_trust_list_verify_crt2(trust, chain.certs, chain.count, data, 2, 0,
                                               &status, nullptr) == 0);
  return status;
}

kj::Array<kj::byte> keyId(gnutls_x509_crt_t crt) {
  kj::byte id[64];
  size_t size = sizeof(id);
  KJ_ASSERT(gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, id, &size) == 0);
  return kj::heapArray<kj::byte>(id, size);
}

TEST_F(CertForgeTest, ForgedLeafVerifiesForItsNameOnly) {
  CertForger forger(**ca);
  time_t now = time(nullptr);
  for (kj::StringPtr name : {"www.forged.test", "a.b.c.forged.test", "localhost"}) {
    auto forged = forger.forge(name, now);
    EXPECT_EQ(verify(**ca, forged->get(), name), 0u) << name.cStr();
    EXPECT_NE(verify(**ca, forged->get(), "other.forged.test") & GNUTLS_CERT_UNEXPECTED_OWNER,
              0u);
    SentChain chain(forged->get());
    // The self-signed root is not sent: the client has it, and some clients refuse a chain
    // that holds one.
    EXPECT_EQ(chain.count, 1u);
    auto leaf = chain.leaf();
    char cn[256];
    size_t size = sizeof(cn);
    ASSERT_EQ(gnutls_x509_crt_get_dn_by_oid(leaf, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn,
                                            &size),
              0);
    EXPECT_STREQ(cn, name.cStr());
    EXPECT_LE(gnutls_x509_crt_get_activation_time(leaf), now - 3600);
    EXPECT_EQ(gnutls_x509_crt_get_expiration_time(leaf), now + 7 * 24 * 3600);
    EXPECT_EQ(forged->notAfter, now + 7 * 24 * 3600);
    unsigned critical, isCa = 1;
    int pathLength;
    ASSERT_GE(gnutls_x509_crt_get_basic_constraints(leaf, &critical, &isCa, &pathLength), 0);
    EXPECT_EQ(isCa, 0u);
    // The CA's key signs; it never is a leaf's key.
    EXPECT_FALSE(keyId(leaf) == keyId((*ca)->certificate()));
  }
}

TEST_F(CertForgeTest, NameLongerThanACommonNameStillVerifies) {
  CertForger forger(**ca);
  auto name = kj::str(kj::repeat('a', 60), ".", kj::repeat('b', 60), ".forged.test");
  auto forged = forger.forge(name, time(nullptr));
  EXPECT_EQ(verify(**ca, forged->get(), name), 0u);
}

TEST_F(CertForgeTest, SerialsAreRandom) {
  CertForger forger(**ca);
  auto a = forger.forge("same.test", time(nullptr));
  auto b = forger.forge("same.test", time(nullptr));
  SentChain chainA(a->get()), chainB(b->get());
  kj::byte serialA[32], serialB[32];
  size_t sizeA = sizeof(serialA), sizeB = sizeof(serialB);
  ASSERT_EQ(gnutls_x509_crt_get_serial(chainA.leaf(), serialA, &sizeA), 0);
  ASSERT_EQ(gnutls_x509_crt_get_serial(chainB.leaf(), serialB, &sizeB), 0);
  EXPECT_EQ(sizeA, 16u);
  EXPECT_FALSE(sizeA == sizeB && memcmp(serialA, serialB, sizeA) == 0);
}

TEST_F(CertForgeTest, LeafNeverOutlivesTheCa) {
  CertForger forger(**ca);
  // Ten years from now the CA has a few days left at most.
  time_t late = (*ca)->expiration() - 24 * 3600;
  auto forged = forger.forge("late.test", late);
  EXPECT_EQ(forged->notAfter, (*ca)->expiration());
}

TEST_F(CertForgeTest, CacheForgesANameOnce) {
  CertForger forger(**ca);
  ForgedCertCache cache(forger);
  time_t now = time(nullptr);
  auto a = cache.get("a.test", now);
  auto again = cache.get("a.test", now + 60);
  EXPECT_EQ(a->get(), again->get());
  EXPECT_EQ(cache.forgedCount(), 1u);
  auto b = cache.get("b.test", now);
  EXPECT_NE(a->get(), b->get());
  EXPECT_EQ(cache.forgedCount(), 2u);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(verify(**ca, again->get(), "a.test"), 0u);
  EXPECT_EQ(verify(**ca, b->get(), "b.test"), 0u);
}

TEST_F(CertForgeTest, CacheDropsTheLeastRecentlyUsed) {
  CertForger forger(**ca);
  ForgedCertCache cache(forger, 2);
  time_t now = time(nullptr);
  auto a = cache.get("a.test", now);
  auto b = cache.get("b.test", now);
  cache.get("a.test", now);  // a is now more recent than b
  cache.get("c.test", now);  // drops b
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.forgedCount(), 3u);
  EXPECT_EQ(cache.get("a.test", now)->get(), a->get());
  EXPECT_EQ(cache.forgedCount(), 3u);
  EXPECT_NE(cache.get("b.test", now)->get(), b->get());  // forged anew
  EXPECT_EQ(cache.forgedCount(), 4u);
  // A connection that still holds the dropped credentials can go on using them.
  EXPECT_EQ(verify(**ca, b->get(), "b.test"), 0u);
}

TEST_F(CertForgeTest, CacheForgesAgainAfterADay) {
  CertForger forger(**ca);
  ForgedCertCache cache(forger);
  time_t now = time(nullptr);
  auto first = cache.get("daily.test", now);
  auto sameDay = cache.get("daily.test", now + 23 * 3600);
  auto nextDay = cache.get("daily.test", now + 25 * 3600);
  EXPECT_EQ(first->get(), sameDay->get());
  EXPECT_NE(first->get(), nextDay->get());
  EXPECT_EQ(nextDay->notAfter, now + 25 * 3600 + 7 * 24 * 3600);
  // A clock set back does not keep a certificate from the future either.
  auto back = cache.get("daily.test", now);
  EXPECT_NE(back->get(), nextDay->get());
}

TEST_F(CertForgeTest, ForgesPerSecond) {
  CertForger forger(**ca);
  ForgedCertCache cache(forger, 100000);
  constexpr int COUNT = 2000;
  time_t now = time(nullptr);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < COUNT; i++) cache.get(kj::str("host", i, ".forged.test"), now);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(cache.forgedCount(), uint64_t(COUNT));
  auto hitStart = std::chrono::steady_clock::now();
  for (int i = 0; i < COUNT; i++) cache.get(kj::str("host", i, ".forged.test"), now);
  double hitSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - hitStart).count();
  EXPECT_EQ(cache.forgedCount(), uint64_t(COUNT));
  std::cout << "forged " << COUNT << " certificates in " << seconds << " s: "
            << int(COUNT / seconds) << " forges/s; cache hits: " << int(COUNT / hitSeconds)
            << "/s" << std::endl;
  RecordProperty("forges_per_second", int(COUNT / seconds));
}

}  // namespace
}  // namespace tlstap
