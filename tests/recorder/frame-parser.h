// Test-only: an Ethernet/IPv4/IPv6/TCP decoder written apart from the synthesizer (plain
// byte-by-byte parsing, a textbook 16-bit checksum), so that tests check frames against an
// independent reading instead of against the code that built them. Also a sink that keeps every
// frame, and a checker that replays one TCP connection the way an analyser does (sequence gaps,
// retransmissions, ACKs of unseen data, duplicate ACKs, window use).
#pragma once

#include <stdint.h>
#include <string.h>
#include <string>
#include <vector>

#include "recorder/packet-sink.h"

namespace tlstap {
namespace test {

constexpr uint8_t FLAG_FIN = 0x01;
constexpr uint8_t FLAG_SYN = 0x02;
constexpr uint8_t FLAG_RST = 0x04;
constexpr uint8_t FLAG_PSH = 0x08;
constexpr uint8_t FLAG_ACK = 0x10;

struct ParsedFrame {
  std::string error;  // empty when the frame decoded; checksum results are reported apart
  uint8_t dstMac[6] = {};
  uint8_t srcMac[6] = {};
  int ipVersion = 0;
  std::vector<uint8_t> srcIp, dstIp;
  int ttl = 0;            // or hop limit
  uint16_t ipId = 0;      // IPv4 only
  bool dontFragment = false;
  bool ipChecksumOk = false;   // IPv6 has no header checksum: always true there
  bool tcpChecksumOk = false;
  uint16_t srcPort = 0, dstPort = 0;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  int mss = -1;          // from the options, -1 if absent
  int windowScale = -1;  // from the options, -1 if absent
  std::vector<uint8_t> payload;

