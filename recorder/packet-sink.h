// Where synthesized packets go. The TCP synthesizer writes Ethernet frames into a PacketSink;
// the recorder fans them out to the pcap file writer and to PCAP-over-IP consumers.
#pragma once

#include <stdint.h>
#include <kj/array.h>
#include <kj/common.h>
#include <kj/vector.h>

namespace tlstap {

class PacketSink {
public:
  virtual ~PacketSink() noexcept(false) = default;
  // One Ethernet frame stamped timeUs (microseconds since the Unix epoch, UTC). The frame is
  // only valid during the call; a sink that keeps it copies it.
  virtual void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) = 0;
};

// Hands every packet to each of several sinks, in the order they were added.
class FanOutSink final : public PacketSink {
public:
  void add(PacketSink& sink) { sinks.add(&sink); }
  void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) override {
    for (auto sink : sinks) sink->writePacket(timeUs, frame);
  }

private:
  kj::Vector<PacketSink*> sinks;
};

}  // namespace tlstap
