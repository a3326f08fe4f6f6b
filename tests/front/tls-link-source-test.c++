// The front's TCP/TLS recorder link source on the libevent loop: refused at creation off
// loopback without TLS, a clear error when nothing listens, and an authenticated stream when a
// recorder (a TlsLink server on a loopback socket) answers, whose socket is bounded by
// --link-timeout.
#include "front/tls-link-source.h"

#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <kj/debug.h>

#include "common/event-port.h"
#include "common/fd-stream.h"
#include "common/listen-socket.h"

namespace tlstap {
namespace {

// --link-timeout: how long the kernel keeps a link whose peer is unreachable.
constexpr auto SILENCE = 12 * kj::SECONDS;

// Freed after everything that runs on it.
struct OwnedEventBase {
  event_base* base = event_base_new();
  ~OwnedEventBase() { event_base_free(base); }
};

class TlsLinkSourceTest : public testing::Test {
protected:
  TlsLinkSourceTest() : base(owned.base), kj(base) {
    char tmpl[] = "/tmp/tlstap-link-source-test-XXXXXX";
    KJ_ASSERT(mkdtemp(tmpl) != nullptr);
    dir = kj::heapString(tmpl);
    pskFile = kj::str(dir, "/link.psk");
    FILE* f = fopen(pskFile.cStr(), "w");
    KJ_ASSERT(f != nullptr);
    fputs("0123456789abcdef0123456789abcdef\n", f);
    fclose(f);
  }
  ~TlsLinkSourceTest() noexcept {
    unlink(pskFile.cStr());
    rmdir(dir.cStr());
  }

  TlsLinkOptions psk() {
    TlsLinkOptions options;
    options.psk = kj::str("file:", pskFile);
    return options;
  }

  kj::String createError(kj::StringPtr hostPort, const TlsLinkOptions& options) {
    kj::Own<TlsLinkSource> source;
    KJ_IF_MAYBE(error,
                TlsLinkSource::create(base, kj.timer(), hostPort, options, SILENCE, source)) {
      return kj::mv(*error);
    }
    return kj::str("created");
  }

  // A loopback listening socket on a free port.
  kj::AutoCloseFd listen(uint16_t& port) {
    SocketAddress address;
    KJ_ASSERT(parseIpPort("127.0.0.1:1", address) == nullptr);
    reinterpret_cast<sockaddr_in&>(address.storage).sin_port = 0;
    kj::AutoCloseFd fd;
    KJ_ASSERT(openListenSocket(address, fd) == nullptr);
    port = boundPort(fd);
    return fd;
  }

  OwnedEventBase owned;
  event_base* base;
  KjOnLibevent kj;
  kj::String dir, pskFile;
};

TEST_F(TlsLinkSourceTest, PlainTcpOnlyOnLoopback) {
  TlsLinkOptions none;
  EXPECT_EQ(createError("127.0.0.1:4433", none), "created");
  EXPECT_EQ(createError("[::1]:4433", none), "created");
  auto error = createError("192.0.2.1:4433", none);
  EXPECT_TRUE(strstr(error.cStr(), "is not on loopback: the link needs TLS")) << error.cStr();
  EXPECT_EQ(createError("192.0.2.1:4433", psk()), "created");
  EXPECT_TRUE(createError("no-port", none).startsWith("--recorder: "));
}

TEST_F(TlsLinkSourceTest, NothingListeningIsAOneLineError) {
  uint16_t port;
  { auto closed = listen(port); }  // a port that nothing listens on any more
  kj::Own<TlsLinkSource> source;
  ASSERT_EQ(TlsLinkSource::create(base, kj.timer(), kj::str("127.0.0.1:", port), psk(), SILENCE,
                                  source),
            nullptr);
  auto exception = kj::runCatchingExceptions([&]() { source->connect().wait(kj.waitScope()); });
  auto& e = KJ_ASSERT_NONNULL(exception);
  EXPECT_TRUE(strstr(e.getDescription().cStr(), "Connection refused")) << e.getDescription().cStr();
  EXPECT_EQ(source->describe(), kj::str("127.0.0.1:", port));
}

TEST_F(TlsLinkSourceTest, ConnectsAndAuthenticatesWithARecorder) {
  uint16_t port;
  auto listener = listen(port);
  kj::Own<TlsLink> server;
  ASSERT_EQ(TlsLink::load(psk(), TlsLink::Role::SERVER, server), nullptr);
  kj::Own<TlsLinkSource> source;
  ASSERT_EQ(TlsLinkSource::create(base, kj.timer(), kj::str("127.0.0.1:", port), psk(), SILENCE,
                                  source),
            nullptr);

  auto connecting = source->connect().eagerlyEvaluate(nullptr);
  // The recorder's side: accept (the connect above did not block, so it is pending now).
  int accepted = -1;
  for (int i = 0; i < 200 && accepted < 0; i++) {
    kj.timer().afterDelay(5 * kj::MILLISECONDS).wait(kj.waitScope());
    accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  }
  ASSERT_GE(accepted, 0);
  auto serving =
      server->wrap(wrapSocketFd(base, kj::AutoCloseFd(accepted))).eagerlyEvaluate(nullptr);
  auto front = connecting.wait(kj.waitScope());
  auto recorder = serving.wait(kj.waitScope());

  front->write("flow", 4).wait(kj.waitScope());
  char buffer[4];
  EXPECT_EQ(recorder->tryRead(buffer, 4, 4).wait(kj.waitScope()), 4u);
  EXPECT_EQ(kj::StringPtr(buffer, 4), "flow");

  // The front's socket gives up a peer that is unreachable for SILENCE: keepalive probes from
  // half of it (then 3 probes a sixth apart), and unacknowledged data for no longer than it.
  auto option = [&](int level, int name) {
    int value = -1;
    uint length = sizeof(value);
    front->getsockopt(level, name, &value, &length);
    return value;
  };
  EXPECT_EQ(option(SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(option(IPPROTO_TCP, TCP_KEEPIDLE), 6);
  EXPECT_EQ(option(IPPROTO_TCP, TCP_KEEPINTVL), 2);
  EXPECT_EQ(option(IPPROTO_TCP, TCP_KEEPCNT), 3);
  EXPECT_EQ(option(IPPROTO_TCP, TCP_USER_TIMEOUT), 12000);
}

}  // namespace
}  // namespace tlstap
