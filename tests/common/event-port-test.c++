// The libevent/KJ glue: promises progress under event_base_dispatch() and under Promise::wait(),
// and the fd stream moves bytes, EOF and half-closes faithfully. (The Cap'n Proto RPC round trip
// over this glue is in tests/front/recorder-client-test.c++, whose binary links capnp-rpc.)
#include "common/event-port.h"
#include "common/fd-stream.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <kj/debug.h>
#include <kj/vector.h>

namespace tlstap {
namespace {

struct Base {
  event_base* base = event_base_new();
  ~Base() { event_base_free(base); }
};

struct SocketPair {
  kj::AutoCloseFd a, b;
  SocketPair() {
    int fds[2];
    KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
    a = kj::AutoCloseFd(fds[0]);
    b = kj::AutoCloseFd(fds[1]);
  }
};

// Breaks event_base_dispatch() once `promise` settles; fails the test if it rejected.
kj::Promise<void> breakWhenDone(event_base* base, kj::Promise<void> promise) {
  return promise.then([base]() { event_base_loopbreak(base); },
                      [base](kj::Exception&& e) {
                        ADD_FAILURE() << e.getDescription().cStr();
                        event_base_loopbreak(base);
                      });
}

// A safety net so a broken test fails instead of hanging: stops dispatch after 20 s.
struct Deadline {
  bool expired = false;
  EventHandle event;
  explicit Deadline(event_base* base)
      : event(base, -1, 0, &Deadline::fire, this) {
    struct timeval tv = {20, 0};
    event.add(&tv);
  }
  static void fire(evutil_socket_t, short, void* arg) {
    auto& self = *static_cast<Deadline*>(arg);
    self.expired = true;
    event_base_loopbreak(event_get_base(self.event.get()));
  }
};

kj::Array<kj::byte> pattern(size_t size, uint32_t seed) {
  auto bytes = kj::heapArray<kj::byte>(size);
  uint32_t x = seed;
  for (auto& b : bytes) {
    x = x * 1103515245 + 12345;
    b = x >> 24;
  }
  return bytes;
}

TEST(EventPort, LibeventCallbackFulfilsPromiseUnderDispatch) {
  Base b;
  KjOnLibevent kj(b.base);
  auto paf = kj::newPromiseAndFulfiller<int>();
  // A plain libevent timer (as the relay's socket callbacks are) fulfils a KJ promise.
  struct Ctx { kj::PromiseFulfiller<int>* fulfiller; } ctx{paf.fulfiller.get()};
  EventHandle timer(b.base, -1, 0, [](evutil_socket_t, short, void* arg) {
    static_cast<Ctx*>(arg)->fulfiller->fulfill(42);
  }, &ctx);
  struct timeval tv = {0, 1000};
  timer.add(&tv);

  int seen = 0;
  auto done = breakWhenDone(b.base, paf.promise.then([&](int v) { seen = v; }))
      .eagerlyEvaluate(nullptr);
  Deadline deadline(b.base);
  event_base_dispatch(b.base);
  EXPECT_FALSE(deadline.expired);
  EXPECT_EQ(seen, 42);
}

kj::Promise<void> countDown(int& left) {
  if (--left == 0) return kj::READY_NOW;
  return kj::evalLater([&left]() { return countDown(left); });
}

TEST(EventPort, LongChainsFinishUnderDispatchWithoutStarvingIo) {
  Base b;
  KjOnLibevent kj(b.base);
  // Far more turns than one callback runs: the port must re-activate itself to finish the chain.
  int left = 100000;
  int timerFired = 0;
  EventHandle timer(b.base, -1, EV_PERSIST, [](evutil_socket_t, short, void* arg) {
    ++*static_cast<int*>(arg);
  }, &timerFired);
  // (Not zero: libevent does not re-arm a persistent event whose timeout is zero.)
  struct timeval tiny = {0, 1};
  timer.add(&tiny);
  auto done = breakWhenDone(b.base, countDown(left)).eagerlyEvaluate(nullptr);
  Deadline deadline(b.base);
  event_base_dispatch(b.base);
  EXPECT_FALSE(deadline.expired);
  EXPECT_EQ(left, 0);
  // The timer was due at every loop iteration: it ran while the chain was still going.
  EXPECT_GT(timerFired, 1);
}

TEST(EventPort, WaitRunsLibeventAndDispatchStillWorksAfterwards) {
  Base b;
  KjOnLibevent kj(b.base);
  auto start = kj.timer().now();
  kj.timer().afterDelay(20 * kj::MILLISECONDS).wait(kj.waitScope());
  EXPECT_GE(kj.timer().now() - start, 20 * kj::MILLISECONDS);

  // Work queued after a wait() must still run under dispatch.
  bool ran = false;
  auto later = breakWhenDone(b.base, kj::evalLater([&]() { ran = true; }))
      .eagerlyEvaluate(nullptr);
  Deadline deadline(b.base);
  event_base_dispatch(b.base);
  EXPECT_FALSE(deadline.expired);
  EXPECT_TRUE(ran);
}

TEST(EventPort, TimerFiresUnderDispatchInOrder) {
  Base b;
  KjOnLibevent kj(b.base);
  kj::Vector<int> order;
  auto start = kj.timer().now();
  // eagerlyEvaluate: a joined promise runs its branches' continuations only once all are ready.
  auto slow = kj.timer().afterDelay(30 * kj::MILLISECONDS).then([&]() { order.add(2); })
      .eagerlyEvaluate(nullptr);
  auto fast = kj.timer().afterDelay(10 * kj::MILLISECONDS).then([&]() { order.add(1); })
      .eagerlyEvaluate(nullptr);
  auto done = breakWhenDone(b.base, kj::joinPromises(kj::arr(kj::mv(slow), kj::mv(fast))))
      .eagerlyEvaluate(nullptr);
  Deadline deadline(b.base);
  event_base_dispatch(b.base);
  EXPECT_FALSE(deadline.expired);
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], 1);
  EXPECT_EQ(order[1], 2);
  EXPECT_GE(kj.timer().now() - start, 30 * kj::MILLISECONDS);
}

