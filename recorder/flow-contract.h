// The recorder's side of the contract in proto/recorder.capnp, without any RPC: checks every
// field a front sends and turns the calls of one flow into TCP synthesis. A violation ends the
// flow (every later call is refused too); the recorder and every other flow go on.
#pragma once

#include <kj/string.h>

#include "recorder.capnp.h"
#include "recorder/packet-sink.h"
#include "recorder/tcp-synth.h"

namespace tlstap {

// Where a reopened flow continues (proto::Resume), checked.
struct FlowResume {
  uint64_t offset[2] = {0, 0};  // indexed by Side
  bool fin[2] = {false, false};
};

// Checks a FlowMeta and fills the endpoints as they will appear in the capture, and `resume` if
// the front reopens a flow. Returns the reason the metadata is invalid, or nullptr.
kj::Maybe<kj::String> checkFlowMeta(proto::FlowMeta::Reader meta, FlowEndpoints& endpoints,
                                    kj::Maybe<FlowResume>& resume);

// "client 1.2.3.4:5555 -> server 5.6.7.8:80" for log lines.
kj::String describeEndpoints(const FlowEndpoints& endpoints);

class FlowContract {
public:
  // Writes the TCP handshake at startTimeUs, or for a resumed flow nothing: its sequence numbers
  // continue from `resume`.
  FlowContract(const FlowEndpoints& endpoints, int64_t startTimeUs, PacketSink& sink,
               kj::Maybe<const FlowResume&> resume = nullptr);

  // Applies a batch chunk by chunk. A bad chunk ends the flow: the chunks before it are
  // recorded, it and everything after are not. Returns the violation, or nullptr.
  kj::Maybe<kj::String> data(capnp::List<proto::Chunk>::Reader chunks);
  kj::Maybe<kj::String> close(proto::Close::Reader how);

  bool ended() const { return state != State::OPEN; }
  uint64_t payloadBytes() const;

private:
  enum class State { OPEN, CLOSED, BROKEN };

  kj::Maybe<kj::String> checkTime(int64_t timeUs, kj::StringPtr what);
  kj::Maybe<kj::String> applyChunk(proto::Chunk::Reader chunk);
  kj::Maybe<kj::String> fail(kj::String reason);

  TcpSynthesizer synth;
  int64_t lastTimeUs;
  State state = State::OPEN;
};

}  // namespace tlstap
