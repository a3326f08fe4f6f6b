// Turns one proxied flow (decrypted bytes per direction, with timestamps) into the packets of a
// plausible TCP connection: handshake, MSS-sized data segments with consistent seq/ack in both
// directions, and a FIN exchange or a RST. The goal is a capture in which analysers (tshark's
// TCP analysis, Zeek, Suricata, Arkime) find nothing to complain about and reassemble exactly the
// bytes that were relayed.
//
// The synthesized receiver advertises a scaled window of 65535 << 7 bytes and acknowledges often
// enough that data in flight stays far below it, so no "window full" / "zero window" appears; a
// pure ACK is only sent when it acknowledges something new, so no "duplicate ACK" or "window
// update" appears either.
#pragma once

#include <stdint.h>
#include <kj/common.h>

#include "common/side.h"
#include "recorder/packet-sink.h"

namespace tlstap {

struct FlowEndpoints {
  bool ipv6 = false;
  kj::byte clientIp[16] = {};  // first 4 bytes used for IPv4, network byte order
  kj::byte serverIp[16] = {};
  uint16_t clientPort = 0;  // host byte order
  uint16_t serverPort = 0;
};

class TcpSynthesizer {
public:
  // Largest segment payloads, as a 1500-byte MTU Ethernet path would give.
  static constexpr uint32_t MSS_IPV4 = 1460;
  static constexpr uint32_t MSS_IPV6 = 1440;
  // Window field value and shift advertised by both ends (real window: 65535 << 7 ~ 8 MiB).
  static constexpr uint16_t WINDOW = 65535;
  static constexpr uint8_t WINDOW_SHIFT = 7;
  // A receiver acknowledges once this much unacknowledged data has arrived. Much less than the
  // window, and small enough that engines that inspect data only once it is acknowledged
  // (Suricata, Snort) do not sit on megabytes.
  static constexpr uint32_t ACK_EVERY_BYTES = 64 * 1024;

  // The synthesizer writes every frame into `sink` synchronously; both must outlive it. Frames
  // are built in one buffer owned by the synthesizer, valid only during writePacket().
  TcpSynthesizer(const FlowEndpoints& endpoints, PacketSink& sink);
  KJ_DISALLOW_COPY(TcpSynthesizer);

  // SYN (MSS + window-scale options), SYN-ACK (same), ACK. Must be called first, once. The
  // initial sequence numbers are a hash of the endpoints and timeUs: deterministic, different
  // per side, and different when a port pair is reused at another time.
  void open(int64_t timeUs);

  // Instead of open(), for a flow whose beginning an earlier synthesizer (maybe in another
  // process) wrote: the same ISNs as open(startTimeUs) gave, each side's next sequence number
  // `offset` bytes (and its FIN, if `fin`) past them, everything before acknowledged. Writes
  // nothing. Offsets wrap modulo 2^32 as sequence numbers do.
  void resume(int64_t startTimeUs, const uint64_t offset[2], const bool fin[2]);

  // Moves `from`'s sequence numbers over `bytes` that will never be written (they were not
  // recorded): the next segment shows the gap. Throws where data() would.
  void skip(Side from, uint64_t bytes);

  // `bytes` from `from`, in segments of at most the MSS, each with ACK, PSH on the last. The
  // peer sends a pure ACK whenever ACK_EVERY_BYTES are unacknowledged and after the last
  // segment. Empty `bytes` write nothing. Throws if `from` has already sent FIN, after reset(),
  // or before open().
  void data(Side from, int64_t timeUs, kj::ArrayPtr<const kj::byte> bytes);

  // FIN|ACK from `from`, then a pure ACK from the peer. A second FIN from the same side is
  // ignored. Throws before open() or after reset().
  void fin(Side from, int64_t timeUs);

  // FIN for every side not yet finished (client first), each acknowledged. Does nothing after
  // reset() or before open().
  void closeOrderly(int64_t timeUs);

  // RST|ACK from `from`. The flow is over: later reset()/closeOrderly() calls do nothing, later
  // data()/fin() calls throw. Does nothing before open().
  void reset(Side from, int64_t timeUs);

  // Whether `side` has sent FIN.
  bool finished(Side side) const { return ends[index(side)].finSent; }
  // Payload bytes synthesized from `side`.
  uint64_t bytesSent(Side side) const { return ends[index(side)].bytesSent; }

private:
  // What one end has sent so far, in its own sequence space and in its acknowledgements.
  struct End {
    uint32_t nextSeq = 0;   // sequence number of the next byte (or FIN) this end sends
    uint32_t lastAck = 0;   // ack number on the last packet this end sent
    uint16_t ipId = 0;      // IPv4 identification of the next packet
    bool finSent = false;
    uint64_t bytesSent = 0;
  };

  static constexpr size_t ETH_LEN = 14;
  static constexpr size_t TCP_LEN = 20;
  static constexpr size_t SYN_OPTIONS_LEN = 8;  // MSS (4) + NOP (1) + window scale (3)
  static constexpr size_t MAX_HEADERS = ETH_LEN + 40 + TCP_LEN + SYN_OPTIONS_LEN;
  static constexpr size_t MAX_FRAME = MAX_HEADERS + MSS_IPV4;

  static size_t index(Side side) { return static_cast<size_t>(side); }
  void buildTemplate(Side from, const FlowEndpoints& endpoints);
  // The ISNs of open() and resume(): a hash of the endpoints and the flow's start time.
  void chooseIsns(int64_t timeUs);
  // Sends one packet from `from` with the given TCP flags and payload, stamping the current seq
  // and ack of that end and advancing its state.
  void emit(Side from, uint8_t flags, int64_t timeUs, kj::ArrayPtr<const kj::byte> payload);
  // A pure ACK from `from` if it would acknowledge something new.
  void ackIfBehind(Side from, int64_t timeUs);
  void requireUsable(Side from, bool forData) const;

  FlowEndpoints endpoints;  // kept for the ISNs, which open() derives with the time
  PacketSink& sink;
  bool ipv6;
  uint32_t mss;
  size_t ipLen;        // 20 or 40
  size_t headersLen;   // Ethernet + IP + TCP without options
  bool opened = false;
  bool wasReset = false;
  End ends[2];
  // Per direction: the Ethernet, IP and TCP headers with every constant field filled in, and the
  // ones' complement sum of the addresses and protocol of the TCP pseudo header.
  kj::byte headerTemplate[2][ETH_LEN + 40 + TCP_LEN];
  uint64_t pseudoSum[2];
  // Every frame is assembled here: no allocation per packet.
  kj::byte frame[MAX_FRAME];
};

// The Internet checksum (RFC 1071), public so tests can hold it against a plain implementation.
// Sums are kept in memory order (RFC 1071 2(B): the ones' complement sum does not depend on byte
// order), which lets the hot loop add native 64-bit words; checksumFinish() returns the 16-bit
// value in memory order, to be memcpy'd into the header. Every checksumAdd() must start at an
// even offset of the summed data.
uint64_t checksumAdd(uint64_t sum, kj::ArrayPtr<const kj::byte> bytes);
uint16_t checksumFinish(uint64_t sum);

}  // namespace tlstap
