// The Cap'n Proto servers of the recorder: the Recorder capability a connected front bootstraps,
// and one Flow per proxied connection. They only translate RPC into FlowContract calls, count,
// and log; every check lives in flow-contract.h.
#pragma once

#include <kj/string.h>

#include "recorder.capnp.h"
#include "recorder/packet-sink.h"

namespace tlstap {

// The flows the recorder received, shared by every front connection of one recorder process.
// (What reached the files is counted by the pcap writer.)
struct FlowCounters {
  uint64_t nextFlowId = 1;
  uint64_t flowsOpen = 0;
  uint64_t flowsTotal = 0;
  uint64_t flowsBroken = 0;   // ended by a contract violation
  uint64_t flowsResumed = 0;  // reopened by a front after a lost link
  uint64_t payloadBytes = 0;  // bytes of flows that have ended (closed, broken or dropped)
};

class RecorderService final : public proto::Recorder::Server {
public:
  // peerName names the front in log lines (e.g. "unix:/run/tlstap.sock" or "fd 3").
  RecorderService(PacketSink& sink, FlowCounters& counters, kj::String peerName);

  kj::Promise<void> openFlow(OpenFlowContext context) override;
  // The front's keepalive: answered at once (the default does, but saying so is the point).
  kj::Promise<void> ping(PingContext) override { return kj::READY_NOW; }

private:
  PacketSink& sink;
  FlowCounters& counters;
  kj::String peerName;
};

}  // namespace tlstap