  bool has(uint8_t flag) const { return (flags & flag) != 0; }
};

inline uint16_t readBe16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t readBe32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

// RFC 1071 the slow, obvious way: big-endian 16-bit words, odd byte padded with zero.
inline uint32_t plainSum(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += readBe16(p + i);
  if (n % 2) sum += uint32_t(p[n - 1]) << 8;
  return sum;
}
inline bool sumIsAllOnes(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

inline ParsedFrame parseFrame(const uint8_t* data, size_t size) {
  ParsedFrame f;
  if (size < 14) {
    f.error = "shorter than an Ethernet header";
    return f;
  }
  memcpy(f.dstMac, data, 6);
  memcpy(f.srcMac, data + 6, 6);
  uint16_t etherType = readBe16(data + 12);
  const uint8_t* ip = data + 14;
  size_t ipAvail = size - 14;
  const uint8_t* tcp;
  size_t tcpLen;
  uint32_t pseudo;
  if (etherType == 0x0800) {
    if (ipAvail < 20 || (ip[0] >> 4) != 4) {
      f.error = "bad IPv4 header";
      return f;
    }
    f.ipVersion = 4;
    size_t ihl = size_t(ip[0] & 0xf) * 4;
    size_t total = readBe16(ip + 2);
    if (ihl < 20 || total < ihl || total > ipAvail || ip[9] != 6) {
      f.error = "bad IPv4 lengths or not TCP";
      return f;
    }
    if (total != ipAvail) {
      f.error = "IPv4 total length does not match the frame";
      return f;
    }
    f.ipId = readBe16(ip + 4);
    f.dontFragment = (ip[6] & 0x40) != 0;
    f.ttl = ip[8];
    f.srcIp.assign(ip + 12, ip + 16);
    f.dstIp.assign(ip + 16, ip + 20);
    f.ipChecksumOk = sumIsAllOnes(plainSum(ip, ihl));
    tcp = ip + ihl;
    tcpLen = total - ihl;
    pseudo = plainSum(ip + 12, 8) + 6 + uint32_t(tcpLen);
  } else if (etherType == 0x86dd) {
    if (ipAvail < 40 || (ip[0] >> 4) != 6 || ip[6] != 6) {
      f.error = "bad IPv6 header or not TCP";
      return f;
    }
    f.ipVersion = 6;
    size_t payloadLen = readBe16(ip + 4);
    if (payloadLen != ipAvail - 40) {
      f.error = "IPv6 payload length does not match the frame";
      return f;
    }
    f.ttl = ip[7];
    f.srcIp.assign(ip + 8, ip + 24);
    f.dstIp.assign(ip + 24, ip + 40);
    f.ipChecksumOk = true;
    tcp = ip + 40;
    tcpLen = payloadLen;
    // Pseudo header: addresses, 32-bit length, three zero bytes and the next header.
    pseudo = plainSum(ip + 8, 32) + uint32_t(tcpLen >> 16) + uint32_t(tcpLen & 0xffff) + 6;
  } else {
    f.error = "not IPv4 or IPv6";
    return f;
  }
  if (tcpLen < 20) {
    f.error = "TCP header truncated";
    return f;
  }
  size_t dataOffset = size_t(tcp[12] >> 4) * 4;
  if (dataOffset < 20 || dataOffset > tcpLen) {
    f.error = "bad TCP data offset";
    return f;
  }
  f.srcPort = readBe16(tcp);
  f.dstPort = readBe16(tcp + 2);
  f.seq = readBe32(tcp + 4);
  f.ack = readBe32(tcp + 8);
  f.flags = tcp[13];
  f.window = readBe16(tcp + 14);
  f.tcpChecksumOk = sumIsAllOnes(plainSum(tcp, tcpLen, pseudo));
  for (size_t i = 20; i < dataOffset;) {
    uint8_t kind = tcp[i];
    if (kind == 0) break;
    if (kind == 1) {
      i++;
      continue;
    }
    if (i + 1 >= dataOffset || tcp[i + 1] < 2 || i + tcp[i + 1] > dataOffset) {
      f.error = "malformed TCP option";
      return f;
    }
    if (kind == 2 && tcp[i + 1] == 4) f.mss = readBe16(tcp + i + 2);
    if (kind == 3 && tcp[i + 1] == 3) f.windowScale = tcp[i + 2];
    i += tcp[i + 1];
  }
  f.payload.assign(tcp + dataOffset, tcp + tcpLen);
  return f;
}

inline ParsedFrame parseFrame(const std::vector<uint8_t>& frame) {
  return parseFrame(frame.data(), frame.size());
}

struct CapturedPacket {
  int64_t timeUs;
  std::vector<uint8_t> frame;
};

// Keeps a copy of every frame written to it.
class CapturingSink final : public PacketSink {
public:
  void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) override {
    packets.push_back({timeUs, std::vector<uint8_t>(frame.begin(), frame.end())});
  }
  std::vector<ParsedFrame> parsed() const {
    std::vector<ParsedFrame> out;
    for (auto& p : packets) out.push_back(parseFrame(p.frame));
    return out;
  }
  std::vector<CapturedPacket> packets;
};

// What an analyser would conclude about one TCP connection given in capture order.
struct FlowReport {
  std::vector<std::string> problems;  // empty for a clean connection
  std::vector<uint8_t> clientBytes;   // reassembled payload sent by the client
  std::vector<uint8_t> serverBytes;
  bool clientFin = false, serverFin = false, reset = false;
  uint32_t maxInFlight = 0;           // largest unacknowledged span seen, either direction
  size_t pureAcks = 0;
};

inline bool seqAfter(uint32_t a, uint32_t b) { return int32_t(a - b) > 0; }

inline FlowReport checkTcpFlow(const std::vector<ParsedFrame>& frames) {
  FlowReport r;
  auto problem = [&](size_t i, const std::string& what) {
    r.problems.push_back("frame " + std::to_string(i) + ": " + what);
  };
  struct Dir {
    bool seen = false;     // SYN seen: nextSeq is valid
    uint32_t nextSeq = 0;
    bool acked = false;    // an ACK was sent: lastAck is valid
    uint32_t lastAck = 0;
    int mss = -1, scale = -1;
    uint16_t window = 0;
    bool windowSet = false;
  } dirs[2];
  if (frames.empty()) {
    r.problems.push_back("no frames");
    return r;
  }
  uint16_t clientPort = frames[0].srcPort;
  for (size_t i = 0; i < frames.size(); i++) {
    const ParsedFrame& f = frames[i];
    if (!f.error.empty()) {
      problem(i, f.error);
      continue;
    }
    if (!f.ipChecksumOk) problem(i, "bad IP checksum");
    if (!f.tcpChecksumOk) problem(i, "bad TCP checksum");
    int d = f.srcPort == clientPort ? 0 : 1;
    Dir& me = dirs[d];
    Dir& peer = dirs[1 - d];
    if (f.has(FLAG_SYN)) {
      if (me.seen) problem(i, "second SYN");
      me.seen = true;
      me.nextSeq = f.seq + 1;
      me.mss = f.mss;
      me.scale = f.windowScale;
      if (d == 0 && f.has(FLAG_ACK)) problem(i, "client SYN with ACK");
      if (d == 1 && !f.has(FLAG_ACK)) problem(i, "SYN-ACK without ACK");
    } else {
      if (!me.seen) {
        problem(i, "segment before SYN");
        continue;
      }
      if (f.seq != me.nextSeq) {
        problem(i, seqAfter(f.seq, me.nextSeq) ? "previous segment not captured"
                                               : "retransmission or keep-alive");
      }
      if (!me.windowSet) {
        me.window = f.window;
        me.windowSet = true;
      } else if (f.window != me.window) {
        problem(i, "window changed");
      }
      if (f.window == 0) problem(i, "zero window");
      me.nextSeq = f.seq + uint32_t(f.payload.size()) + (f.has(FLAG_FIN) ? 1 : 0);
    }
    if (!f.payload.empty()) {
      int peerMss = peer.mss < 0 ? 536 : peer.mss;
      if (f.payload.size() > size_t(peerMss)) problem(i, "segment larger than the peer's MSS");
      auto& out = d == 0 ? r.clientBytes : r.serverBytes;
      out.insert(out.end(), f.payload.begin(), f.payload.end());
    }
    if (f.has(FLAG_FIN)) (d == 0 ? r.clientFin : r.serverFin) = true;
    if (f.has(FLAG_RST)) r.reset = true;
    if (f.has(FLAG_ACK)) {
      if (!peer.seen || seqAfter(f.ack, peer.nextSeq)) problem(i, "ACKs unseen data");
      if (me.acked && seqAfter(me.lastAck, f.ack)) problem(i, "ack number went backwards");
      bool pure = f.payload.empty() && (f.flags & (FLAG_SYN | FLAG_FIN | FLAG_RST)) == 0;
      if (pure) {
        r.pureAcks++;
        if (me.acked && f.ack == me.lastAck) problem(i, "duplicate ACK");
      }
      me.acked = true;
      me.lastAck = f.ack;
    }
    // Data in flight from this side towards the peer: what the peer has not yet acknowledged.
    if (peer.acked && me.seen) {
      uint32_t inFlight = me.nextSeq - peer.lastAck;
      if (inFlight > r.maxInFlight) r.maxInFlight = inFlight;
      if (peer.windowSet && peer.scale >= 0 && me.scale >= 0 &&
          uint64_t(inFlight) >= uint64_t(peer.window) << peer.scale) {
        problem(i, "window full");
      }
    }
  }
  return r;
}

}  // namespace test
}  // namespace tlstap
