#include "front/tls-session.h"

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/vector.h>

namespace tlstap {
namespace {

TEST(FatalAlertRecord, IsOneTlsAlertRecord) {
  auto record = makeFatalAlertRecord(TLS_ALERT_UNRECOGNIZED_NAME);
  ASSERT_EQ(record.size(), 7u);
  EXPECT_EQ(record[0], 21);  // content type alert
  EXPECT_EQ(record[1], 3);   // record version 3.3
  EXPECT_EQ(record[2], 3);
  EXPECT_EQ(record[3], 0);   // two bytes of payload
  EXPECT_EQ(record[4], 2);
  EXPECT_EQ(record[5], 2);   // fatal
  EXPECT_EQ(record[6], 112);
  EXPECT_EQ(makeFatalAlertRecord(TLS_ALERT_INTERNAL_ERROR)[6], 80);
}

TEST(TlsServerConfig, HasPrioritiesAndATicketKey) {
  TlsServerConfig config;
  EXPECT_NE(config.priority(false), nullptr);
  EXPECT_NE(config.ticketKey().data, nullptr);
  EXPECT_GT(config.ticketKey().size, 0u);
  // Two processes (or restarts) must not share a ticket key.
  TlsServerConfig other;
  ASSERT_EQ(config.ticketKey().size, other.ticketKey().size);
  EXPECT_NE(memcmp(config.ticketKey().data, other.ticketKey().data, config.ticketKey().size), 0);
}

// The cipher algorithms of a priority cache, in preference order.
kj::Vector<unsigned> ciphers(gnutls_priority_t priority) {
  const unsigned* list = nullptr;
  int count = gnutls_priority_cipher_list(priority, &list);
  KJ_ASSERT(count > 0, gnutls_strerror(count));
  kj::Vector<unsigned> result;
  result.addAll(list, list + count);
  return result;
}

TEST(TlsServerConfig, AesGcmFirstUnlessTheClientOrTheCpuPrefersChaCha20) {
  TlsServerConfig withAes(true);
  auto aesFirst = ciphers(withAes.priority(false));
  ASSERT_GE(aesFirst.size(), 3u);
  EXPECT_EQ(aesFirst[0], GNUTLS_CIPHER_AES_128_GCM);
  EXPECT_EQ(aesFirst[1], GNUTLS_CIPHER_AES_256_GCM);
  EXPECT_EQ(aesFirst[2], GNUTLS_CIPHER_CHACHA20_POLY1305);
  // A client that lists ChaCha20-Poly1305 first gets it (it likely has no AES instructions).
  auto chachaFirst = ciphers(withAes.priority(true));
  ASSERT_GE(chachaFirst.size(), 3u);
  EXPECT_EQ(chachaFirst[0], GNUTLS_CIPHER_CHACHA20_POLY1305);
  EXPECT_EQ(chachaFirst[1], GNUTLS_CIPHER_AES_128_GCM);
  // The same set of ciphers either way: only the order differs.
  EXPECT_EQ(aesFirst.size(), chachaFirst.size());
  // Without AES instructions here, ChaCha20-Poly1305 is first for everyone.
  TlsServerConfig withoutAes(false);
  EXPECT_EQ(ciphers(withoutAes.priority(false))[0], GNUTLS_CIPHER_CHACHA20_POLY1305);
  EXPECT_EQ(ciphers(withoutAes.priority(true))[0], GNUTLS_CIPHER_CHACHA20_POLY1305);
}

}  // namespace
}  // namespace tlstap
