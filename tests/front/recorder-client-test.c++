// RecorderClient against an in-process fake recorder: both ends of a socket pair, both RPC systems
// on one libevent loop (common/event-port.h), as the front and tlstap-recorder run them.
#include "front/recorder-client.h"

#include <gtest/gtest.h>
#include <string.h>
#include <sys/socket.h>
#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>
#include <kj/vector.h>

#include "common/event-port.h"
#include "common/fd-stream.h"
#include "recorder.capnp.h"

namespace tlstap {
namespace {

struct ChunkSeen {
  proto::Direction direction;
  int64_t timeUs;
  kj::Array<kj::byte> bytes;
  bool fin;
};

struct FlowSeen {
  kj::String sni;
  kj::Array<kj::byte> clientAddress;
  kj::Array<kj::byte> serverAddress;
  uint16_t clientPort = 0;
  uint16_t serverPort = 0;
  uint16_t pcapPort = 0;
  int64_t startTimeUs = 0;
  kj::Vector<ChunkSeen> chunks;
  uint dataCalls = 0;
  bool closed = false;
  bool closeFin = false;
  int64_t closeTimeUs = 0;
  size_t chunksBeforeClose = 0;

  kj::Array<kj::byte> bytesFrom(proto::Direction direction) const {
    kj::Vector<kj::byte> all;
    for (auto& chunk : chunks) {
      if (chunk.direction == direction) all.addAll(chunk.bytes);
    }
    return all.releaseAsArray();
  }
};

// What the fake recorder saw, and a switch that makes its data() calls hang (a stalled recorder).
struct RecorderLog {
  kj::Vector<kj::Own<FlowSeen>> flows;
  bool paused = false;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> stalled;

  void resume() {
    paused = false;
    for (auto& fulfiller : stalled) fulfiller->fulfill();
    stalled.clear();
  }
};

class FakeFlow final : public proto::Flow::Server {
public:
  FakeFlow(RecorderLog& log, FlowSeen& seen) : log(log), seen(seen) {}

protected:
  kj::Promise<void> data(DataContext context) override {
    ++seen.dataCalls;
    for (auto chunk : context.getParams().getChunks()) {
      seen.chunks.add(ChunkSeen{chunk.getDirection(), chunk.getTimeUs(),
                                kj::heapArray(chunk.getBytes()), chunk.getFin()});
    }
    if (!log.paused) return kj::READY_NOW;
    auto paf = kj::newPromiseAndFulfiller<void>();
    log.stalled.add(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }

  kj::Promise<void> close(CloseContext context) override {
    auto how = context.getParams().getHow();
    seen.closed = true;
    seen.closeFin = how.isFin();
    seen.closeTimeUs = how.getTimeUs();
    seen.chunksBeforeClose = seen.chunks.size();
    return kj::READY_NOW;
  }

private:
  RecorderLog& log;
  FlowSeen& seen;
};

class FakeRecorder final : public proto::Recorder::Server {
public:
  explicit FakeRecorder(RecorderLog& log) : log(log) {}

protected:
  kj::Promise<void> openFlow(OpenFlowContext context) override {
    auto meta = context.getParams().getMeta();
    if (meta.getSni() == "refuse.example") {
      return KJ_EXCEPTION(FAILED, "test recorder refuses this flow");
    }
    auto seen = kj::heap<FlowSeen>();
    seen->sni = kj::str(meta.getSni());
    seen->clientAddress = kj::heapArray(meta.getClient().getAddress());
    seen->serverAddress = kj::heapArray(meta.getServer().getAddress());
    seen->clientPort = meta.getClient().getPort();
    seen->serverPort = meta.getServer().getPort();
    seen->pcapPort = meta.getPcapPort();
    seen->startTimeUs = meta.getStartTimeUs();
    context.getResults().setFlow(kj::heap<FakeFlow>(log, *seen));
    log.flows.add(kj::mv(seen));
    return kj::READY_NOW;
  }

private:
  RecorderLog& log;
};

// The fake recorder's end of the link.
struct ServerEnd {
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;