TEST(EventPort, WaitWithNothingThatCouldWakeItThrowsInsteadOfHanging) {
  Base b;
  KjOnLibevent kj(b.base);
  // (NEVER_DONE rather than a fulfiller's promise: KJ leaves a promise whose wait() threw
  // pointing at the waiter's stack, so it must not be fulfilled afterwards.)
  kj::Promise<void> never = kj::NEVER_DONE;
  EXPECT_ANY_THROW(never.wait(kj.waitScope()));
}

// ---------------------------------------------------------------------------------------------

kj::Promise<void> writeAll(kj::AsyncIoStream& stream, kj::ArrayPtr<const kj::byte> data) {
  // Several pieces per write, to exercise the writev path and partial writes across pieces.
  size_t third = data.size() / 3;
  auto pieces = kj::heapArray<kj::ArrayPtr<const kj::byte>>(
      {data.slice(0, third), data.slice(third, 2 * third), data.slice(2 * third, data.size())});
  auto promise = stream.write(pieces);
  return promise.attach(kj::mv(pieces));
}

TEST(FdStream, LargeTransfersBothWaysUnderDispatch) {
  Base b;
  KjOnLibevent kj(b.base);
  SocketPair pair;
  auto left = wrapSocketFd(b.base, kj::mv(pair.a));
  auto right = wrapSocketFd(b.base, kj::mv(pair.b));
  // Much larger than the socket buffers, so both writers block and resume many times.
  auto toRight = pattern(16 << 20, 1);
  auto toLeft = pattern(12 << 20, 2);
  auto gotRight = kj::heapArray<kj::byte>(toRight.size());
  auto gotLeft = kj::heapArray<kj::byte>(toLeft.size());

  auto all = kj::joinPromises(kj::arr(
      writeAll(*left, toRight), writeAll(*right, toLeft),
      right->read(gotRight.begin(), gotRight.size()),
      left->read(gotLeft.begin(), gotLeft.size())));
  auto done = breakWhenDone(b.base, kj::mv(all)).eagerlyEvaluate(nullptr);
  Deadline deadline(b.base);
  event_base_dispatch(b.base);
  EXPECT_FALSE(deadline.expired);
  EXPECT_TRUE(gotRight == toRight);
  EXPECT_TRUE(gotLeft == toLeft);
}

TEST(FdStream, ShutdownWriteGivesEofAfterTheDataAndKeepsTheOtherDirection) {
  Base b;
  KjOnLibevent kj(b.base);
  SocketPair pair;
  auto left = wrapSocketFd(b.base, kj::mv(pair.a));
  auto right = wrapSocketFd(b.base, kj::mv(pair.b));
  auto& ws = kj.waitScope();

  left->write("hello", 5).wait(ws);
  left->shutdownWrite();
  char buffer[16];
  size_t n = right->tryRead(buffer, 16, sizeof(buffer)).wait(ws);  // wants 16, gets 5 then EOF
  EXPECT_EQ(kj::StringPtr(buffer, n), "hello");
  EXPECT_EQ(right->tryRead(buffer, 1, sizeof(buffer)).wait(ws), 0u);

  // The half-closed side still receives.
  right->write("back", 4).wait(ws);
  n = left->tryRead(buffer, 4, sizeof(buffer)).wait(ws);
  EXPECT_EQ(kj::StringPtr(buffer, n), "back");
}

