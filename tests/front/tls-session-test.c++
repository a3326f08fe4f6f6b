#include "front/tls-session.h"

#include <gtest/gtest.h>

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
  EXPECT_NE(config.priority(), nullptr);
  EXPECT_NE(config.ticketKey().data, nullptr);
  EXPECT_GT(config.ticketKey().size, 0u);
  // Two processes (or restarts) must not share a ticket key.
  TlsServerConfig other;
  ASSERT_EQ(config.ticketKey().size, other.ticketKey().size);
  EXPECT_NE(memcmp(config.ticketKey().data, other.ticketKey().data, config.ticketKey().size), 0);
}

}  // namespace
}  // namespace tlstap
