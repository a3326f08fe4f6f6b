#include "front/relay.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/io.h>

#include "front/plain-stream.h"

namespace tlstap {
namespace {

class FakeFlow final : public RecordedFlow {
public:
  void append(Side from, int64_t, kj::ArrayPtr<const kj::byte> bytes) override {
    auto& to = from == Side::CLIENT ? fromClient : fromServer;
    to.append(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
  }
  void finish(Side from, int64_t) override {
    (from == Side::CLIENT ? clientFinished : serverFinished) = true;
  }
  void close(int64_t, kj::Maybe<Side>) override {}
  bool full() const override { return isFull; }
  void setOnDrain(kj::Function<void()>) override {}

  std::string fromClient;
  std::string fromServer;
  bool clientFinished = false;
  bool serverFinished = false;
  bool isFull = false;
};

// A relay between two socket pairs, plain on both sides (the relay's rules do not depend on
// TLS): the test plays the client on `client` and the backend on `backend`.
class RelayTest : public testing::Test {
public:
  RelayTest() {
    int a[2], b[2];
    KJ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a) == 0);
    KJ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b) == 0);
    client = kj::AutoCloseFd(a[0]);
    frontClient = kj::AutoCloseFd(a[1]);
    frontBackend = kj::AutoCloseFd(b[0]);
    backend = kj::AutoCloseFd(b[1]);
    clientStream = kj::heap<PlainStream>(frontClient.get(), "client");
    backendStream = kj::heap<PlainStream>(frontBackend.get(), "backend");
    relay = kj::heap<Relay>(*clientStream, *backendStream, flow, 4096);
  }
  ~RelayTest() noexcept {}

  static void put(int fd, kj::StringPtr text) {
    ASSERT_EQ(::send(fd, text.begin(), text.size(), MSG_NOSIGNAL), ssize_t(text.size()));
  }
  // Everything readable now; "EOF" once the peer has shut down and all is read.
  static std::string take(int fd) {
    std::string result;
    char buffer[65536];
    for (;;) {
      ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
      if (n == 0) return result + "EOF";
      if (n < 0) return result;
      result.append(buffer, n);
    }
  }
  void pumpAll() {
    while (relay->pump(1 << 20)) {}
  }

  kj::AutoCloseFd client, frontClient, frontBackend, backend;
  kj::Own<PlainStream> clientStream, backendStream;
  FakeFlow flow;
  kj::Own<Relay> relay;
};

TEST_F(RelayTest, RelaysAndRecordsBothWays) {
  put(client.get(), "request");
  pumpAll();
  EXPECT_EQ(take(backend.get()), "request");
  put(backend.get(), "response");
  pumpAll();
  EXPECT_EQ(take(client.get()), "response");
  EXPECT_EQ(flow.fromClient, "request");
  EXPECT_EQ(flow.fromServer, "response");
  EXPECT_EQ(relay->bytesFrom(Side::CLIENT), 7u);
  EXPECT_EQ(relay->bytesFrom(Side::SERVER), 8u);
  // Idle: both sides are waited on for reading, nothing for writing.
  auto wants = relay->wants();
  EXPECT_TRUE(wants.clientRead && wants.backendRead);
  EXPECT_FALSE(wants.clientWrite || wants.backendWrite);
}

TEST_F(RelayTest, PassesHalfClosesOnBothWays) {
  put(client.get(), "last words");
  ::shutdown(client.get(), SHUT_WR);
  pumpAll();
  EXPECT_EQ(take(backend.get()), "last wordsEOF");
  EXPECT_TRUE(flow.clientFinished);
  EXPECT_FALSE(relay->finished());
  // The backend may still answer after the client's end.
  put(backend.get(), "answer");
  pumpAll();
  EXPECT_EQ(take(client.get()), "answer");
  ::shutdown(backend.get(), SHUT_WR);
  pumpAll();
  EXPECT_EQ(take(client.get()), "EOF");
  EXPECT_TRUE(flow.serverFinished);
  EXPECT_TRUE(relay->finished());
  EXPECT_EQ(relay->abortedBy(), nullptr);
}

TEST_F(RelayTest, StopsReadingWhileTheRecordingIsFull) {
  flow.isFull = true;
  put(client.get(), "held");
  pumpAll();
  EXPECT_EQ(relay->bytesFrom(Side::CLIENT), 0u);
  EXPECT_FALSE(relay->wants().clientRead);
  EXPECT_EQ(take(backend.get()), "");
  flow.isFull = false;
  pumpAll();
  EXPECT_EQ(take(backend.get()), "held");
}

TEST_F(RelayTest, StopsReadingWhenTheOtherSideDoesNotTakeItsBytes) {
  // The backend reads nothing: the relay fills the socket, then its 4 KiB buffer, then stops.
  std::string chunk(16384, 'x');
  size_t sent = 0;
  for (int i = 0; i < 1000; i++) {
    ssize_t n = ::send(client.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n > 0) sent += n;
    pumpAll();
    if (!relay->wants().clientRead) break;
  }
  auto wants = relay->wants();
  EXPECT_FALSE(wants.clientRead);
  EXPECT_TRUE(wants.backendWrite);
  EXPECT_LT(relay->bytesFrom(Side::CLIENT), sent);
  // Once the backend reads, everything arrives.
  size_t received = 0;
  for (int i = 0; i < 10000 && received < sent; i++) {
    received += take(backend.get()).size();
    pumpAll();
  }
  EXPECT_EQ(received, sent);
}

TEST_F(RelayTest, AbortsWhenTheBackendResets) {
  // A unix socket closed with unread bytes resets its peer, like a TCP RST.
  put(client.get(), "unread");
  pumpAll();
  backend = nullptr;
  pumpAll();
  EXPECT_TRUE(relay->finished());
  auto side = KJ_ASSERT_NONNULL(relay->abortedBy());
  EXPECT_EQ(side, Side::SERVER);
  EXPECT_EQ(relay->abortReason(), "backend reset the connection");
}

}  // namespace
}  // namespace tlstap
