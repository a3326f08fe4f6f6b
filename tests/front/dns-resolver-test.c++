#include "front/dns-resolver.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/vector.h>

namespace tlstap {
namespace {

// --- Which names are looked up -----------------------------------------------------------------

kj::String why(kj::StringPtr name) {
  KJ_IF_MAYBE(reason, routableNameError(name)) return kj::str(*reason);
  return kj::str("ok");
}

TEST(DnsResolver, LooksUpOnlyDnsHostNames) {
  for (auto name : {"alpha.test", "www.example.com", "a", "a-b.c-d.example", "1a.example",
                    "xn--bcher-kva.example", "3com.com", "example.x1"}) {
    EXPECT_STREQ(why(name).cStr(), "ok") << name;
  }
  auto longLabel = kj::str(kj::repeat('a', 63), ".test");
  EXPECT_STREQ(why(longLabel).cStr(), "ok");

  EXPECT_STREQ(why("192.0.2.1").cStr(), "an IP address, not a host name");
  EXPECT_STREQ(why("127.0.0.1").cStr(), "an IP address, not a host name");
  for (auto name : {"", "under_score.test", "-a.test", "a-.test", "a..test", ".a.test", "a.test.",
                    "a b.test", "a:b", "127.1", "10.0.0.0.1", "host.123", "*.test", "a/b.test"}) {
    EXPECT_STREQ(why(name).cStr(), "not a valid DNS host name") << '\'' << name << '\'';
  }
  EXPECT_STREQ(why(kj::str(kj::repeat('a', 64), ".test")).cStr(), "not a valid DNS host name");
  // 4 x 63 + 3 dots = 255 bytes: over the 253 a host name may have.
  auto label = kj::str(kj::repeat('a', 63));
  EXPECT_STREQ(why(kj::str(label, ".", label, ".", label, ".", label)).cStr(),
               "not a valid DNS host name");
  EXPECT_STREQ(why("localhost").cStr(),
               "a localhost name (it would reach the front's own machine)");
  EXPECT_STREQ(why("app.localhost").cStr(),
               "a localhost name (it would reach the front's own machine)");
  EXPECT_STREQ(why("localhost.example").cStr(), "ok");
}

SocketAddress address(kj::StringPtr text) {
  SocketAddress result;
  KJ_IF_MAYBE(error, parseIpPort(text, result)) KJ_FAIL_ASSERT(*error);
  return result;
}

kj::String joined(kj::ArrayPtr<const SocketAddress> addresses) {
  auto texts = KJ_MAP(a, addresses) { return a.toString(); };
  return kj::strArray(texts, " ");
}

TEST(DnsResolver, NeverRoutesToTheUnspecifiedAddressOrBackToTheFront) {
  // Resolved addresses carry no port of their own; 9 stands in for it here.
  SocketAddress resolved[] = {address("0.0.0.0:9"), address("192.0.2.7:9"), address("[::]:9"),
                              address("10.0.0.1:9"), address("[2001:db8::1]:9")};
  auto front = address("10.0.0.1:443");
  // Forwarding to the port the client came in on: 10.0.0.1 would be the front itself.
  EXPECT_STREQ(joined(routableAddresses(resolved, front, 443)).cStr(),
               "192.0.2.7:9 [2001:db8::1]:9");
  // Another port on the same host is a different service.
  EXPECT_STREQ(joined(routableAddresses(resolved, front, 8443)).cStr(),
               "192.0.2.7:9 10.0.0.1:9 [2001:db8::1]:9");
  SocketAddress onlyFront[] = {address("10.0.0.1:9")};
  EXPECT_EQ(routableAddresses(onlyFront, front, 443).size(), 0u);
  // A dual-stack listener shows an IPv4 client the front as ::ffff:10.0.0.1.
  EXPECT_EQ(routableAddresses(onlyFront, address("[::ffff:10.0.0.1]:443"), 443).size(), 0u);
}

// --- Lookups against a DNS server in this process ----------------------------------------------

// A DNS server on 127.0.0.1 (evdns's server side, on the test's event loop) that knows:
//   both.test    A 192.0.2.1, AAAA 2001:db8::1        v4.test     A 192.0.2.4 only
//   v6.test      AAAA ::1 only                         empty.test  no address (NODATA)
//   nx.test      NXDOMAIN                              fail.test   SERVFAIL
//   refused.test REFUSED                               silent.test never answers
// evdns asks with the letters in random case, so names compare case-insensitively.
class TestDnsServer {
public:
  explicit TestDnsServer(event_base* base) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    KJ_ASSERT(fd >= 0);
    struct sockaddr_in bound = {};
    bound.sin_family = AF_INET;
    bound.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    KJ_ASSERT(bind(fd, reinterpret_cast<sockaddr*>(&bound), sizeof(bound)) == 0);
    socklen_t length = sizeof(bound);
    KJ_ASSERT(getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) == 0);
    at = SocketAddress::fromSockaddr(reinterpret_cast<sockaddr*>(&bound), length);
    port = evdns_add_server_port_with_base(base, fd, 0, &TestDnsServer::answer, this);
    KJ_ASSERT(port != nullptr);
  }
  ~TestDnsServer() noexcept { evdns_close_server_port(port); }
  KJ_DISALLOW_COPY(TestDnsServer);

