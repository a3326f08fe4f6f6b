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
  uint64_t skip = 0;
};

struct FlowSeen {
  kj::String sni;
  kj::Array<kj::byte> clientAddress;
  kj::Array<kj::byte> serverAddress;
  uint16_t clientPort = 0;
  uint16_t serverPort = 0;
  uint16_t pcapPort = 0;
  int64_t startTimeUs = 0;
  bool resumed = false;
  uint64_t resumeOffset[2] = {0, 0};
  bool resumeFin[2] = {false, false};
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

// What the fake recorder saw, and switches that make its data() calls hang (a stalled recorder,
// e.g. on a full disk) or its ping() calls too (a hung recorder or a cut network).
struct RecorderLog {
  kj::Vector<kj::Own<FlowSeen>> flows;
  bool paused = false;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> stalled;
  bool silent = false;
  uint pings = 0;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> unansweredPings;

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
                                kj::heapArray(chunk.getBytes()), chunk.getFin(), chunk.getSkip()});
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
    if (meta.hasResume()) {
      auto resume = meta.getResume();
      seen->resumed = true;
      seen->resumeOffset[0] = resume.getClientOffset();
      seen->resumeOffset[1] = resume.getServerOffset();
      seen->resumeFin[0] = resume.getClientFin();
      seen->resumeFin[1] = resume.getServerFin();
    }
    context.getResults().setFlow(kj::heap<FakeFlow>(log, *seen));
    log.flows.add(kj::mv(seen));
    return kj::READY_NOW;
  }

  kj::Promise<void> ping(PingContext) override {
    ++log.pings;
    if (!log.silent) return kj::READY_NOW;
    auto paf = kj::newPromiseAndFulfiller<void>();
    log.unansweredPings.add(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
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
  kj::Maybe<kj::Own<ServerEnd>> server;  // the current link's recorder end; null: link broken
  bool recorderUp = true;  // whether the link source can connect
  uint links = 0;          // links handed out
  kj::Own<RecorderClient> client;

  // Links over socket pairs to the fake recorder: breaking one is `server = nullptr`.
  class TestLinkSource final : public RecorderLinkSource {
  public:
    explicit TestLinkSource(RecorderClientTest& test) : test(test) {}
    kj::Promise<kj::Own<kj::AsyncIoStream>> connect() override {
      if (!test.recorderUp) return KJ_EXCEPTION(DISCONNECTED, "the test recorder is down");
      int fds[2];
      KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
      test.server = kj::heap<ServerEnd>(wrapSocketFd(test.base, kj::AutoCloseFd(fds[1])), test.log);
      ++test.links;
      return wrapSocketFd(test.base, kj::AutoCloseFd(fds[0]));
    }
    kj::StringPtr describe() const override { return "the test recorder"; }

  private:
    RecorderClientTest& test;
  };

  void SetUp() override {
    struct timeval interval = {0, 2000};
    tick.add(&interval);
  }

  void connect(RecorderLimits limits = {}) {
    limits.reconnectFirst = 5 * kj::MILLISECONDS;
    limits.reconnectMax = 20 * kj::MILLISECONDS;
    client = kj::heap<RecorderClient>(kj.timer(), kj::heap<TestLinkSource>(*this), limits);
  }

  // connect(), then wait until the recorder has answered.
  void connectAndWait(RecorderLimits limits = {}) {
    connect(limits);
    bool ready = false;
    auto promise = client->whenReady().then([&]() { ready = true; }).eagerlyEvaluate(nullptr);
    KJ_ASSERT(runUntil([&]() { return ready; }));
  }

  // Whether a part of the flow from this client port was closed and all was acknowledged.
  bool closedAndAcknowledged(uint16_t clientPort) {
    for (auto& flow : log.flows) {
      if (flow->clientPort == clientPort && flow->closed) {
        return client->counters().bytesWaiting == 0;
      }
    }
    return false;
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

  // Until the recorder saw the close and the client its answers: nothing is left waiting.
  ASSERT_TRUE(runUntil([&]() {
    return log.flows.size() == 1 && log.flows[0]->closed && client->counters().bytesWaiting == 0;
  }));
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
  EXPECT_EQ(counters.bytesQueued, counters.bytesRecorded);
  EXPECT_EQ(counters.bytesLost, 0u);
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
  EXPECT_GE(sent.size(), limits.flowQueueBytes);
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

// What the recorders recorded of one flow, over every link: each part starts at its resume offsets
// and puts its bytes at their sequence offsets, as TCP reassembly of the merged captures would.
struct Reassembled {
  kj::Vector<kj::byte> bytes[2];
  kj::Vector<bool> known[2];  // false: a gap the front skipped (not recorded)
  uint64_t gapBytes[2] = {0, 0};
  uint64_t overlapBytes = 0;  // sent again after a lost link: identical, so no duplicate
  bool mismatch = false;      // a byte sent again differs: a real duplicate or corruption
  uint parts = 0;

  kj::ArrayPtr<const kj::byte> from(Side side) { return bytes[static_cast<int>(side)]; }
};

Reassembled reassemble(const RecorderLog& log, uint16_t clientPort) {
  Reassembled out;
  for (auto& flow : log.flows) {
    if (flow->clientPort != clientPort) continue;
    ++out.parts;
    uint64_t offset[2] = {flow->resumeOffset[0], flow->resumeOffset[1]};
    for (auto& chunk : flow->chunks) {
      int d = chunk.direction == proto::Direction::CLIENT_TO_SERVER ? 0 : 1;
      offset[d] += chunk.skip;
      for (auto b : chunk.bytes) {
        auto& bytes = out.bytes[d];
        auto& known = out.known[d];
        if (offset[d] < bytes.size()) {
          if (known[offset[d]] && bytes[offset[d]] != b) out.mismatch = true;
          ++out.overlapBytes;
        } else {
          while (bytes.size() < offset[d]) {
            bytes.add(0);
            known.add(false);
            ++out.gapBytes[d];
          }
          bytes.add(b);
          known.add(true);
        }
        ++offset[d];
      }
    }
  }
  return out;
}

size_t countOf(kj::StringPtr haystack, kj::StringPtr needle) {
  size_t n = 0;
  for (const char* p = haystack.cStr(); (p = strstr(p, needle.cStr())) != nullptr; ++p) ++n;
  return n;
}

// The recorder dies twice: once with everything answered, once with calls in flight that it
// never answered. Every byte is in what the recorders got, none twice, each flow reopened
// where the acknowledgements left it.
TEST_F(RecorderClientTest, ReconnectResendsWhatWasNotAcknowledgedAndNothingElse) {
  connectAndWait();
  kj::Vector<kj::Own<RecordedFlow>> flows;
  kj::Vector<kj::byte> sent[3][2];
  int64_t time = 2000;
  auto round = [&](uint32_t seed) {
    for (uint i = 0; i < 3; i++) {
      for (Side side : {Side::CLIENT, Side::SERVER}) {
        auto piece = pattern(20000 + seed * 7 + i, seed * 10 + i);
        sent[i][static_cast<int>(side)].addAll(piece);
        flows[i]->append(side, time++, piece);
      }
    }
  };
  for (uint i = 0; i < 3; i++) {
    flows.add(client->openFlow(info(kj::str("192.0.2.1:", 40000 + i), "198.51.100.7:443")));
  }
  round(1);
  ASSERT_TRUE(runUntil([&]() { return client->counters().bytesWaiting == 0; }));
  testing::internal::CaptureStderr();
  server = nullptr;  // all answered: the next link must resend nothing
  ASSERT_TRUE(runUntil([&]() { return client->linkUp() && links == 2; }));
  round(2);
  ASSERT_TRUE(runUntil([&]() { return client->counters().bytesWaiting == 0; }));
  EXPECT_EQ(reassemble(log, 40000).overlapBytes, 0u);

  log.paused = true;  // calls reach the recorder, answers never come back
  round(3);
  ASSERT_TRUE(runUntil([&]() {
    return client->counters().bytesSent >= client->counters().bytesQueued;
  }));
  recorderUp = false;
  server = nullptr;
  log.paused = false;
  log.stalled.clear();
  ASSERT_TRUE(runUntil([&]() { return !client->linkUp(); }));
  round(4);  // while there is no link
  runFor(30);
  EXPECT_FALSE(client->linkUp());
  recorderUp = true;
  ASSERT_TRUE(runUntil([&]() { return client->linkUp() && links == 3; }));
  for (uint i = 0; i < 3; i++) {
    flows[i]->finish(Side::CLIENT, time);
    flows[i]->close(time, nullptr);
  }
  ASSERT_TRUE(runUntil([&]() {
    size_t closed = 0;
    for (auto& flow : log.flows) closed += flow->closed;
    return closed == 3 && client->counters().bytesWaiting == 0;
  }));
  auto output = kj::str(testing::internal::GetCapturedStderr().c_str());

  for (uint i = 0; i < 3; i++) {
    auto got = reassemble(log, 40000 + i);
    EXPECT_EQ(got.parts, 3u);
    EXPECT_FALSE(got.mismatch);
    EXPECT_TRUE(got.from(Side::CLIENT) == sent[i][0].asPtr()) << "flow " << i;
    EXPECT_TRUE(got.from(Side::SERVER) == sent[i][1].asPtr()) << "flow " << i;
    EXPECT_EQ(got.gapBytes[0] + got.gapBytes[1], 0u);
  }
  auto counters = client->counters();
  EXPECT_EQ(counters.bytesLost, 0u);
  EXPECT_EQ(counters.bytesRecorded, counters.bytesQueued);
  EXPECT_EQ(counters.linksLost, 2u);
  EXPECT_EQ(counters.flowsResumed, 6u);
  // Only what the dead recorder never answered went twice: round 3.
  uint64_t round3 = 0;
  for (uint i = 0; i < 3; i++) round3 += 2 * (20000 + 3 * 7 + i);
  EXPECT_EQ(counters.bytesSent, counters.bytesQueued + round3);
  // One line per outage, and one when it is over; the failed attempts in between are one more.
  EXPECT_EQ(countOf(output, "recorder link to the test recorder lost"), 2u) << output.cStr();
  EXPECT_EQ(countOf(output, "restored after"), 2u) << output.cStr();
  EXPECT_EQ(countOf(output, "the test recorder is down"), 1u) << output.cStr();
}

// A recorder that stops answering anything (hung, or the network between is cut while TCP still
// waits) is given up after --link-timeout: the front reconnects and resends what it did not
// answer, instead of waiting for TCP to give up.
TEST_F(RecorderClientTest, ASilentRecorderIsGivenUpAfterTheLinkTimeout) {
  RecorderLimits limits;
  limits.linkTimeout = 300 * kj::MILLISECONDS;
  connectAndWait(limits);
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  auto first = pattern(5000, 1);
  flow->append(Side::CLIENT, 2000, first);
  ASSERT_TRUE(runUntil([&]() { return client->counters().bytesWaiting == 0; }));
  testing::internal::CaptureStderr();
  log.silent = true;
  log.paused = true;
  auto second = pattern(7000, 2);
  flow->append(Side::SERVER, 2001, second);
  auto silentSince = kj::systemPreciseMonotonicClock().now();
  bool gaveUp = runUntil([&]() { return links == 2; }, 3000);
  auto silentFor = kj::systemPreciseMonotonicClock().now() - silentSince;
  log.silent = false;
  log.paused = false;
  log.unansweredPings.clear();
  log.stalled.clear();
  ASSERT_TRUE(gaveUp);
  // The first unanswered ping goes out within a third of the timeout, and is given up after it.
  EXPECT_GE(silentFor, limits.linkTimeout);
  EXPECT_LT(silentFor, limits.linkTimeout * 2);
  flow->close(2002, nullptr);
  bool closed = runUntil([&]() { return closedAndAcknowledged(40000); });
  auto output = kj::str(testing::internal::GetCapturedStderr().c_str());
  ASSERT_TRUE(closed) << output.cStr();
  auto got = reassemble(log, 40000);
  EXPECT_TRUE(got.from(Side::CLIENT) == first.asPtr());
  EXPECT_TRUE(got.from(Side::SERVER) == second.asPtr());
  EXPECT_EQ(client->counters().bytesLost, 0u);
  EXPECT_EQ(client->counters().linksLost, 1u);
  EXPECT_EQ(countOf(output, "lost (no answer to a ping for 300 ms (--link-timeout))"), 1u)
      << output.cStr();
}

// A recorder that holds its answers to data (its disk is full: backpressure) but answers pings is
// alive: the link stays.
TEST_F(RecorderClientTest, ARecorderHoldingDataAnswersIsNotGivenUp) {
  RecorderLimits limits;
  limits.linkTimeout = 150 * kj::MILLISECONDS;
  connectAndWait(limits);
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  log.paused = true;
  auto bytes = pattern(9000, 3);
  flow->append(Side::SERVER, 2000, bytes);
  uint pingsBefore = log.pings;
  runFor(1000);  // more than six timeouts
  EXPECT_GE(log.pings - pingsBefore, 5u);
  EXPECT_EQ(links, 1u);
  EXPECT_GT(client->counters().bytesWaiting, 0u);
  log.resume();
  flow->close(2001, nullptr);
  ASSERT_TRUE(runUntil([&]() { return closedAndAcknowledged(40000); }));
  EXPECT_TRUE(reassemble(log, 40000).from(Side::SERVER) == bytes.asPtr());
  EXPECT_EQ(client->counters().linksLost, 0u);
}

// --recorder-down block: past its bound a flow stays full() until the recorder is back; then
// everything is delivered.
TEST_F(RecorderClientTest, BlockHoldsTheFlowFullUntilTheRecorderIsBack) {
  RecorderLimits limits;
  limits.flowQueueBytes = 256 << 10;
  connectAndWait(limits);
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  int drains = 0;
  flow->setOnDrain([&]() { ++drains; });
  testing::internal::CaptureStderr();
  recorderUp = false;
  server = nullptr;
  ASSERT_TRUE(runUntil([&]() { return !client->linkUp(); }));
  kj::Vector<kj::byte> sent;
  int64_t time = 2000;
  while (!flow->full() && sent.size() < (64u << 20)) {
    auto piece = pattern(16 << 10, sent.size());
    sent.addAll(piece);
    flow->append(Side::SERVER, time++, piece);
    event_base_loop(base, EVLOOP_NONBLOCK);
  }
  ASSERT_TRUE(flow->full());
  EXPECT_LE(sent.size(), limits.flowQueueBytes + (16 << 10));
  runFor(100);  // many reconnect attempts
  EXPECT_TRUE(flow->full());
  EXPECT_EQ(drains, 0);

  recorderUp = true;
  ASSERT_TRUE(runUntil([&]() { return drains == 1; }));
  EXPECT_FALSE(flow->full());
  flow->close(time, nullptr);
  bool closed = runUntil([&]() { return closedAndAcknowledged(40000); });
  auto output = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(closed) << log.flows.size() << " flows seen; " << output;
  auto got = reassemble(log, 40000);
  EXPECT_TRUE(got.from(Side::SERVER) == sent.asPtr());
  EXPECT_EQ(client->counters().bytesLost, 0u);
}

// --recorder-down pass: the relay goes on; what does not fit is counted exactly, logged per flow,
// and the recording shows a gap of exactly that size.
TEST_F(RecorderClientTest, PassRelaysOnAndCountsTheLostBytesExactly) {
  RecorderLimits limits;
  limits.flowQueueBytes = 128 << 10;
  limits.whenDown = RecorderDown::PASS;
  connectAndWait(limits);
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  int drains = 0;
  flow->setOnDrain([&]() { ++drains; });
  kj::Vector<kj::byte> sent;
  int64_t time = 2000;
  // A stalled recorder is backpressure, not an outage: full, nothing lost.
  log.paused = true;
  while (!flow->full() && sent.size() < (64u << 20)) {
    auto piece = pattern(16 << 10, sent.size());
    sent.addAll(piece);
    flow->append(Side::SERVER, time++, piece);
    event_base_loop(base, EVLOOP_NONBLOCK);
  }
  ASSERT_TRUE(flow->full());
  EXPECT_EQ(client->counters().bytesLost, 0u);

  testing::internal::CaptureStderr();
  recorderUp = false;
  server = nullptr;
  log.paused = false;
  log.stalled.clear();
  ASSERT_TRUE(runUntil([&]() { return drains == 1; }));  // released: the relay goes on
  for (int i = 0; i < 100; i++) {
    auto piece = pattern(10000, i);
    sent.addAll(piece);
    flow->append(Side::SERVER, time++, piece);
    EXPECT_FALSE(flow->full());
  }
  auto lost = client->counters().bytesLost;
  EXPECT_GT(lost, 900000u);
  recorderUp = true;
  ASSERT_TRUE(runUntil([&]() { return client->linkUp(); }));
  auto tail = pattern(777, 1);
  sent.addAll(tail);
  flow->append(Side::SERVER, time++, tail);
  flow->close(time, nullptr);
  ASSERT_TRUE(runUntil([&]() { return closedAndAcknowledged(40000); }));
  auto output = kj::str(testing::internal::GetCapturedStderr().c_str());

  auto got = reassemble(log, 40000);
  EXPECT_FALSE(got.mismatch);
  ASSERT_EQ(got.bytes[1].size(), sent.size());
  EXPECT_EQ(got.gapBytes[1], lost);
  for (size_t i = 0; i < sent.size(); i++) {
    if (got.known[1][i] && got.bytes[1][i] != sent[i]) {
      ADD_FAILURE() << "byte " << i << " differs";
      break;
    }
  }
  EXPECT_EQ(client->counters().bytesLost, lost);
  EXPECT_EQ(client->counters().bytesRecorded + lost, client->counters().bytesQueued);
  EXPECT_EQ(countOf(output, kj::str(": ", lost, " bytes not recorded")), 1u) << output.cStr();
}

// SIGTERM during an outage: the drain waits for the recorder to come back and delivers it all.
TEST_F(RecorderClientTest, DrainWaitsForTheRecorderToComeBack) {
  connectAndWait();
  auto flow = client->openFlow(info("192.0.2.1:40000", "198.51.100.7:443"));
  testing::internal::CaptureStderr();
  recorderUp = false;
  server = nullptr;
  ASSERT_TRUE(runUntil([&]() { return !client->linkUp(); }));
  auto data = pattern(100000, 3);
  flow->append(Side::CLIENT, 2000, data);
  flow->close(3000, nullptr);
  bool drained = false;
  auto promise = client->drainAndClose().then([&]() { drained = true; }).eagerlyEvaluate(nullptr);
  runFor(50);
  EXPECT_FALSE(drained);
  recorderUp = true;
  ASSERT_TRUE(runUntil([&]() { return drained; }));
  testing::internal::GetCapturedStderr();
  EXPECT_TRUE(reassemble(log, 40000).from(Side::CLIENT) == data);
  EXPECT_EQ(client->counters().bytesLost, 0u);
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
  recorderUp = false;
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