TEST(FdStream, ReadWaitsForDataThatArrivesLater) {
  Base b;
  KjOnLibevent kj(b.base);
  SocketPair pair;
  auto left = wrapSocketFd(b.base, kj::mv(pair.a));
  auto right = wrapSocketFd(b.base, kj::mv(pair.b));
  auto& ws = kj.waitScope();

  char buffer[8];
  auto read = right->read(buffer, 8);
  // Nothing yet: polling leaves the read pending.
  EXPECT_FALSE(read.poll(ws));
  left->write("abcd", 4).wait(ws);
  EXPECT_FALSE(read.poll(ws));  // 4 of 8
  left->write("efgh", 4).wait(ws);
  read.wait(ws);
  EXPECT_EQ(kj::StringPtr(buffer, 8), "abcdefgh");

  // A dropped read stops waiting, and a new one can start.
  {
    auto abandoned = right->tryRead(buffer, 1, 8);
    EXPECT_FALSE(abandoned.poll(ws));
  }
  left->write("x", 1).wait(ws);
  EXPECT_EQ(right->tryRead(buffer, 1, 8).wait(ws), 1u);
  EXPECT_EQ(buffer[0], 'x');
}

TEST(FdStream, PeerGoneIsDisconnectedNotSigpipe) {
  Base b;
  KjOnLibevent kj(b.base);
  SocketPair pair;
  auto left = wrapSocketFd(b.base, kj::mv(pair.a));
  auto right = wrapSocketFd(b.base, kj::mv(pair.b));
  auto& ws = kj.waitScope();

  auto disconnected = left->whenWriteDisconnected();
  EXPECT_FALSE(disconnected.poll(ws));
  right = nullptr;  // closes the peer
  disconnected.wait(ws);

  // Without MSG_NOSIGNAL this would kill the test binary with SIGPIPE.
  auto data = pattern(1 << 20, 3);
  kj::Maybe<kj::Exception> error;
  left->write(data.begin(), data.size()).then([]() {}, [&](kj::Exception&& e) {
    error = kj::mv(e);
  }).wait(ws);
  KJ_IF_MAYBE(e, error) {
    EXPECT_EQ(e->getType(), kj::Exception::Type::DISCONNECTED);
  } else {
    ADD_FAILURE() << "write to a closed peer succeeded";
  }
}

TEST(FdStream, SocketOptionsAndAddressesAreTheRealOnes) {
  Base b;
  KjOnLibevent kj(b.base);
  // A loopback TCP pair, so the addresses have ports to compare.
  kj::AutoCloseFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  KJ_SYSCALL(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
  KJ_SYSCALL(listen(listener, 1));
  KJ_SYSCALL(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len));
  kj::AutoCloseFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  KJ_SYSCALL(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
  kj::AutoCloseFd server(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_GE(server.get(), 0);

  int expectedSndbuf = 0;
  socklen_t optlen = sizeof(expectedSndbuf);
  KJ_SYSCALL(getsockopt(client, SOL_SOCKET, SO_SNDBUF, &expectedSndbuf, &optlen));
  auto stream = wrapSocketFd(b.base, kj::mv(client));

  int sndbuf = 0;
  uint length = sizeof(sndbuf);
  stream->getsockopt(SOL_SOCKET, SO_SNDBUF, &sndbuf, &length);
  EXPECT_EQ(sndbuf, expectedSndbuf);
  EXPECT_GT(sndbuf, 0);

  struct sockaddr_in peer = {};
  length = sizeof(peer);
  stream->getpeername(reinterpret_cast<sockaddr*>(&peer), &length);
  EXPECT_EQ(peer.sin_port, addr.sin_port);
  struct sockaddr_in local = {};
  length = sizeof(local);
  stream->getsockname(reinterpret_cast<sockaddr*>(&local), &length);
  EXPECT_NE(local.sin_port, 0);
  EXPECT_NE(local.sin_port, addr.sin_port);
}

}  // namespace
}  // namespace tlstap