  SocketAddress at;
  int questions = 0;

private:
  evdns_server_port* port;  // closes the socket with it

  static void answer(evdns_server_request* request, void* arg) {
    auto& self = *reinterpret_cast<TestDnsServer*>(arg);
    int error = DNS_ERR_NONE;
    for (int i = 0; i < request->nquestions; i++) {
      self.questions++;
      auto& question = *request->questions[i];
      auto is = [&](const char* name) { return strcasecmp(question.name, name) == 0; };
      bool a = question.type == EVDNS_TYPE_A, aaaa = question.type == EVDNS_TYPE_AAAA;
      struct in_addr v4;
      struct in6_addr v6;
      if (is("silent.test")) {
        evdns_server_request_drop(request);
        return;
      } else if (is("nx.test")) {
        error = DNS_ERR_NOTEXIST;
      } else if (is("fail.test")) {
        error = DNS_ERR_SERVERFAILED;
      } else if (is("refused.test")) {
        error = DNS_ERR_REFUSED;
      } else if (a && (is("both.test") || is("v4.test"))) {
        inet_pton(AF_INET, is("both.test") ? "192.0.2.1" : "192.0.2.4", &v4);
        evdns_server_request_add_a_reply(request, question.name, 1, &v4, 60);
      } else if (aaaa && (is("both.test") || is("v6.test"))) {
        inet_pton(AF_INET6, is("both.test") ? "2001:db8::1" : "::1", &v6);
        evdns_server_request_add_aaaa_reply(request, question.name, 1, &v6, 60);
      }
    }
    evdns_server_request_respond(request, error);
  }
};

// Runs the loop until `done` or about five seconds have passed.
template <typename Predicate>
void runUntil(event_base* base, Predicate done) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    if (done()) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > 5) return;
    struct timeval tick = {0, 10000};
    event_base_loopexit(base, &tick);
    event_base_loop(base, EVLOOP_ONCE);
  }
}

class DnsLookupTest : public testing::Test {
protected:
  ~DnsLookupTest() noexcept {}
  event_base* base = event_base_new();
  kj::Own<TestDnsServer> server = kj::heap<TestDnsServer>(base);
  kj::Own<DnsResolver> resolver;

  void SetUp() override {
    DnsSettings settings;
    settings.server = server->at;
    settings.timeoutMs = 600;
    KJ_IF_MAYBE(error, DnsResolver::open(base, settings, resolver)) FAIL() << error->cStr();
  }
  void TearDown() override {
    resolver = nullptr;
    server = nullptr;
    event_base_free(base);
  }

  DnsAnswer lookUp(kj::StringPtr name) {
    kj::Maybe<DnsAnswer> answer;
    auto lookup = resolver->lookUp(name, [&](DnsAnswer&& a) { answer = kj::mv(a); });
    runUntil(base, [&]() { return answer != nullptr; });
    KJ_IF_MAYBE(a, answer) return kj::mv(*a);
    ADD_FAILURE() << "no answer for " << name.cStr();
    return DnsAnswer();
  }
};

TEST_F(DnsLookupTest, AsksForBothFamiliesAndListsIpv4First) {
  auto answer = lookUp("both.test");
  EXPECT_STREQ(joined(answer.addresses).cStr(), "192.0.2.1:0 [2001:db8::1]:0");
  EXPECT_STREQ(joined(lookUp("v4.test").addresses).cStr(), "192.0.2.4:0");
  EXPECT_STREQ(joined(lookUp("v6.test").addresses).cStr(), "[::1]:0");
  EXPECT_STREQ(resolver->description().cStr(), server->at.toString().cStr());
}

TEST_F(DnsLookupTest, AnswersManyLookupsAtOnce) {
  // As many clients arriving together: every lookup is answered, each with its own answer.
  constexpr int COUNT = 300;
  int answered = 0, right = 0;
  kj::Vector<kj::Own<DnsLookup>> lookups;
  for (int i = 0; i < COUNT; i++) {
    kj::StringPtr name = i % 2 == 0 ? "v4.test" : "v6.test";
    kj::StringPtr want = i % 2 == 0 ? "192.0.2.4:0" : "[::1]:0";
    lookups.add(resolver->lookUp(name, [&answered, &right, want](DnsAnswer&& answer) {
      answered++;
      if (joined(answer.addresses) == want) right++;
    }));
  }
  runUntil(base, [&]() { return answered == COUNT; });
  EXPECT_EQ(answered, COUNT);
  EXPECT_EQ(right, COUNT);
}