  ServerEnd(kj::Own<kj::AsyncIoStream> streamParam, RecorderLog& log)
      : stream(kj::mv(streamParam)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER),
        rpc(capnp::makeRpcServer(network, kj::heap<FakeRecorder>(log))) {}
};

struct BaseOwner {
  event_base* base = event_base_new();
  ~BaseOwner() { event_base_free(base); }
};

class RecorderClientTest : public testing::Test {
public:
  ~RecorderClientTest() noexcept override {}

  // Declared in the order of construction; destroyed the other way round.
  BaseOwner owner;
  event_base* base = owner.base;
  KjOnLibevent kj{base};
  // A steady tick so that a loop iteration never blocks for long while a condition is polled.
  EventHandle tick{base, -1, EV_PERSIST, [](evutil_socket_t, short, void*) {}, nullptr};
  RecorderLog log;
  kj::Maybe<kj::Own<ServerEnd>> server;
  kj::Own<RecorderClient> client;

  void SetUp() override {
    struct timeval interval = {0, 2000};
    tick.add(&interval);
  }

  void connect(RecorderLimits limits = {}) {
    int fds[2];
    KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
    server = kj::heap<ServerEnd>(wrapSocketFd(base, kj::AutoCloseFd(fds[1])), log);
    client = kj::heap<RecorderClient>(wrapSocketFd(base, kj::AutoCloseFd(fds[0])), limits);
  }

  // Runs the loop, the way the front does (event_base_loop, not Promise::wait), until `done`.
  template <typename Func>
  bool runUntil(Func&& done, int timeoutMs = 10000) {
    auto deadline = kj::systemPreciseMonotonicClock().now() + timeoutMs * kj::MILLISECONDS;
    while (!done()) {
      if (kj::systemPreciseMonotonicClock().now() > deadline) return false;
      event_base_loop(base, EVLOOP_ONCE);
    }
    return true;
  }

  void runFor(int milliseconds) {
    auto deadline = kj::systemPreciseMonotonicClock().now() + milliseconds * kj::MILLISECONDS;
    while (kj::systemPreciseMonotonicClock().now() < deadline) event_base_loop(base, EVLOOP_ONCE);
  }

