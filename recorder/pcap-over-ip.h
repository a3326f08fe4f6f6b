// PCAP-over-IP: live consumers (Wireshark, tshark, Arkime, Zeek, ...) read a classic pcap stream
// from a TCP connection, either one they open to us (--pcapoverip) or one we open to them
// (--pcapoveripconnect). Each consumer gets the pcap global header, then every packet from the
// moment it connected.
//
// The recording must never wait for a consumer: each one has its own bounded queue, and a
// consumer whose queue would overflow is disconnected with a log line instead of slowing the
// proxy or the other consumers. Records are written by hand because libpcap's pcap_dump() on a
// socket loses data silently.
//
// Everything, writePacket() included, runs on the thread of the KJ event loop that created it
// (kj::setupAsyncIo()). The promises returned by acceptFrom(), connectTo() and drain() refer to
// this object: destroy them before it.
#pragma once

#include <stdint.h>
#include <kj/async-io.h>
#include <kj/time.h>
#include <kj/vector.h>

#include "recorder/packet-sink.h"

namespace tlstap {

class PcapOverIp final : public PacketSink, private kj::TaskSet::ErrorHandler {
public:
  // consumerBufferLimit: bytes queued per consumer before it is cut off as too slow.
  explicit PcapOverIp(kj::Timer& timer, size_t consumerBufferLimit = 32u << 20);
  // Closes every consumer; anything still queued is dropped (call drain() first to avoid that).
  ~PcapOverIp() noexcept(false);
  KJ_DISALLOW_COPY(PcapOverIp);

  // Serves every consumer that connects to `listener` (--pcapoverip). Runs until cancelled;
  // cancelling stops accepting but leaves the consumers already connected served.
  kj::Promise<void> acceptFrom(kj::Own<kj::ConnectionReceiver> listener);

  // --pcapoveripconnect HOST:PORT: connects out to `address` (HOST resolved once, at start-up:
  // after lock-down the resolver's files and threads are out of reach; each of its addresses is
  // tried in turn), and reconnects with exponential backoff whenever the connection fails or
  // closes. `name` is HOST:PORT as given, for log lines. Runs until cancelled; cancelling stops
  // reconnecting but leaves a live connection served.
  kj::Promise<void> connectTo(kj::Own<kj::NetworkAddress> address, kj::String name);

  // The reconnect delay starts at `initial` and doubles up to `max` (default 1 s and 30 s).
  // Affects connectTo() loops started afterwards.
  void setReconnectBackoff(kj::Duration initial, kj::Duration max);

  // Appends one pcap record (16-byte header + frame) to every consumer's queue. Never blocks,
  // never throws; costs one branch when nobody is connected.
  void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) override;

  // At shutdown: resolves when every consumer's queue has been written out, or after timeout.
  kj::Promise<void> drain(kj::Duration timeout);

  // Consumers currently receiving packets.
  size_t consumerCount() const;
  // Consumers disconnected for being too slow, since the start.
  uint64_t droppedCount() const { return dropped; }

  // Most consumers accepted from listeners at once; more are refused with a log line, so that a
  // flood of connections cannot make us queue up to consumerBufferLimit for each.
  static constexpr size_t MAX_ACCEPTED_CONSUMERS = 64;

private:
  class Consumer;
  struct ConnectTarget;

  kj::Timer& timer;
  const size_t bufferLimit;
  kj::Duration initialBackoff;
  kj::Duration maxBackoff;

  // Consumers that get packets. Not owning: each consumer lives in `tasks` and removes itself
  // from here when it ends or is cut off. A vector because writePacket walks it for every packet.
  kj::Vector<Consumer*> active;
  size_t acceptedCount = 0;
  uint64_t dropped = 0;

  // Declared last so that it is destroyed first: consumers' destructors still use the members
  // above.
  kj::TaskSet tasks;

  // Starts serving `stream` and returns a promise that resolves when that consumer has ended.
  kj::Promise<void> addConsumer(kj::Own<kj::AsyncIoStream> stream, kj::String name,
                                bool accepted);
  void deactivate(Consumer& consumer);
  kj::Promise<void> acceptLoop(kj::ConnectionReceiver& listener);
  kj::Promise<void> connectLoop(ConnectTarget& target);
  kj::Promise<void> retryLater(ConnectTarget& target);
  void taskFailed(kj::Exception&& exception) override;
};

}  // namespace tlstap