TEST_F(DnsLookupTest, SaysWhyANameHasNoAddress) {
  auto nx = lookUp("nx.test");
  EXPECT_EQ(nx.addresses.size(), 0u);
  EXPECT_TRUE(nx.nameUnknown);
  EXPECT_STREQ(nx.error.cStr(), "no such name (NXDOMAIN)");

  auto empty = lookUp("empty.test");
  EXPECT_EQ(empty.addresses.size(), 0u);
  EXPECT_TRUE(empty.nameUnknown);
  EXPECT_STREQ(empty.error.cStr(), "the name has no address (no A or AAAA record)");

  auto refused = lookUp("refused.test");
  EXPECT_EQ(refused.addresses.size(), 0u);
  EXPECT_FALSE(refused.nameUnknown);
  EXPECT_STREQ(refused.error.cStr(), "DNS error: refused");

  // evdns retries a SERVFAIL as if it had timed out.
  auto fail = lookUp("fail.test");
  EXPECT_EQ(fail.addresses.size(), 0u);
  EXPECT_FALSE(fail.nameUnknown);
  EXPECT_STREQ(fail.error.cStr(),
               "no usable answer from the DNS server within 0.600 s (timeout or SERVFAIL)");
}

TEST_F(DnsLookupTest, GivesUpWithinItsTimeout) {
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  auto silent = lookUp("silent.test");
  clock_gettime(CLOCK_MONOTONIC, &end);
  double seconds = (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
  EXPECT_EQ(silent.addresses.size(), 0u);
  EXPECT_FALSE(silent.nameUnknown);
  EXPECT_STREQ(silent.error.cStr(),
               "no usable answer from the DNS server within 0.600 s (timeout or SERVFAIL)");
  EXPECT_GE(seconds, 0.5);
  EXPECT_LT(seconds, 1.5);
  // Retransmitted within that time: both queries were sent more than once.
  EXPECT_GE(server->questions, 4);
  // The resolver still answers afterwards.
  EXPECT_STREQ(joined(lookUp("v4.test").addresses).cStr(), "192.0.2.4:0");
}

TEST_F(DnsLookupTest, ADroppedLookupNeverCallsBack) {
  bool called = false;
  // Dropped while both queries are in flight: evdns still calls back, with DNS_ERR_CANCEL.
  resolver->lookUp("both.test", [&](DnsAnswer&&) { called = true; });
  auto silent = resolver->lookUp("silent.test", [&](DnsAnswer&&) { called = true; });
  runUntil(base, [&]() { return server->questions >= 4; });
  silent = nullptr;
  // A lookup that drops itself from its own callback (a connection closing on the answer).
  kj::Maybe<kj::Own<DnsLookup>> self;
  bool selfAnswered = false;
  self = resolver->lookUp("nx.test", [&](DnsAnswer&&) {
    selfAnswered = true;
    self = nullptr;
  });
  runUntil(base, [&]() { return selfAnswered; });
  // Long enough for every cancel callback and for the silent name's timeout.
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  runUntil(base, [&]() {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > 800;
  });
  EXPECT_FALSE(called);
  EXPECT_TRUE(selfAnswered);
  EXPECT_TRUE(self == nullptr);
  EXPECT_STREQ(joined(lookUp("both.test").addresses).cStr(), "192.0.2.1:0 [2001:db8::1]:0");
}

// --- Start-up ---------------------------------------------------------------------------------

class ResolvConf {
public:
  explicit ResolvConf(kj::StringPtr text) {
    char name[] = "/tmp/tlstap-resolv-XXXXXX";
    int fd = mkstemp(name);
    KJ_ASSERT(fd >= 0);
    KJ_ASSERT(write(fd, text.begin(), text.size()) == ssize_t(text.size()));
    close(fd);
    path = kj::str(name);
  }
  ~ResolvConf() { unlink(path.cStr()); }
  kj::String path;
};

kj::String openWith(kj::StringPtr resolvConf, kj::Own<DnsResolver>& out) {
  event_base* base = event_base_new();
  DnsSettings settings;
  settings.resolvConf = resolvConf;
  kj::String result;
  KJ_IF_MAYBE(error, DnsResolver::open(base, settings, out)) {
    result = kj::mv(*error);
  } else {
    result = kj::str(out->description());
  }
  out = nullptr;
  event_base_free(base);
  return result;
}

TEST(DnsResolver, ReadsNameserversOnlyFromResolvConf) {
  kj::Own<DnsResolver> resolver;
  ResolvConf good("search corp.example\nnameserver 127.0.0.1\nnameserver ::1\noptions ndots:3\n");
  EXPECT_STREQ(openWith(good.path, resolver).cStr(),
               kj::str("127.0.0.1:53, [::1]:53 (from ", good.path, ")").cStr());
  ResolvConf none("search corp.example\n");
  EXPECT_STREQ(openWith(none.path, resolver).cStr(),
               kj::str(none.path, " names no nameserver; give --dns IP[:PORT]").cStr());
  auto missing = openWith("/nonexistent/resolv.conf", resolver);
  EXPECT_TRUE(missing.startsWith("cannot read /nonexistent/resolv.conf")) << missing.cStr();
}

}  // namespace
}  // namespace tlstap
