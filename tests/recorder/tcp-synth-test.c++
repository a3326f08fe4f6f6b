#include "recorder/tcp-synth.h"

#include <gtest/gtest.h>
#include <kj/exception.h>
#include <random>

#include "tests/recorder/frame-parser.h"

namespace tlstap {
namespace {

using test::CapturingSink;
using test::checkTcpFlow;
using test::FLAG_ACK;
using test::FLAG_FIN;
using test::FLAG_PSH;
using test::FLAG_RST;
using test::FLAG_SYN;
using test::ParsedFrame;

FlowEndpoints v4Endpoints(uint16_t clientPort = 40000) {
  FlowEndpoints e;
  kj::byte client[4] = {10, 1, 2, 3};
  kj::byte server[4] = {192, 0, 2, 10};
  memcpy(e.clientIp, client, 4);
  memcpy(e.serverIp, server, 4);
  e.clientPort = clientPort;
  e.serverPort = 443;
  return e;
}

FlowEndpoints v6Endpoints() {
  FlowEndpoints e;
  e.ipv6 = true;
  kj::byte client[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
  kj::byte server[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xef};
  memcpy(e.clientIp, client, 16);
  memcpy(e.serverIp, server, 16);
  e.clientPort = 51234;
  e.serverPort = 8443;
  return e;
}

std::vector<kj::byte> pattern(size_t size, uint32_t seed) {
  std::vector<kj::byte> out(size);
  std::mt19937 rng(seed);
  for (auto& b : out) b = rng();
  return out;
}

kj::ArrayPtr<const kj::byte> view(const std::vector<kj::byte>& v) {
  return kj::arrayPtr(v.data(), v.size());
}

std::vector<uint8_t> ip(const kj::byte* bytes, size_t n) {
  return std::vector<uint8_t>(bytes, bytes + n);
}

void expectFrameBasics(const ParsedFrame& f, const FlowEndpoints& e, Side from) {
  bool fromClient = from == Side::CLIENT;
  size_t n = e.ipv6 ? 16 : 4;
  EXPECT_EQ(f.error, "");
  EXPECT_TRUE(f.ipChecksumOk);
  EXPECT_TRUE(f.tcpChecksumOk);
  EXPECT_EQ(f.ipVersion, e.ipv6 ? 6 : 4);
  EXPECT_EQ(f.ttl, 64);
  if (!e.ipv6) {
    EXPECT_TRUE(f.dontFragment);
  }
  EXPECT_EQ(f.srcMac[5], fromClient ? 1 : 2);
  EXPECT_EQ(f.dstMac[5], fromClient ? 2 : 1);
  EXPECT_EQ(f.srcMac[0], 0x02);
  EXPECT_EQ(f.srcIp, ip(fromClient ? e.clientIp : e.serverIp, n));
  EXPECT_EQ(f.dstIp, ip(fromClient ? e.serverIp : e.clientIp, n));
  EXPECT_EQ(f.srcPort, fromClient ? e.clientPort : e.serverPort);
  EXPECT_EQ(f.dstPort, fromClient ? e.serverPort : e.clientPort);
  EXPECT_EQ(f.window, 65535);
}

TEST(Checksum, MatchesPlainImplementation) {
  std::vector<kj::byte> data = pattern(3000, 7);
  // Every length and every misalignment of the start in memory: the fast path reads unaligned
  // 64-bit words and handles 4/2/1-byte tails.
  for (size_t offset = 0; offset < 8; offset++) {
    for (size_t len = 0; len < 300; len++) {
      uint16_t fast = checksumFinish(checksumAdd(0, kj::arrayPtr(data.data() + offset, len)));
      kj::byte stored[2];
      memcpy(stored, &fast, 2);
      uint32_t plain = test::plainSum(data.data() + offset, len);
      while (plain >> 16) plain = (plain & 0xffff) + (plain >> 16);
      ASSERT_EQ(test::readBe16(stored), uint16_t(~plain)) << "offset " << offset << " len " << len;
    }
  }
  // All-ones data makes every 64-bit addition carry out.
  std::vector<kj::byte> ones(65536, 0xff);
  uint16_t fast = checksumFinish(checksumAdd(0, view(ones)));
  EXPECT_EQ(fast, 0);
}

TEST(TcpSynth, HandshakeIpv4) {
  CapturingSink sink;
  auto e = v4Endpoints();
  TcpSynthesizer synth(e, sink);
  synth.open(1000);
  auto frames = sink.parsed();
  ASSERT_EQ(frames.size(), 3u);
  for (auto& p : sink.packets) EXPECT_EQ(p.timeUs, 1000);
  EXPECT_EQ(sink.packets[0].frame.size(), 14u + 20 + 28);  // 8 bytes of options on SYNs
  EXPECT_EQ(sink.packets[1].frame.size(), 14u + 20 + 28);
  EXPECT_EQ(sink.packets[2].frame.size(), 14u + 20 + 20);

  const ParsedFrame& syn = frames[0];
  expectFrameBasics(syn, e, Side::CLIENT);
  EXPECT_EQ(syn.flags, FLAG_SYN);
  EXPECT_EQ(syn.mss, 1460);
  EXPECT_EQ(syn.windowScale, 7);

  const ParsedFrame& synAck = frames[1];
  expectFrameBasics(synAck, e, Side::SERVER);
  EXPECT_EQ(synAck.flags, FLAG_SYN | FLAG_ACK);
  EXPECT_EQ(synAck.ack, syn.seq + 1);
  EXPECT_EQ(synAck.mss, 1460);
  EXPECT_EQ(synAck.windowScale, 7);
  EXPECT_NE(synAck.seq, syn.seq);

  const ParsedFrame& ack = frames[2];
  expectFrameBasics(ack, e, Side::CLIENT);
  EXPECT_EQ(ack.flags, FLAG_ACK);
  EXPECT_EQ(ack.seq, syn.seq + 1);
  EXPECT_EQ(ack.ack, synAck.seq + 1);
  EXPECT_EQ(ack.mss, -1);
  EXPECT_EQ(uint16_t(ack.ipId - syn.ipId), 1);  // IP ID counts per sender
  EXPECT_TRUE(checkTcpFlow(frames).problems.empty());
}

TEST(TcpSynth, HandshakeAndDataIpv6) {
  CapturingSink sink;
  auto e = v6Endpoints();
  TcpSynthesizer synth(e, sink);
  synth.open(5);
  auto input = pattern(10000, 1);
  synth.data(Side::CLIENT, 6, view(input));
  auto frames = sink.parsed();
  ASSERT_GE(frames.size(), 3u);
  EXPECT_EQ(frames[0].mss, 1440);
  EXPECT_EQ(frames[1].mss, 1440);
  EXPECT_EQ(frames[0].windowScale, 7);
  expectFrameBasics(frames[0], e, Side::CLIENT);
  expectFrameBasics(frames[1], e, Side::SERVER);
  size_t dataSegments = 0;
  for (size_t i = 3; i < frames.size(); i++) {
    bool fromClient = frames[i].srcPort == e.clientPort;
    expectFrameBasics(frames[i], e, fromClient ? Side::CLIENT : Side::SERVER);
    if (!frames[i].payload.empty()) {
      dataSegments++;
      EXPECT_LE(frames[i].payload.size(), 1440u);
      if (i + 2 < frames.size()) {
        EXPECT_EQ(frames[i].payload.size(), 1440u);  // all but the last segment are full
      }
    }
  }
  EXPECT_EQ(dataSegments, 7u);  // 6 * 1440 + 1360
  auto report = checkTcpFlow(frames);
  EXPECT_TRUE(report.problems.empty()) << report.problems[0];
  EXPECT_EQ(report.clientBytes, input);
}

TEST(TcpSynth, SeqAndAckAcrossSegmentsBothWays) {
  CapturingSink sink;
  auto e = v4Endpoints();
  TcpSynthesizer synth(e, sink);
  synth.open(100);
  auto request = pattern(5000, 2);
  auto response = pattern(3000, 3);
  synth.data(Side::CLIENT, 200, view(request));
  synth.data(Side::SERVER, 300, view(response));
  auto f = sink.parsed();
  // Handshake, 4 client segments, server ACK, 3 server segments, client ACK.
  ASSERT_EQ(f.size(), 3u + 4 + 1 + 3 + 1);
  uint32_t clientSeq = f[0].seq + 1;
  uint32_t serverSeq = f[1].seq + 1;

  size_t sizes[] = {1460, 1460, 1460, 620};
  for (size_t i = 0; i < 4; i++) {
    const ParsedFrame& s = f[3 + i];
    expectFrameBasics(s, e, Side::CLIENT);
    EXPECT_EQ(s.payload.size(), sizes[i]);
    EXPECT_EQ(s.seq, clientSeq);
    EXPECT_EQ(s.ack, serverSeq);
    EXPECT_EQ(s.flags, i == 3 ? FLAG_ACK | FLAG_PSH : FLAG_ACK);
    clientSeq += s.payload.size();
    EXPECT_EQ(sink.packets[3 + i].timeUs, 200);
  }
  EXPECT_EQ(f[7].flags, FLAG_ACK);
  EXPECT_TRUE(f[7].payload.empty());
  EXPECT_EQ(f[7].seq, serverSeq);
  EXPECT_EQ(f[7].ack, clientSeq);

  size_t serverSizes[] = {1460, 1460, 80};
  for (size_t i = 0; i < 3; i++) {
    const ParsedFrame& s = f[8 + i];
    expectFrameBasics(s, e, Side::SERVER);
    EXPECT_EQ(s.payload.size(), serverSizes[i]);
    EXPECT_EQ(s.seq, serverSeq);
    EXPECT_EQ(s.ack, clientSeq);
    serverSeq += s.payload.size();
  }
  EXPECT_EQ(f[11].seq, clientSeq);
  EXPECT_EQ(f[11].ack, serverSeq);
  EXPECT_EQ(sink.packets[11].timeUs, 300);

  EXPECT_EQ(synth.bytesSent(Side::CLIENT), 5000u);
  EXPECT_EQ(synth.bytesSent(Side::SERVER), 3000u);
  auto report = checkTcpFlow(f);
  EXPECT_TRUE(report.problems.empty()) << report.problems[0];
  EXPECT_EQ(report.clientBytes, request);
  EXPECT_EQ(report.serverBytes, response);
}

class TcpSynthFamily : public ::testing::TestWithParam<bool> {};

TEST_P(TcpSynthFamily, InterleavedTrafficReassembles) {
  CapturingSink sink;
  auto e = GetParam() ? v6Endpoints() : v4Endpoints();
  TcpSynthesizer synth(e, sink);
  synth.open(1);
  std::mt19937 rng(42);
  std::vector<kj::byte> sent[2];
  for (int i = 0; i < 300; i++) {
    Side from = rng() % 3 == 0 ? Side::CLIENT : Side::SERVER;
    // Mostly small chunks, now and then one far above the ACK interval.
    size_t size = rng() % 10 == 0 ? 1 + rng() % 200000 : 1 + rng() % 3000;
    auto chunk = pattern(size, i);
    synth.data(from, 10 + i, view(chunk));
    auto& out = sent[static_cast<int>(from)];
    out.insert(out.end(), chunk.begin(), chunk.end());
  }
  synth.closeOrderly(1000);
  auto frames = sink.parsed();
  auto report = checkTcpFlow(frames);
  ASSERT_TRUE(report.problems.empty()) << report.problems.size() << ": " << report.problems[0];
  EXPECT_EQ(report.clientBytes, sent[0]);
  EXPECT_EQ(report.serverBytes, sent[1]);
  EXPECT_TRUE(report.clientFin);
  EXPECT_TRUE(report.serverFin);
  EXPECT_LE(report.maxInFlight, TcpSynthesizer::ACK_EVERY_BYTES);
  EXPECT_EQ(synth.bytesSent(Side::CLIENT), sent[0].size());
  EXPECT_EQ(synth.bytesSent(Side::SERVER), sent[1].size());
}

INSTANTIATE_TEST_SUITE_P(Ipv4AndIpv6, TcpSynthFamily, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Ipv6" : "Ipv4"; });

TEST(TcpSynth, LargeOneWayTransferStaysInsideTheWindow) {
  CapturingSink sink;
  TcpSynthesizer synth(v4Endpoints(), sink);
  synth.open(1);
  auto big = pattern(10 << 20, 9);
  // One 10 MiB call (acks must come from inside the call), then 1 MiB calls.
  synth.data(Side::SERVER, 2, view(big));
  for (size_t off = 0; off < big.size(); off += 1 << 20) {
    synth.data(Side::SERVER, 3, kj::arrayPtr(big.data() + off, 1 << 20));
  }
  auto report = checkTcpFlow(sink.parsed());
  ASSERT_TRUE(report.problems.empty()) << report.problems[0];
  EXPECT_EQ(report.serverBytes.size(), big.size() * 2);
  EXPECT_TRUE(std::equal(big.begin(), big.end(), report.serverBytes.begin()));
  EXPECT_TRUE(std::equal(big.begin(), big.end(), report.serverBytes.begin() + big.size()));
  EXPECT_LE(report.maxInFlight, TcpSynthesizer::ACK_EVERY_BYTES);
  // ACKs are about one per ACK_EVERY_BYTES, not one per segment.
  EXPECT_GE(report.pureAcks, 2 * big.size() / TcpSynthesizer::ACK_EVERY_BYTES);
  EXPECT_LE(report.pureAcks, 2 * big.size() / (TcpSynthesizer::ACK_EVERY_BYTES / 2));
}

TEST(TcpSynth, SequenceNumbersWrapAround) {
  // Find a flow whose client ISN lies within 1 MiB of 2^32, then send 3 MiB across the wrap.
  uint32_t isn = 0;
  uint16_t port = 0;
  for (uint32_t p = 1024; p < 65536 && port == 0; p++) {
    CapturingSink probe;
    TcpSynthesizer synth(v4Endpoints(p), probe);
    synth.open(1);
    isn = test::parseFrame(probe.packets[0].frame).seq;
    if (isn > 0xffffffffu - (1u << 20)) port = p;
  }
  ASSERT_NE(port, 0) << "no port gives an ISN near the wrap";
  CapturingSink sink;
  TcpSynthesizer synth(v4Endpoints(port), sink);
  synth.open(1);
  auto input = pattern(3 << 20, 4);
  synth.data(Side::CLIENT, 2, view(input));
  synth.closeOrderly(3);
  auto frames = sink.parsed();
  bool wrapped = false;
  for (auto& f : frames) wrapped |= f.srcPort == port && f.seq < isn;
  EXPECT_TRUE(wrapped);
  auto report = checkTcpFlow(frames);
  ASSERT_TRUE(report.problems.empty()) << report.problems[0];
  EXPECT_EQ(report.clientBytes, input);
}

TEST(TcpSynth, HalfCloseThenOrderlyClose) {
  CapturingSink sink;
  auto e = v4Endpoints();
  TcpSynthesizer synth(e, sink);
  synth.open(1);
  auto request = pattern(100, 5);
  synth.data(Side::CLIENT, 2, view(request));
  size_t before = sink.packets.size();
  synth.fin(Side::CLIENT, 3);
  EXPECT_TRUE(synth.finished(Side::CLIENT));
  EXPECT_FALSE(synth.finished(Side::SERVER));
  auto f = sink.parsed();
  ASSERT_EQ(f.size(), before + 2);
  // Copies: `f` is reassigned below.
  const ParsedFrame fin = f[before];
  const ParsedFrame finAck = f[before + 1];
  expectFrameBasics(fin, e, Side::CLIENT);
  EXPECT_EQ(fin.flags, FLAG_FIN | FLAG_ACK);
  EXPECT_EQ(fin.seq, f[0].seq + 1 + 100);
  expectFrameBasics(finAck, e, Side::SERVER);
  EXPECT_EQ(finAck.flags, FLAG_ACK);
  EXPECT_EQ(finAck.ack, fin.seq + 1);

  // A second FIN from the same side writes nothing; data from it is a contract breach.
  synth.fin(Side::CLIENT, 4);
  EXPECT_EQ(sink.packets.size(), before + 2);
  EXPECT_THROW(synth.data(Side::CLIENT, 4, view(request)), kj::Exception);

  // The server may go on sending after the client's FIN.
  auto response = pattern(4000, 6);
  synth.data(Side::SERVER, 5, view(response));
  size_t beforeClose = sink.packets.size();
  synth.closeOrderly(6);
  f = sink.parsed();
  ASSERT_EQ(f.size(), beforeClose + 2);  // only the server still had to send FIN
  EXPECT_EQ(f[beforeClose].flags, FLAG_FIN | FLAG_ACK);
  EXPECT_EQ(f[beforeClose].srcPort, e.serverPort);
  EXPECT_EQ(f[beforeClose + 1].flags, FLAG_ACK);
  EXPECT_EQ(f[beforeClose + 1].seq, fin.seq + 1);  // the client's FIN used one sequence number
  EXPECT_EQ(f[beforeClose + 1].ack, f[beforeClose].seq + 1);
  EXPECT_TRUE(synth.finished(Side::SERVER));

  auto report = checkTcpFlow(f);
  ASSERT_TRUE(report.problems.empty()) << report.problems[0];
  EXPECT_EQ(report.clientBytes, request);
  EXPECT_EQ(report.serverBytes, response);
}

TEST(TcpSynth, ResetCarriesCurrentSeqAndAck) {
  CapturingSink sink;
  auto e = v4Endpoints();
  TcpSynthesizer synth(e, sink);
  synth.open(1);
  auto request = pattern(2000, 7);
  auto response = pattern(700, 8);
  synth.data(Side::CLIENT, 2, view(request));
  synth.data(Side::SERVER, 3, view(response));
  size_t before = sink.packets.size();
  synth.reset(Side::SERVER, 4);
  auto f = sink.parsed();
  ASSERT_EQ(f.size(), before + 1);
  const ParsedFrame& rst = f.back();
  expectFrameBasics(rst, e, Side::SERVER);
  EXPECT_EQ(rst.flags, FLAG_RST | FLAG_ACK);
  EXPECT_EQ(rst.seq, f[1].seq + 1 + 700);
  EXPECT_EQ(rst.ack, f[0].seq + 1 + 2000);
  EXPECT_EQ(sink.packets.back().timeUs, 4);

  // After a reset the connection is gone: closing writes nothing, sending is refused.
  synth.closeOrderly(5);
  synth.reset(Side::CLIENT, 5);
  EXPECT_EQ(sink.packets.size(), before + 1);
  EXPECT_THROW(synth.data(Side::SERVER, 5, view(response)), kj::Exception);
  EXPECT_THROW(synth.fin(Side::SERVER, 5), kj::Exception);
  auto report = checkTcpFlow(sink.parsed());
  EXPECT_TRUE(report.problems.empty()) << report.problems[0];
  EXPECT_TRUE(report.reset);
}

TEST(TcpSynth, UseBeforeOpenIsRefused) {
  CapturingSink sink;
  TcpSynthesizer synth(v4Endpoints(), sink);
  auto bytes = pattern(10, 1);
  EXPECT_THROW(synth.data(Side::CLIENT, 1, view(bytes)), kj::Exception);
  EXPECT_THROW(synth.fin(Side::CLIENT, 1), kj::Exception);
  synth.closeOrderly(1);
  synth.reset(Side::CLIENT, 1);
  EXPECT_TRUE(sink.packets.empty());
  synth.open(1);
  EXPECT_THROW(synth.open(2), kj::Exception);
  EXPECT_EQ(sink.packets.size(), 3u);
  synth.data(Side::CLIENT, 3, nullptr);
  EXPECT_EQ(sink.packets.size(), 3u);  // nothing to send, nothing to acknowledge
}

TEST(TcpSynth, IsnIsDeterministicAndDistinct) {
  auto synFrames = [](const FlowEndpoints& e, int64_t time) {
    CapturingSink sink;
    TcpSynthesizer synth(e, sink);
    synth.open(time);
    return sink.packets;
  };
  auto a = synFrames(v4Endpoints(40000), 1000);
  auto b = synFrames(v4Endpoints(40000), 1000);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); i++) EXPECT_EQ(a[i].frame, b[i].frame);
  uint32_t clientIsn = test::parseFrame(a[0].frame).seq;
  uint32_t serverIsn = test::parseFrame(a[1].frame).seq;
  EXPECT_NE(clientIsn, serverIsn);
  EXPECT_NE(test::parseFrame(synFrames(v4Endpoints(40001), 1000)[0].frame).seq, clientIsn);
  // The same port pair reused later must not look like a retransmitted SYN.
  EXPECT_NE(test::parseFrame(synFrames(v4Endpoints(40000), 2000)[0].frame).seq, clientIsn);
}

}  // namespace
}  // namespace tlstap