  static FlowInfo info(kj::StringPtr clientText, kj::StringPtr serverText,
                       kj::StringPtr sni = "www.example.com") {
    FlowInfo flow;
    KJ_ASSERT(parseIpPort(clientText, flow.client) == nullptr);
    KJ_ASSERT(parseIpPort(serverText, flow.server) == nullptr);
    flow.pcapPort = 80;
    flow.sni = kj::str(sni);
    flow.alpn = kj::str("http/1.1");
    flow.tlsVersion = kj::str("TLS1.3");
    flow.cipher = kj::str("TLS_AES_128_GCM_SHA256");
    flow.startTimeUs = 1000;
    return flow;
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

kj::ArrayPtr<const kj::byte> text(kj::StringPtr s) { return s.asBytes(); }

TEST_F(RecorderClientTest, ChunksArriveInOrderWithTimesDirectionsFinAndClose) {
  connect();
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  flow->append(Side::CLIENT, 2000, text("GET / HTTP/1.1\r\n\r\n"));
  flow->append(Side::SERVER, 3000, text("HTTP/1.1 200 OK\r\n"));
  flow->append(Side::SERVER, 3500, text("\r\nhello"));
  flow->finish(Side::CLIENT, 4000);
  flow->append(Side::SERVER, 4500, text(" world"));
  flow->finish(Side::SERVER, 5000);
  flow->close(6000, nullptr);
  flow = nullptr;  // the relay lets go at once; what is queued must still arrive

  ASSERT_TRUE(runUntil([&]() { return log.flows.size() == 1 && log.flows[0]->closed; }));
  auto& seen = *log.flows[0];
  EXPECT_EQ(seen.sni, "www.example.com");
  EXPECT_EQ(seen.clientAddress, kj::heapArray<kj::byte>({192, 0, 2, 1}));
  EXPECT_EQ(seen.serverAddress, kj::heapArray<kj::byte>({198, 51, 100, 7}));
  EXPECT_EQ(seen.clientPort, 40000);
  EXPECT_EQ(seen.serverPort, 443);
  EXPECT_EQ(seen.pcapPort, 80);
  EXPECT_EQ(seen.startTimeUs, 1000);

  ASSERT_EQ(seen.chunks.size(), 6u);
  struct Expected { proto::Direction direction; int64_t timeUs; kj::StringPtr bytes; bool fin; };
  auto C = proto::Direction::CLIENT_TO_SERVER;
  auto S = proto::Direction::SERVER_TO_CLIENT;
  Expected expected[] = {{C, 2000, "GET / HTTP/1.1\r\n\r\n", false},
                         {S, 3000, "HTTP/1.1 200 OK\r\n", false},
                         {S, 3500, "\r\nhello", false},
                         {C, 4000, "", true},
                         {S, 4500, " world", false},
                         {S, 5000, "", true}};
  for (size_t i = 0; i < 6; i++) {
    EXPECT_EQ(seen.chunks[i].direction, expected[i].direction) << i;
    EXPECT_EQ(seen.chunks[i].timeUs, expected[i].timeUs) << i;
    EXPECT_EQ(kj::heapString(seen.chunks[i].bytes.asChars()), expected[i].bytes) << i;
    EXPECT_EQ(seen.chunks[i].fin, expected[i].fin) << i;
  }
  EXPECT_EQ(seen.chunksBeforeClose, 6u);
  EXPECT_TRUE(seen.closeFin);
  EXPECT_EQ(seen.closeTimeUs, 6000);

  auto counters = client->counters();
  EXPECT_EQ(counters.bytesQueued, counters.bytesSent);
  EXPECT_EQ(counters.bytesLost, 0u);
  EXPECT_EQ(counters.bytesWaiting, 0u);
}

TEST_F(RecorderClientTest, ResetNamesTheSideAndTimeNeverGoesBackwards) {
  connect();
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  flow->append(Side::CLIENT, 9000, text("a"));
  flow->append(Side::CLIENT, 8000, text("b"));  // the wall clock stepped back
  flow->close(7000, Side::SERVER);
  ASSERT_TRUE(runUntil([&]() { return log.flows.size() == 1 && log.flows[0]->closed; }));
  auto& seen = *log.flows[0];
  ASSERT_EQ(seen.chunks.size(), 2u);
  EXPECT_EQ(seen.chunks[1].timeUs, 9000);
  EXPECT_EQ(seen.closeTimeUs, 9000);
  EXPECT_FALSE(seen.closeFin);
}

TEST_F(RecorderClientTest, MappedAndMixedAddressFamiliesBecomeOneFamily) {
  connect();
  auto mapped = client->openFlow(info("[::ffff:192.0.2.9]:40000", "198.51.100.7:443"));
  auto mixed = client->openFlow(info("[2001:db8::1]:40000", "198.51.100.7:443"));
  ASSERT_TRUE(runUntil([&]() { return log.flows.size() == 2; }));
  EXPECT_EQ(log.flows[0]->clientAddress, kj::heapArray<kj::byte>({192, 0, 2, 9}));
  EXPECT_EQ(log.flows[0]->serverAddress.size(), 4u);
  EXPECT_EQ(log.flows[1]->clientAddress.size(), 16u);
  EXPECT_EQ(log.flows[1]->serverAddress,
            kj::heapArray<kj::byte>({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7}));
}

TEST_F(RecorderClientTest, ManySmallAppendsAreBatchedIntoFewCalls) {
  connect();
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  // As many reads as one busy loop iteration might bring: no event loop turn in between.
  constexpr int APPENDS = 10000;
  kj::Vector<kj::byte> sent;
  for (int i = 0; i < APPENDS; i++) {
    auto piece = pattern(10, i);
    sent.addAll(piece);
    flow->append(Side::CLIENT, 2000 + i, piece);
  }
  flow->close(20000, nullptr);
  ASSERT_TRUE(runUntil([&]() { return log.flows.size() == 1 && log.flows[0]->closed; }));
  auto& seen = *log.flows[0];
  ASSERT_EQ(seen.chunks.size(), size_t(APPENDS));
  EXPECT_TRUE(seen.bytesFrom(proto::Direction::CLIENT_TO_SERVER) == sent.asPtr());
  for (int i = 0; i < APPENDS; i++) ASSERT_EQ(seen.chunks[i].timeUs, 2000 + i);
  // 100 KB in 10-byte reads: bounded by 4096 chunks a call, not one call per read.
  EXPECT_LE(seen.dataCalls, 4u);
  EXPECT_GE(seen.dataCalls, 3u);
  EXPECT_EQ(client->counters().dataCalls, seen.dataCalls);
}

TEST_F(RecorderClientTest, LargeAppendsAreSplitAndBatchesStayBounded) {
  connect();
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  auto big = pattern(3 << 20, 7);  // larger than the contract's 1 MiB chunk limit
  flow->append(Side::SERVER, 2000, big);
  flow->close(3000, nullptr);
  ASSERT_TRUE(runUntil([&]() { return log.flows.size() == 1 && log.flows[0]->closed; }));
  auto& seen = *log.flows[0];
  EXPECT_TRUE(seen.bytesFrom(proto::Direction::SERVER_TO_CLIENT) == big);
  for (auto& chunk : seen.chunks) EXPECT_LE(chunk.bytes.size(), proto::MAX_CHUNK_BYTES);
  EXPECT_EQ(seen.chunks.size(), 3u);
}

TEST_F(RecorderClientTest, FullWhileTheRecorderStallsAndDrainCallbackWhenItResumes) {
  RecorderLimits limits;
  limits.flowQueueBytes = 256 << 10;
  connect(limits);
  log.paused = true;
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  int drains = 0;
  flow->setOnDrain([&]() { ++drains; });

  kj::Vector<kj::byte> sent;
  int64_t time = 2000;
  // The relay's loop: read (append) while not full, letting the event loop run in between.
  while (!flow->full() && sent.size() < (64u << 20)) {
    auto piece = pattern(16 << 10, sent.size());
    sent.addAll(piece);
    flow->append(Side::CLIENT, time++, piece);
    event_base_loop(base, EVLOOP_NONBLOCK);
  }
  ASSERT_TRUE(flow->full());
  // It filled up because the recorder stalled, not at once: the first bound's worth went out.
  EXPECT_GT(sent.size(), limits.flowQueueBytes);
  EXPECT_GT(client->counters().bytesSent, 0u);
  runFor(50);
  EXPECT_TRUE(flow->full());  // still stalled: still full, no drain
  EXPECT_EQ(drains, 0);

  log.resume();
  ASSERT_TRUE(runUntil([&]() { return drains > 0; }));
  EXPECT_FALSE(flow->full());
  EXPECT_EQ(drains, 1);

  flow->close(time, nullptr);
  ASSERT_TRUE(runUntil([&]() { return log.flows.size() == 1 && log.flows[0]->closed; }));
  EXPECT_TRUE(log.flows[0]->bytesFrom(proto::Direction::CLIENT_TO_SERVER) == sent.asPtr());
  EXPECT_EQ(client->counters().bytesLost, 0u);
}

TEST_F(RecorderClientTest, TotalBoundMakesEveryAppendingFlowFull) {
  RecorderLimits limits;
  limits.flowQueueBytes = 64 << 20;
  limits.totalQueueBytes = 512 << 10;
  connect(limits);
  log.paused = true;
  auto first = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  auto second = client->openFlow(info("192.0.2.2:40000", "198.51.100.7:443"));
  int secondDrains = 0;
  second->setOnDrain([&]() { ++secondDrains; });
  size_t appended = 0;
  while (!first->full() && appended < (64u << 20)) {
    first->append(Side::CLIENT, 2000, pattern(16 << 10, appended));
    appended += 16 << 10;
    event_base_loop(base, EVLOOP_NONBLOCK);
  }
  ASSERT_TRUE(first->full());
  EXPECT_LT(appended, size_t(limits.flowQueueBytes));  // the total, not its own bound
  second->append(Side::CLIENT, 2000, text("x"));
  EXPECT_TRUE(second->full());

  log.resume();
  ASSERT_TRUE(runUntil([&]() { return !first->full() && secondDrains == 1; }));
}

TEST_F(RecorderClientTest, BrokenLinkCountsLostBytesReleasesFullFlowsAndLogsOnce) {
  RecorderLimits limits;
  limits.flowQueueBytes = 128 << 10;
  connect(limits);
  log.paused = true;
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  int drains = 0;
  flow->setOnDrain([&]() { ++drains; });
  size_t appended = 0;
  while (!flow->full() && appended < (64u << 20)) {
    flow->append(Side::CLIENT, 2000, pattern(16 << 10, appended));
    appended += 16 << 10;
    event_base_loop(base, EVLOOP_NONBLOCK);
  }
  ASSERT_TRUE(flow->full());
  auto before = client->counters();
  ASSERT_GT(before.bytesWaiting, 0u);

  testing::internal::CaptureStderr();
  server = nullptr;  // the recorder goes away
  bool lost = runUntil([&]() { return !client->linkUp(); });
  // The relay goes on: not full, and what it hands in now is counted, not queued.
  flow->append(Side::SERVER, 3000, pattern(1000, 1));
  flow->close(4000, nullptr);
  auto other = client->openFlow(info("192.0.2.3:40000", "198.51.100.7:443"));
  other->append(Side::CLIENT, 5000, pattern(500, 2));
  other->close(6000, nullptr);
  runFor(20);
  auto output = kj::str(testing::internal::GetCapturedStderr().c_str());

  ASSERT_TRUE(lost);
  EXPECT_FALSE(flow->full());
  EXPECT_EQ(drains, 1);  // released, or the relay would wait forever
  auto after = client->counters();
  EXPECT_EQ(after.bytesQueued, appended + 1500);
  EXPECT_EQ(after.bytesWaiting, 0u);
  EXPECT_EQ(after.bytesLost, before.bytesWaiting + 1500);
  EXPECT_EQ(after.bytesSent + after.bytesLost, after.bytesQueued);

  // One line for the link, one per flow with the bytes it did not record.
  size_t linkLines = 0;
  for (const char* p = output.cStr(); (p = strstr(p, "recorder link lost")) != nullptr; ++p) {
    ++linkLines;
  }
  EXPECT_EQ(linkLines, 1u) << output.cStr();
  EXPECT_NE(strstr(output.cStr(), kj::str(before.bytesWaiting + 1000, " bytes not recorded")
                                      .cStr()),
            nullptr) << output.cStr();
  EXPECT_NE(strstr(output.cStr(), "192.0.2.3:40000 -> 198.51.100.7:443: 500 bytes not recorded"),
            nullptr) << output.cStr();
}

TEST_F(RecorderClientTest, RefusedFlowIsCountedLostWhileOthersRecord) {
  connect();
  testing::internal::CaptureStderr();
  auto refused = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443", "refuse.example"));
  auto good = client->openFlow(info("192.0.2.2:40000", "198.51.100.7:443"));
  refused->append(Side::CLIENT, 2000, pattern(300, 1));
  good->append(Side::CLIENT, 2000, pattern(200, 2));
  ASSERT_TRUE(runUntil([&]() { return client->counters().bytesLost >= 300; }));
  refused->append(Side::CLIENT, 2100, pattern(50, 3));
  refused->close(3000, nullptr);
  good->close(3000, nullptr);
  ASSERT_TRUE(runUntil([&]() { return log.flows.size() == 1 && log.flows[0]->closed; }));
  auto output = kj::str(testing::internal::GetCapturedStderr().c_str());

  EXPECT_TRUE(client->linkUp());
  EXPECT_TRUE(log.flows[0]->bytesFrom(proto::Direction::CLIENT_TO_SERVER) == pattern(200, 2));
  EXPECT_EQ(client->counters().bytesLost, 350u);
  EXPECT_NE(strstr(output.cStr(), "350 bytes not recorded"), nullptr) << output.cStr();
}

TEST_F(RecorderClientTest, DrainAndCloseSendsEverythingThenClosesTheLink) {
  connect();
  auto open = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  auto closed = client->openFlow(info("192.0.2.2:40000", "198.51.100.7:443"));
  auto data = pattern(2 << 20, 5);
  open->append(Side::CLIENT, 2000, data);
  closed->append(Side::SERVER, 2000, data);
  closed->close(3000, nullptr);
  bool drained = false;
  auto promise = client->drainAndClose().then([&]() { drained = true; }).eagerlyEvaluate(nullptr);
  bool serverSawEof = false;
  auto eof = KJ_ASSERT_NONNULL(server)->network.onDisconnect().then([&]() {
    serverSawEof = true;
  }).eagerlyEvaluate(nullptr);

  ASSERT_TRUE(runUntil([&]() { return drained; }));
  EXPECT_FALSE(client->linkUp());
  ASSERT_TRUE(runUntil([&]() { return serverSawEof; }));
  ASSERT_EQ(log.flows.size(), 2u);
  EXPECT_TRUE(log.flows[0]->bytesFrom(proto::Direction::CLIENT_TO_SERVER) == data);
  EXPECT_FALSE(log.flows[0]->closed);  // still open when the front stopped: left open
  EXPECT_TRUE(log.flows[1]->bytesFrom(proto::Direction::SERVER_TO_CLIENT) == data);
  EXPECT_TRUE(log.flows[1]->closed);
  EXPECT_EQ(client->counters().bytesLost, 0u);
}

TEST_F(RecorderClientTest, WhenReadyResolvesOnceTheRecorderAnswers) {
  connect();
  bool ready = false;
  auto promise = client->whenReady().then([&]() { ready = true; }).eagerlyEvaluate(nullptr);
  ASSERT_TRUE(runUntil([&]() { return ready; }));
}

TEST_F(RecorderClientTest, WhenReadyFailsIfTheRecorderIsGone) {
  connect();
  server = nullptr;
  kj::Maybe<kj::Exception> failure;
  auto promise = client->whenReady().then([]() {}, [&](kj::Exception&& e) {
    failure = kj::mv(e);
  }).eagerlyEvaluate(nullptr);
  testing::internal::CaptureStderr();
  ASSERT_TRUE(runUntil([&]() { return failure != nullptr; }));
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(KJ_ASSERT_NONNULL(failure).getType(), kj::Exception::Type::DISCONNECTED);
}

TEST_F(RecorderClientTest, RpcRoundTripUnderEventBaseDispatch) {
  // The production loop: event_base_dispatch() drives both RPC ends until the close is answered.
  connect();
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  flow->append(Side::CLIENT, 2000, text("ping"));
  flow->close(3000, nullptr);
  flow = nullptr;
  EventHandle check(base, -1, EV_PERSIST, [](evutil_socket_t, short, void* arg) {
    auto& self = *static_cast<RecorderClientTest*>(arg);
    if (self.log.flows.size() == 1 && self.log.flows[0]->closed) event_base_loopbreak(self.base);
  }, this);
  struct timeval interval = {0, 1000};
  check.add(&interval);
  EventHandle deadline(base, -1, 0, [](evutil_socket_t, short, void* arg) {
    event_base_loopbreak(static_cast<event_base*>(arg));
  }, base);
  struct timeval limit = {10, 0};
  deadline.add(&limit);
  event_base_dispatch(base);
  ASSERT_EQ(log.flows.size(), 1u);
  EXPECT_TRUE(log.flows[0]->closed);
  EXPECT_EQ(kj::heapString(log.flows[0]->chunks[0].bytes.asChars()), "ping");
}

}  // namespace
}  // namespace tlstap
