// Where synthesized packets go. The TCP synthesizer writes Ethernet frames into a PacketSink;
// the recorder fans them out to the pcap file writer and to PCAP-over-IP consumers.
#pragma once

#include <stdint.h>
#include <kj/array.h>
#include <kj/async.h>
#include <kj/common.h>
#include <kj/vector.h>

namespace tlstap {

class PacketSink {
public:
  virtual ~PacketSink() noexcept(false) = default;
  // One Ethernet frame stamped timeUs (microseconds since the Unix epoch, UTC). The frame is
  // only valid during the call; a sink that keeps it copies it.
  virtual void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) = 0;
  // Resolves once every packet written so far is stored for good: handed to the kernel by a file
  // writer (which waits while its disk is full), at once for a sink that stores nothing. The
  // recorder acknowledges a front's data only then.
  virtual kj::Promise<void> whenWritten() { return kj::READY_NOW; }
};

// Hands every packet to each of several sinks, in the order they were added.
class FanOutSink final : public PacketSink {
public:
  void add(PacketSink& sink) { sinks.add(&sink); }
  void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) override {
    for (auto sink : sinks) sink->writePacket(timeUs, frame);
  }
  kj::Promise<void> whenWritten() override {
    if (sinks.size() == 1) return sinks[0]->whenWritten();
    auto waits = kj::heapArrayBuilder<kj::Promise<void>>(sinks.size());
    for (auto sink : sinks) waits.add(sink->whenWritten());
    return kj::joinPromises(waits.finish());
  }

private:
  kj::Vector<PacketSink*> sinks;
};

}  // namespace tlstap
