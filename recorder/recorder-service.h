// The Cap'n Proto servers of the recorder: the Recorder capability a connected front bootstraps,
// and one Flow per proxied connection. They only translate RPC into FlowContract calls, count,
// and log; every check lives in flow-contract.h.
#pragma once

#include <kj/async.h>
#include <kj/function.h>
#include <kj/string.h>
#include <kj/vector.h>

#include "recorder.capnp.h"
#include "recorder/packet-sink.h"

namespace tlstap {

// Shared by every connection of one recorder process.
struct RecorderCounters {
  uint64_t nextFlowId = 1;
  uint64_t flowsOpen = 0;
  uint64_t flowsTotal = 0;
  uint64_t flowsBroken = 0;   // ended by a contract violation
  uint64_t flowsResumed = 0;  // reopened by a front after a lost link
  uint64_t payloadBytes = 0;  // bytes of flows that have ended (closed, broken or dropped)
};

// A Flow.data or Flow.close call returns only once the packets it made are in the kernel (written
// to the pcap file's descriptor), so that a front, which keeps each batch until its call returns,
// loses nothing if this process dies (proto/recorder.capnp). The outputs buffer in user space for
// throughput; this runs their flush once per turn of the event loop for every call answered in
// that turn, so a busy link costs one write per batch, not one per packet.
class WriteBarrier {
public:
  // `flush` hands everything written to the sinks so far to the kernel.
  explicit WriteBarrier(kj::Function<void()> flush) : flush(kj::mv(flush)) {}
  KJ_DISALLOW_COPY(WriteBarrier);

  // Resolves after the next flush, which runs once the current turn's events are done.
  kj::Promise<void> afterFlush();

private:
  void run();

  kj::Function<void()> flush;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> waiting;
  bool pending = false;
  kj::Promise<void> scheduled = nullptr;
};

class RecorderService final : public proto::Recorder::Server {
public:
  // peerName names the front in log lines (e.g. "unix:/run/tlstap.sock" or "fd 3"). Without a
  // barrier, calls return as soon as their packets went to the sink.
  RecorderService(PacketSink& sink, RecorderCounters& counters, kj::String peerName,
                  kj::Maybe<WriteBarrier&> barrier = nullptr);

  kj::Promise<void> openFlow(OpenFlowContext context) override;

private:
  PacketSink& sink;
  RecorderCounters& counters;
  kj::String peerName;
  kj::Maybe<WriteBarrier&> barrier;
};

}  // namespace tlstap
