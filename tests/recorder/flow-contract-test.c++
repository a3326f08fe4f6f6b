// Every contract violation of proto/recorder.capnp ends that flow only, and what came before it
// stays recorded.
#include "recorder/flow-contract.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

namespace tlstap {
namespace {

constexpr int64_t START_US = 1795000000LL * 1000000;  // late 2026

class CollectingSink final : public PacketSink {
public:
  // noexcept so that the GoogleTest fixture holding it keeps a noexcept destructor.
  ~CollectingSink() noexcept {}
  void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) override {
    times.push_back(timeUs);
    frames.push_back(std::string(frame.asChars().begin(), frame.size()));
  }
  std::vector<int64_t> times;
  std::vector<std::string> frames;
};

void setMeta(proto::FlowMeta::Builder meta, bool ipv6 = false) {
  kj::byte client[16] = {127, 0, 0, 1};
  kj::byte server[16] = {127, 0, 0, 2};
  if (ipv6) {
    memset(client, 0, 16);
    client[15] = 1;
    memset(server, 0, 16);
    server[0] = 0xfd;
    server[15] = 2;
  }
  size_t size = ipv6 ? 16 : 4;
  meta.getClient().setAddress(kj::arrayPtr(client, size));
  meta.getClient().setPort(40000);
  meta.getServer().setAddress(kj::arrayPtr(server, size));
  meta.getServer().setPort(8443);
  meta.setPcapPort(80);
  meta.setSni("www.example.com");
  meta.setStartTimeUs(START_US);
}

struct ChunkSpec {
  uint16_t direction;
  int64_t timeUs;
  size_t size;
  bool fin = false;
  uint64_t skip = 0;
};

// Builds a batch of chunks and hands it to the contract.
kj::Maybe<kj::String> sendBatch(FlowContract& contract, std::vector<ChunkSpec> specs) {
  capnp::MallocMessageBuilder message;
  auto chunks = message.initRoot<proto::Flow::DataParams>().initChunks(specs.size());
  for (size_t i = 0; i < specs.size(); i++) {
    chunks[i].setDirection(static_cast<proto::Direction>(specs[i].direction));
    chunks[i].setTimeUs(specs[i].timeUs);
    chunks[i].initBytes(specs[i].size);
    chunks[i].setFin(specs[i].fin);
    chunks[i].setSkip(specs[i].skip);
  }
  return contract.data(chunks.asReader());
}

kj::Maybe<kj::String> sendClose(FlowContract& contract, int64_t timeUs,
                                kj::Maybe<uint16_t> resetDirection) {
  capnp::MallocMessageBuilder message;
  auto how = message.initRoot<proto::Close>();
  how.setTimeUs(timeUs);
  KJ_IF_MAYBE(direction, resetDirection) {
    how.setReset(static_cast<proto::Direction>(*direction));
  } else {
    how.setFin();
  }
  return contract.close(how.asReader());
}

struct FlowContractTest : public testing::Test {
  FlowContract open(bool ipv6 = false) {
    capnp::MallocMessageBuilder message;
    auto meta = message.initRoot<proto::FlowMeta>();
    setMeta(meta, ipv6);
    FlowEndpoints endpoints;
    kj::Maybe<FlowResume> resume;
    EXPECT_TRUE(checkFlowMeta(meta.asReader(), endpoints, resume) == nullptr);
    return FlowContract(endpoints, START_US, sink);
  }
  CollectingSink sink;
};

TEST(FlowMeta, AcceptsIpv4AndIpv6AndUsesThePcapPort) {
  for (bool ipv6 : {false, true}) {
    capnp::MallocMessageBuilder message;
    auto meta = message.initRoot<proto::FlowMeta>();
    setMeta(meta, ipv6);
    FlowEndpoints endpoints;
    kj::Maybe<FlowResume> resume;
    EXPECT_TRUE(checkFlowMeta(meta.asReader(), endpoints, resume) == nullptr);
    EXPECT_EQ(endpoints.ipv6, ipv6);
    EXPECT_EQ(endpoints.clientPort, 40000);
    EXPECT_EQ(endpoints.serverPort, 80);
  }
}

TEST(FlowMeta, RejectsEveryBadField) {
  struct Case {
    const char* name;
    void (*spoil)(proto::FlowMeta::Builder);
    const char* expected;
  };
  Case cases[] = {
      {"short address", [](proto::FlowMeta::Builder m) { m.getClient().initAddress(3); },
       "client address is 3 bytes"},
      {"mixed families", [](proto::FlowMeta::Builder m) { m.getServer().initAddress(16); },
       "server address is 16 bytes"},
      {"client port 0", [](proto::FlowMeta::Builder m) { m.getClient().setPort(0); },
       "client port is 0"},
      {"pcap port 0", [](proto::FlowMeta::Builder m) { m.setPcapPort(0); }, "pcap port is 0"},
      {"long SNI", [](proto::FlowMeta::Builder m) { m.initSni(300); }, "SNI is 300 bytes"},
      {"long cipher", [](proto::FlowMeta::Builder m) { m.initCipher(256); }, "cipher is 256"},
      {"time zero", [](proto::FlowMeta::Builder m) { m.setStartTimeUs(0); }, "start time 0"},
      {"time negative", [](proto::FlowMeta::Builder m) { m.setStartTimeUs(-5); }, "start time"},
  };
  for (auto& c : cases) {
    capnp::MallocMessageBuilder message;
    auto meta = message.initRoot<proto::FlowMeta>();
    setMeta(meta);
    c.spoil(meta);
    FlowEndpoints endpoints;
    kj::Maybe<FlowResume> resume;
    KJ_IF_MAYBE(error, checkFlowMeta(meta.asReader(), endpoints, resume)) {
      EXPECT_TRUE(strstr(error->cStr(), c.expected) != nullptr) << c.name << ": " << error->cStr();
    } else {
      ADD_FAILURE() << c.name << " was accepted";
    }
  }
}

TEST_F(FlowContractTest, GoodFlowIsRecordedWithHandshakeDataAndClose) {
  auto contract = open();
  EXPECT_EQ(sink.frames.size(), 3u);  // SYN, SYN-ACK, ACK
  EXPECT_TRUE(sendBatch(contract, {{0, START_US + 1, 100}, {1, START_US + 2, 5000}}) == nullptr);
  EXPECT_TRUE(sendBatch(contract, {{0, START_US + 3, 0, true}}) == nullptr);  // half-close
  EXPECT_TRUE(sendBatch(contract, {{1, START_US + 4, 10}}) == nullptr);       // server goes on
  EXPECT_TRUE(sendClose(contract, START_US + 5, nullptr) == nullptr);
  EXPECT_TRUE(contract.ended());
  EXPECT_EQ(contract.payloadBytes(), 5110u);
  for (size_t i = 1; i < sink.times.size(); i++) EXPECT_LE(sink.times[i - 1], sink.times[i]);
  EXPECT_EQ(sink.times.back(), START_US + 5);
}

// A violation keeps what came before it, records nothing of the bad batch's remainder, and
// refuses everything after.
void expectViolation(FlowContractTest& fixture, std::vector<ChunkSpec> bad, const char* expected) {
  auto contract = fixture.open();
  ASSERT_TRUE(sendBatch(contract, {{0, START_US + 10, 1000}}) == nullptr);
  size_t before = fixture.sink.frames.size();
  KJ_IF_MAYBE(error, sendBatch(contract, bad)) {
    EXPECT_TRUE(strstr(error->cStr(), expected) != nullptr) << error->cStr();
  } else {
    ADD_FAILURE() << "violation '" << expected << "' was accepted";
  }
  EXPECT_TRUE(contract.ended());
  size_t after = fixture.sink.frames.size();
  EXPECT_TRUE(sendBatch(contract, {{0, START_US + 100, 10}}) != nullptr);
  EXPECT_TRUE(sendClose(contract, START_US + 100, nullptr) != nullptr);
  EXPECT_EQ(fixture.sink.frames.size(), after) << "nothing is recorded after the violation";
  EXPECT_GE(after, before);
}

TEST_F(FlowContractTest, BadDirectionEndsTheFlow) {
  expectViolation(*this, {{7, START_US + 20, 10}}, "direction 7");
}

TEST_F(FlowContractTest, OversizedChunkEndsTheFlow) {
  expectViolation(*this, {{0, START_US + 20, proto::MAX_CHUNK_BYTES + 1}}, "over the limit");
}

TEST_F(FlowContractTest, TimeGoingBackwardsEndsTheFlow) {
  expectViolation(*this, {{0, START_US + 5, 10}}, "goes back");
}

TEST_F(FlowContractTest, DataAfterFinEndsTheFlow) {
  expectViolation(*this, {{1, START_US + 20, 0, true}, {1, START_US + 21, 10}}, "after its FIN");
}

TEST_F(FlowContractTest, ValidChunksBeforeTheBadOneAreKept) {
  auto contract = open();
  size_t before = sink.frames.size();
  EXPECT_TRUE(sendBatch(contract, {{0, START_US + 1, 10}, {9, START_US + 2, 10}}) != nullptr);
  EXPECT_EQ(sink.frames.size(), before + 2) << "the first chunk's segment and its ACK";
  EXPECT_EQ(contract.payloadBytes(), 10u);
}

TEST_F(FlowContractTest, DataAfterCloseIsAViolation) {
  auto contract = open();
  EXPECT_TRUE(sendClose(contract, START_US + 1, nullptr) == nullptr);
  size_t frames = sink.frames.size();
  KJ_IF_MAYBE(error, sendBatch(contract, {{0, START_US + 2, 10}})) {
    EXPECT_TRUE(strstr(error->cStr(), "after close") != nullptr) << error->cStr();
  } else {
    ADD_FAILURE() << "data after close was accepted";
  }
  EXPECT_TRUE(sendClose(contract, START_US + 3, nullptr) != nullptr);
  EXPECT_EQ(sink.frames.size(), frames);
}

TEST_F(FlowContractTest, CloseMustNotGoBackInTime) {
  auto contract = open();
  ASSERT_TRUE(sendBatch(contract, {{0, START_US + 50, 10}}) == nullptr);
  EXPECT_TRUE(sendClose(contract, START_US + 49, nullptr) != nullptr);
  EXPECT_TRUE(contract.ended());
}

TEST_F(FlowContractTest, ResetWithABadDirectionIsRefusedAndAGoodOneRecorded) {
  auto bad = open();
  EXPECT_TRUE(sendClose(bad, START_US + 1, uint16_t(3)) != nullptr);
  size_t frames = sink.frames.size();
  auto good = open(true);
  EXPECT_TRUE(sendClose(good, START_US + 1, uint16_t(1)) == nullptr);
  EXPECT_EQ(sink.frames.size(), frames + 3 + 1) << "handshake and one RST";
}

TEST_F(FlowContractTest, TooManyChunksInOneBatchIsAViolation) {
  auto contract = open();
  std::vector<ChunkSpec> specs(proto::MAX_CHUNKS_PER_BATCH + 1, ChunkSpec{0, START_US + 1, 0});
  KJ_IF_MAYBE(error, sendBatch(contract, specs)) {
    EXPECT_TRUE(strstr(error->cStr(), "chunks is over the limit") != nullptr) << error->cStr();
  } else {
    ADD_FAILURE() << "an oversized batch was accepted";
  }
}

TEST(FlowMeta, ResumeIsCheckedAndReported) {
  capnp::MallocMessageBuilder message;
  auto meta = message.initRoot<proto::FlowMeta>();
  setMeta(meta);
  FlowEndpoints endpoints;
  kj::Maybe<FlowResume> resume;
  ASSERT_TRUE(checkFlowMeta(meta.asReader(), endpoints, resume) == nullptr);
  EXPECT_TRUE(resume == nullptr);

  auto from = meta.initResume();
  from.setClientOffset(100);
  from.setServerOffset(7);
  from.setServerFin(true);
  ASSERT_TRUE(checkFlowMeta(meta.asReader(), endpoints, resume) == nullptr);
  auto& got = KJ_ASSERT_NONNULL(resume);
  EXPECT_EQ(got.offset[0], 100u);
  EXPECT_EQ(got.offset[1], 7u);
  EXPECT_FALSE(got.fin[0]);
  EXPECT_TRUE(got.fin[1]);

  from.setServerOffset(proto::MAX_FLOW_BYTES + 1);
  KJ_IF_MAYBE(error, checkFlowMeta(meta.asReader(), endpoints, resume)) {
    EXPECT_TRUE(strstr(error->cStr(), "resume offset") != nullptr) << error->cStr();
  } else {
    ADD_FAILURE() << "an offset over the limit was accepted";
  }
}

TEST_F(FlowContractTest, ResumedFlowWritesNoHandshakeAndRefusesDataFromAFinishedSide) {
  FlowEndpoints endpoints;
  capnp::MallocMessageBuilder message;
  auto meta = message.initRoot<proto::FlowMeta>();
  setMeta(meta);
  meta.initResume().setClientFin(true);
  kj::Maybe<FlowResume> resume;
  ASSERT_TRUE(checkFlowMeta(meta.asReader(), endpoints, resume) == nullptr);
  FlowContract contract(endpoints, START_US, sink, resume);
  EXPECT_TRUE(sink.frames.empty());
  EXPECT_TRUE(sendBatch(contract, {{1, START_US + 1, 10}}) == nullptr);
  EXPECT_EQ(sink.frames.size(), 2u);  // the segment and its ACK
  EXPECT_TRUE(sendBatch(contract, {{0, START_US + 2, 1}}) != nullptr);
}

TEST_F(FlowContractTest, SkipIsBoundedAndRefusedAfterFin) {
  auto contract = open();
  EXPECT_TRUE(sendBatch(contract, {{1, START_US, 0, false, 1000}, {1, START_US, 10}}) == nullptr);
  EXPECT_TRUE(sendBatch(contract, {{0, START_US, 0, false, proto::MAX_FLOW_BYTES + 1}}) != nullptr);
  auto other = open();
  EXPECT_TRUE(sendBatch(other, {{0, START_US, 5, true}}) == nullptr);
  EXPECT_TRUE(sendBatch(other, {{0, START_US, 0, false, 1}}) != nullptr);
}

}  // namespace
}  // namespace tlstap
