#include "tcp-synth.h"

#include <string.h>
#include <kj/debug.h>

namespace tlstap {

namespace {

constexpr uint8_t TCP_FIN = 0x01;
constexpr uint8_t TCP_SYN = 0x02;
constexpr uint8_t TCP_RST = 0x04;
constexpr uint8_t TCP_PSH = 0x08;
constexpr uint8_t TCP_ACK = 0x10;

constexpr uint8_t IP_PROTO_TCP = 6;
constexpr uint8_t TTL = 64;

// Locally administered unicast MACs: they cannot clash with a real vendor's, and a reader sees at
// once which end is which.
constexpr kj::byte CLIENT_MAC[6] = {0x02, 0, 0, 0, 0, 0x01};
constexpr kj::byte SERVER_MAC[6] = {0x02, 0, 0, 0, 0, 0x02};

inline void put16(kj::byte* p, uint16_t v) {
  p[0] = v >> 8;
  p[1] = v;
}
inline void put32(kj::byte* p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

// A 16-bit value in network byte order as a native load of its two bytes would see it, so that it
// can join a memory-order checksum sum without a round trip through memory.
inline uint16_t memoryOrder16(uint16_t v) {
  kj::byte bytes[2] = {kj::byte(v >> 8), kj::byte(v)};
  uint16_t out;
  memcpy(&out, bytes, 2);
  return out;
}

// FNV-1a over the inputs, then the splitmix64 finaliser so that nearby ports give unrelated
// numbers. Not secret: the ISN only has to be stable for a flow and differ between flows.
class Hasher {
public:
  void add(const void* data, size_t size) {
    auto p = static_cast<const kj::byte*>(data);
    for (size_t i = 0; i < size; i++) {
      state ^= p[i];
      state *= 0x100000001b3ull;
    }
  }
  uint64_t finish() const {
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

private:
  uint64_t state = 0xcbf29ce484222325ull;
};

uint64_t flowHash(const FlowEndpoints& e, int64_t timeUs, Side side) {
  Hasher h;
  kj::byte family = e.ipv6;
  kj::byte sideByte = static_cast<kj::byte>(side);
  h.add(&family, 1);
  h.add(e.clientIp, e.ipv6 ? 16 : 4);
  h.add(e.serverIp, e.ipv6 ? 16 : 4);
  h.add(&e.clientPort, sizeof(e.clientPort));
  h.add(&e.serverPort, sizeof(e.serverPort));
  h.add(&timeUs, sizeof(timeUs));
  h.add(&sideByte, 1);
  return h.finish();
}

}  // namespace

uint64_t checksumAdd(uint64_t sum, kj::ArrayPtr<const kj::byte> bytes) {
  // Native 64-bit words with the carries counted apart: an end-around carry is worth 1, because
  // 2^64 = 1 modulo 2^16 - 1. Two independent sums halve the dependency chain of the hot loop.
  const kj::byte* p = bytes.begin();
  size_t n = bytes.size();
  uint64_t sum2 = 0, carry = 0, carry2 = 0;
  while (n >= 32) {
    uint64_t w[4];
    memcpy(w, p, 32);
    sum += w[0];
    carry += sum < w[0];
    sum2 += w[1];
    carry2 += sum2 < w[1];
    sum += w[2];
    carry += sum < w[2];
    sum2 += w[3];
    carry2 += sum2 < w[3];
    p += 32;
    n -= 32;
  }
  auto add = [&](uint64_t w) {
    sum += w;
    carry += sum < w;
  };
  add(sum2);
  carry += carry2;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    add(w);
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    add(w);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    add(w);
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    // The odd last byte is the high-order half of a zero-padded word: in memory order, that is
    // the byte in the first position.
    uint16_t w = 0;
    memcpy(&w, p, 1);
    add(w);
  }
  // Fold so the caller can go on adding without overflow.
  return (sum & 0xffffffffu) + (sum >> 32) + carry;
}

uint16_t checksumFinish(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

TcpSynthesizer::TcpSynthesizer(const FlowEndpoints& endpoints, PacketSink& sink)
    : endpoints(endpoints),
      sink(sink),
      ipv6(endpoints.ipv6),
      mss(endpoints.ipv6 ? MSS_IPV6 : MSS_IPV4),
      ipLen(endpoints.ipv6 ? 40 : 20),
      headersLen(ETH_LEN + ipLen + TCP_LEN) {
  buildTemplate(Side::CLIENT, endpoints);
  buildTemplate(Side::SERVER, endpoints);
  // IP IDs start somewhere flow-specific, as on a real host; the ISNs are chosen in open().
  ends[0].ipId = static_cast<uint16_t>(flowHash(endpoints, 0, Side::CLIENT) >> 48);
  ends[1].ipId = static_cast<uint16_t>(flowHash(endpoints, 0, Side::SERVER) >> 48);
}

void TcpSynthesizer::buildTemplate(Side from, const FlowEndpoints& e) {
  kj::byte* t = headerTemplate[index(from)];
  memset(t, 0, sizeof(headerTemplate[0]));
  bool fromClient = from == Side::CLIENT;
  const kj::byte* srcIp = fromClient ? e.clientIp : e.serverIp;
  const kj::byte* dstIp = fromClient ? e.serverIp : e.clientIp;
  size_t addrLen = ipv6 ? 16 : 4;

  memcpy(t, fromClient ? SERVER_MAC : CLIENT_MAC, 6);
  memcpy(t + 6, fromClient ? CLIENT_MAC : SERVER_MAC, 6);
  put16(t + 12, ipv6 ? 0x86dd : 0x0800);

  kj::byte* ip = t + ETH_LEN;
  if (ipv6) {
    ip[0] = 0x60;  // version 6, traffic class 0, flow label 0
    ip[6] = IP_PROTO_TCP;
    ip[7] = TTL;
    memcpy(ip + 8, srcIp, 16);
    memcpy(ip + 24, dstIp, 16);
  } else {
    ip[0] = 0x45;  // version 4, 20-byte header
    put16(ip + 6, 0x4000);  // DF: a path-MTU-discovering host, like every modern stack
    ip[8] = TTL;
    ip[9] = IP_PROTO_TCP;
    memcpy(ip + 12, srcIp, 4);
    memcpy(ip + 16, dstIp, 4);
  }

  kj::byte* tcp = ip + ipLen;
  put16(tcp, fromClient ? e.clientPort : e.serverPort);
  put16(tcp + 2, fromClient ? e.serverPort : e.clientPort);
  put16(tcp + 14, WINDOW);

  uint64_t sum = checksumAdd(0, kj::arrayPtr(srcIp, addrLen));
  sum = checksumAdd(sum, kj::arrayPtr(dstIp, addrLen));
  pseudoSum[index(from)] = sum + memoryOrder16(IP_PROTO_TCP);
}

void TcpSynthesizer::emit(Side from, uint8_t flags, int64_t timeUs,
                          kj::ArrayPtr<const kj::byte> payload) {
  End& me = ends[index(from)];
  const End& peer = ends[index(otherSide(from))];
  bool syn = flags & TCP_SYN;
  size_t tcpHeaderLen = TCP_LEN + (syn ? SYN_OPTIONS_LEN : 0);
  size_t tcpLen = tcpHeaderLen + payload.size();

  memcpy(frame, headerTemplate[index(from)], headersLen);
  kj::byte* ip = frame + ETH_LEN;
  kj::byte* tcp = ip + ipLen;
  if (ipv6) {
    put16(ip + 4, tcpLen);
  } else {
    put16(ip + 2, ipLen + tcpLen);
    put16(ip + 4, me.ipId++);
    uint16_t ipSum = checksumFinish(checksumAdd(0, kj::arrayPtr(ip, ipLen)));
    memcpy(ip + 10, &ipSum, 2);
  }

  uint32_t ack = (flags & TCP_ACK) ? peer.nextSeq : 0;
  put32(tcp + 4, me.nextSeq);
  put32(tcp + 8, ack);
  tcp[12] = (tcpHeaderLen / 4) << 4;
  tcp[13] = flags;
  if (syn) {
    kj::byte* o = tcp + TCP_LEN;
    o[0] = 2;  // MSS
    o[1] = 4;
    put16(o + 2, mss);
    o[4] = 1;  // NOP, to align what follows
    o[5] = 3;  // window scale
    o[6] = 3;
    o[7] = WINDOW_SHIFT;
  }
  if (payload.size() > 0) memcpy(tcp + tcpHeaderLen, payload.begin(), payload.size());

  uint64_t sum = pseudoSum[index(from)] + memoryOrder16(tcpLen);
  uint16_t tcpSum = checksumFinish(checksumAdd(sum, kj::arrayPtr(tcp, tcpLen)));
  memcpy(tcp + 16, &tcpSum, 2);

  me.nextSeq += payload.size() + (syn ? 1 : 0) + ((flags & TCP_FIN) ? 1 : 0);
  if (flags & TCP_ACK) me.lastAck = ack;
  me.bytesSent += payload.size();

  sink.writePacket(timeUs, kj::arrayPtr(frame, ETH_LEN + ipLen + tcpLen));
}

void TcpSynthesizer::ackIfBehind(Side from, int64_t timeUs) {
  // Only an ACK that moves forward: a repeated ack number is what tshark calls a duplicate ACK.
  if (ends[index(from)].lastAck != ends[index(otherSide(from))].nextSeq) {
    emit(from, TCP_ACK, timeUs, nullptr);
  }
}

void TcpSynthesizer::requireUsable(Side from, bool forData) const {
  KJ_REQUIRE(opened, "flow used before its handshake");
  KJ_REQUIRE(!wasReset, "flow used after it was reset");
  if (forData) {
    KJ_REQUIRE(!finished(from), "data after FIN", sideName(from));
  }
}

void TcpSynthesizer::chooseIsns(int64_t timeUs) {
  KJ_REQUIRE(!opened, "flow opened twice");
  End& client = ends[index(Side::CLIENT)];
  End& server = ends[index(Side::SERVER)];
  client.nextSeq = static_cast<uint32_t>(flowHash(endpoints, timeUs, Side::CLIENT));
  server.nextSeq = static_cast<uint32_t>(flowHash(endpoints, timeUs, Side::SERVER));
  // Equal ISNs would be legal but look like a reflected SYN to a human reader.
  if (server.nextSeq == client.nextSeq) server.nextSeq ^= 0x80000000u;
  opened = true;
}

void TcpSynthesizer::open(int64_t timeUs) {
  chooseIsns(timeUs);
  emit(Side::CLIENT, TCP_SYN, timeUs, nullptr);
  emit(Side::SERVER, TCP_SYN | TCP_ACK, timeUs, nullptr);
  emit(Side::CLIENT, TCP_ACK, timeUs, nullptr);
}

void TcpSynthesizer::resume(int64_t startTimeUs, const uint64_t offset[2], const bool fin[2]) {
  chooseIsns(startTimeUs);
  for (size_t i = 0; i < 2; i++) {
    // The SYN takes one sequence number, and so does a FIN.
    ends[i].nextSeq += 1 + static_cast<uint32_t>(offset[i]) + (fin[i] ? 1 : 0);
    ends[i].finSent = fin[i];
  }
  // Each data call of the earlier synthesizer ended with its receiver acknowledging it all.
  for (size_t i = 0; i < 2; i++) ends[i].lastAck = ends[1 - i].nextSeq;
}

void TcpSynthesizer::skip(Side from, uint64_t bytes) {
  requireUsable(from, true);
  ends[index(from)].nextSeq += static_cast<uint32_t>(bytes);
}

void TcpSynthesizer::data(Side from, int64_t timeUs, kj::ArrayPtr<const kj::byte> bytes) {
  requireUsable(from, true);
  if (bytes.size() == 0) return;
  Side to = otherSide(from);
  const End& sender = ends[index(from)];
  const End& receiver = ends[index(to)];
  while (bytes.size() > 0) {
    size_t n = kj::min(bytes.size(), size_t(mss));
    uint32_t unacked = sender.nextSeq - receiver.lastAck;
    if (unacked > 0 && unacked + n > ACK_EVERY_BYTES) ackIfBehind(to, timeUs);
    emit(from, n == bytes.size() ? TCP_ACK | TCP_PSH : TCP_ACK, timeUs, bytes.slice(0, n));
    bytes = bytes.slice(n, bytes.size());
  }
  ackIfBehind(to, timeUs);
}

void TcpSynthesizer::fin(Side from, int64_t timeUs) {
  requireUsable(from, false);
  if (finished(from)) return;
  emit(from, TCP_FIN | TCP_ACK, timeUs, nullptr);
  ends[index(from)].finSent = true;
  ackIfBehind(otherSide(from), timeUs);
}

void TcpSynthesizer::closeOrderly(int64_t timeUs) {
  if (!opened || wasReset) return;
  if (!finished(Side::CLIENT)) fin(Side::CLIENT, timeUs);
  if (!finished(Side::SERVER)) fin(Side::SERVER, timeUs);
}

void TcpSynthesizer::reset(Side from, int64_t timeUs) {
  if (!opened || wasReset) return;
  emit(from, TCP_RST | TCP_ACK, timeUs, nullptr);
  wasReset = true;
}

}  // namespace tlstap
