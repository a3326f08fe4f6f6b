// The recorder over real Cap'n Proto RPC: a contract violation ends one flow and the caller
// sees an error, while the other flows of the same front are recorded completely.
#include "recorder/link-server.h"

#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <kj/async-io.h>

#include "tests/recorder/frame-parser.h"

namespace tlstap {
namespace {

constexpr int64_t START_US = 1795000000LL * 1000000;

proto::Flow::Client openFlow(proto::Recorder::Client& recorder, uint16_t clientPort) {
  auto request = recorder.openFlowRequest();
  auto meta = request.initMeta();
  kj::byte client[4] = {127, 0, 0, 1}, server[4] = {127, 0, 0, 2};
  meta.getClient().setAddress(kj::arrayPtr(client, 4));
  meta.getClient().setPort(clientPort);
  meta.getServer().setAddress(kj::arrayPtr(server, 4));
  meta.getServer().setPort(443);
  meta.setPcapPort(80);
  meta.setStartTimeUs(START_US);
  return request.send().getFlow();
}

kj::Promise<void> sendData(proto::Flow::Client& flow, uint16_t direction, int64_t timeUs,
                           kj::StringPtr text) {
  auto request = flow.dataRequest();
  auto chunk = request.initChunks(1)[0];
  chunk.setDirection(static_cast<proto::Direction>(direction));
  chunk.setTimeUs(timeUs);
  chunk.setBytes(text.asBytes());
  return request.send();
}

kj::Promise<void> sendFin(proto::Flow::Client& flow, int64_t timeUs) {
  auto request = flow.closeRequest();
  request.initHow().setTimeUs(timeUs);
  request.getHow().setFin();
  return request.send().ignoreResult();
}

std::string asString(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

TEST(LinkServer, ViolationEndsOneFlowOnlyAndOthersAreComplete) {
  auto io = kj::setupAsyncIo();
  test::CapturingSink sink;
  FlowCounters counters;
  LinkServer server(sink, counters);
  auto pipe = io.provider->newTwoWayPipe();
  auto serving = server.serve(kj::mv(pipe.ends[0]), kj::str("test pipe"));

  {
    capnp::TwoPartyClient client(*pipe.ends[1]);
    auto recorder = client.bootstrap().castAs<proto::Recorder>();
    auto good = openFlow(recorder, 40001);
    auto bad = openFlow(recorder, 40002);

    sendData(good, 0, START_US + 1, "GET / HTTP/1.1\r\n\r\n").wait(io.waitScope);
    sendData(bad, 0, START_US + 1, "first").wait(io.waitScope);
    // A `-> stream` call returns as soon as flow control allows, so the refusal surfaces on a
    // later call of that flow: at the latest its close().
    auto badData = sendData(bad, 5, START_US + 2, "bad direction")
                       .then([&]() { return sendData(bad, 0, START_US + 3, "after it"); })
                       .then([&]() { return sendFin(bad, START_US + 4); });
    EXPECT_ANY_THROW(badData.wait(io.waitScope));
    sendData(good, 1, START_US + 4, "HTTP/1.1 200 OK\r\n\r\n").wait(io.waitScope);
    sendFin(good, START_US + 5).wait(io.waitScope);
    EXPECT_EQ(counters.flowsBroken, 1u);
    EXPECT_EQ(server.connectionCount(), 1u);
  }
  pipe.ends[1] = nullptr;
  serving.wait(io.waitScope);  // the client went away: the connection ends cleanly
  EXPECT_EQ(server.connectionCount(), 0u);
  EXPECT_EQ(counters.flowsTotal, 2u);
  EXPECT_EQ(counters.flowsOpen, 0u);

  std::vector<test::ParsedFrame> goodFrames, badFrames;
  for (auto& frame : sink.parsed()) {
    (frame.srcPort == 40001 || frame.dstPort == 40001 ? goodFrames : badFrames).push_back(frame);
  }
  auto good = test::checkTcpFlow(goodFrames);
  EXPECT_TRUE(good.problems.empty()) << good.problems[0];
  EXPECT_EQ(asString(good.clientBytes), "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(asString(good.serverBytes), "HTTP/1.1 200 OK\r\n\r\n");
  EXPECT_TRUE(good.clientFin && good.serverFin);
  auto bad = test::checkTcpFlow(badFrames);
  EXPECT_EQ(asString(bad.clientBytes), "first") << "what came before the violation is kept";
}

TEST(LinkServer, GarbageOnTheLinkEndsThatConnectionOnly) {
  auto io = kj::setupAsyncIo();
  test::CapturingSink sink;
  FlowCounters counters;
  LinkServer server(sink, counters);
  auto pipe = io.provider->newTwoWayPipe();
  auto serving = server.serve(kj::mv(pipe.ends[0]), kj::str("garbage pipe"));
  kj::byte garbage[4096];
  for (size_t i = 0; i < sizeof(garbage); i++) garbage[i] = kj::byte(i * 7 + 3);
  pipe.ends[1]->write(garbage, sizeof(garbage)).wait(io.waitScope);
  serving.wait(io.waitScope);
  EXPECT_EQ(server.connectionCount(), 0u);
  EXPECT_EQ(sink.packets.size(), 0u);
}

// The front keeps a batch until its data call returns, so the call must return only once the
// sink has its packets in the kernel (PacketSink::whenWritten), not before.
class HeldSink final : public PacketSink {
public:
  void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) override {
    inner.writePacket(timeUs, frame);
  }
  kj::Promise<void> whenWritten() override {
    auto paf = kj::newPromiseAndFulfiller<void>();
    held.add(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }
  void release() {
    for (auto& fulfiller : held) fulfiller->fulfill();
    held.clear();
  }
  test::CapturingSink inner;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> held;
};

TEST(LinkServer, DataCallReturnsOnlyOnceTheSinkHasWrittenIt) {
  auto io = kj::setupAsyncIo();
  HeldSink sink;
  FlowCounters counters;
  LinkServer server(sink, counters);
  auto pipe = io.provider->newTwoWayPipe();
  auto serving = server.serve(kj::mv(pipe.ends[0]), kj::str("test pipe"));
  {
    capnp::TwoPartyClient client(*pipe.ends[1]);
    auto recorder = client.bootstrap().castAs<proto::Recorder>();
    auto flow = openFlow(recorder, 40001);
    // openFlow itself is answered once the handshake is written, and calls on the flow wait for
    // that answer: let it through first.
    for (int i = 0; i < 100 && sink.held.size() == 0; i++) {
      io.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).wait(io.waitScope);
    }
    ASSERT_EQ(sink.held.size(), 1u);
    sink.release();
    // A plain (not streaming) call, so that its promise is the recorder's answer.
    auto request = flow.typelessRequest(capnp::typeId<proto::Flow>(), 0, nullptr);
    auto chunk = request.initAs<proto::Flow::DataParams>().initChunks(1)[0];
    chunk.setTimeUs(START_US + 1);
    chunk.setBytes(kj::StringPtr("GET / HTTP/1.1\r\n\r\n").asBytes());
    auto answer = request.send().ignoreResult();
    for (int i = 0; i < 100 && sink.inner.packets.size() < 5; i++) {
      io.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).wait(io.waitScope);
    }
    EXPECT_GE(sink.inner.packets.size(), 5u);  // handshake, the segment and its ACK
    EXPECT_FALSE(answer.poll(io.waitScope)) << "answered before the sink wrote it";
    sink.release();
    answer.wait(io.waitScope);
  }
  pipe.ends[1] = nullptr;
  serving.wait(io.waitScope);
}

// A front on a unix socket is checked with SO_PEERCRED: one from a uid that is not allowed is
// closed before a single RPC message is read; one from an allowed uid records.
void connectOverUnixSocket(bool allowed) {
  auto io = kj::setupAsyncIo();
  test::CapturingSink sink;
  FlowCounters counters;
  LinkServer server(sink, counters);
  uid_t me = getuid();
  server.allowPeers(kj::heapArray<uid_t>({allowed ? me : me + 1}));

  char directory[] = "/tmp/tlstap-link-server-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  auto path = kj::str(directory, "/recorder.sock");
  KJ_DEFER({
    unlink(path.cStr());
    rmdir(directory);
  });
  auto address = io.provider->getNetwork().parseAddress(kj::str("unix:", path))
                     .wait(io.waitScope);
  auto accepting = server.acceptFrom(address->listen(), kj::str("unix:", path))
                       .eagerlyEvaluate(nullptr);
  auto stream = address->connect().wait(io.waitScope);
  capnp::TwoPartyClient client(*stream);
  auto recorder = client.bootstrap().castAs<proto::Recorder>();
  auto flow = openFlow(recorder, 40003);
  auto sent = sendData(flow, 0, START_US + 1, "hello").then([&]() {
    return sendFin(flow, START_US + 2);
  });
  if (allowed) {
    sent.wait(io.waitScope);
    EXPECT_EQ(counters.flowsTotal, 1u);
    EXPECT_GT(sink.packets.size(), 0u);
  } else {
    EXPECT_ANY_THROW(sent.wait(io.waitScope)) << "a refused front must be disconnected";
    EXPECT_EQ(counters.flowsTotal, 0u);
    EXPECT_EQ(sink.packets.size(), 0u);
    EXPECT_EQ(server.connectionCount(), 0u);
  }
}

TEST(LinkServer, UnixPeerFromAnotherUidIsRefusedBeforeAnyMessage) {
  connectOverUnixSocket(false);
}

TEST(LinkServer, UnixPeerFromAnAllowedUidRecords) { connectOverUnixSocket(true); }

}  // namespace
}  // namespace tlstap
