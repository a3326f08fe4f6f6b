#include "common/address.h"

#include <gtest/gtest.h>

namespace tlstap {
namespace {

TEST(Address, ParsesIpv4AndIpv6WithPorts) {
  SocketAddress address;
  ASSERT_TRUE(parseIpPort("127.0.0.1:8443", address) == nullptr);
  EXPECT_EQ(address.family(), AF_INET);
  EXPECT_EQ(address.port(), 8443);
  EXPECT_TRUE(address.isLoopback());
  EXPECT_EQ(address.toString(), "127.0.0.1:8443");

  ASSERT_TRUE(parseIpPort("[::1]:443", address) == nullptr);
  EXPECT_EQ(address.family(), AF_INET6);
  EXPECT_TRUE(address.isLoopback());
  EXPECT_EQ(address.toString(), "[::1]:443");

  ASSERT_TRUE(parseIpPort("192.0.2.1:80", address) == nullptr);
  EXPECT_FALSE(address.isLoopback());
}

TEST(Address, RejectsWithAReason) {
  SocketAddress address;
  struct Case {
    const char* text;
    const char* expected;
  };
  Case cases[] = {
      {"127.0.0.1", "expected HOST:PORT"},
      {"127.0.0.1:0", "is not a port"},
      {"127.0.0.1:65536", "is not a port"},
      {"::1:80", "write IPv6 addresses as [ADDRESS]:PORT"},
      {"[::1]80", "expected [IPv6]:PORT"},
      {"[::1:80", "missing ']'"},
      {"example:80", "is not an IPv4 or IPv6 address"},
  };
  for (auto& c : cases) {
    KJ_IF_MAYBE(error, parseIpPort(c.text, address)) {
      EXPECT_TRUE(strstr(error->cStr(), c.expected) != nullptr) << c.text << ": " << error->cStr();
    } else {
      ADD_FAILURE() << c.text << " was accepted";
    }
  }
}

TEST(Address, OptionalIpDefaultsAndUnixPaths) {
  SocketAddress address;
  ASSERT_TRUE(parseOptionalIpPort("57012", "127.0.0.1", address) == nullptr);
  EXPECT_EQ(address.toString(), "127.0.0.1:57012");
  ASSERT_TRUE(parseOptionalIpPort("0.0.0.0:57012", "127.0.0.1", address) == nullptr);
  EXPECT_EQ(address.toString(), "0.0.0.0:57012");

  ASSERT_TRUE(parseListenAddress("unix:/run/x.sock", address) == nullptr);
  EXPECT_EQ(address.family(), AF_UNIX);
  EXPECT_EQ(address.toString(), "unix:/run/x.sock");
  EXPECT_TRUE(parseListenAddress("unix:", address) != nullptr);
  EXPECT_TRUE(parseListenAddress(kj::str("unix:/", kj::repeat('a', 200)), address) != nullptr);
}

TEST(Address, ResolvesNumericAndNamedHosts) {
  SocketAddress address;
  ASSERT_TRUE(resolveHostPort("127.0.0.1:9", address) == nullptr);
  EXPECT_EQ(address.port(), 9);
  ASSERT_TRUE(resolveHostPort("localhost:9", address) == nullptr);
  EXPECT_TRUE(address.isLoopback());
  // A label over 63 bytes cannot be put into a DNS query, so the resolver fails without sending
  // one: the test never asks a nameserver off this machine.
  EXPECT_TRUE(resolveHostPort(kj::str(kj::repeat('a', 64), ".invalid:9"), address) != nullptr);
}

}  // namespace
}  // namespace tlstap
