// The front's side of the recorder link: a FlowRecorder that ships each flow's decrypted bytes to
// tlstap-recorder over Cap'n Proto RPC (proto/recorder.capnp), on the thread's libevent loop
// (common/event-port.h, common/fd-stream.h).
//
// Each flow has a record queue. Appends are copied into it at once and leave it as Flow.data
// batches: a batch carries everything queued (at most `batchBytes`, so many small reads become one
// call), and a flow starts its next batch when the previous call's stream promise resolves, so the
// Cap'n Proto stream window keeps several calls in flight. The queue is bounded per flow and in
// total; over a bound the flow reports full() and the relay stops reading it (DESIGN.md, "Nothing
// lost"). Batches also wait while the link itself has more than `linkQueueBytes` not yet written
// to the socket, so memory stays bounded however many flows share the link.
//
// If the link breaks, one error line is logged; from then on every byte that was queued or is
// appended counts as lost, full() stays false so traffic goes on, and each flow logs
// "N bytes not recorded" when it closes. (Reconnecting is for later: a Link object is the unit
// to replace.)
#pragma once

#include <stdint.h>
#include <kj/async-io.h>

#include "front/flow-recorder.h"

namespace tlstap {

struct RecorderLimits {
  size_t flowQueueBytes = 1 << 20;    // a flow is full above this (and drains at half of it)
  size_t totalQueueBytes = 64 << 20;  // all flows are full above this (drain at three quarters)
  size_t batchBytes = 64 << 10;       // a Flow.data call stops growing at this size
  size_t linkQueueBytes = 4 << 20;    // batches wait while the link holds this much unwritten
};

struct RecorderCounters {
  uint64_t bytesQueued = 0;  // every byte handed to append()
  uint64_t bytesSent = 0;    // bytes put into Flow.data calls
  uint64_t bytesLost = 0;    // bytes that will never be recorded (link down, flow refused)
  uint64_t dataCalls = 0;    // Flow.data calls made
  uint64_t flowsOpened = 0;
  size_t bytesWaiting = 0;   // queued and not yet sent, now
};

class RecorderClient final : public FlowRecorder {
public:
  // `link` is connected to a recorder (wrapSocketFd() over the embedded recorder's socket pair, or
  // a unix or TLS connection). A KjOnLibevent must be current on this thread, and the client must
  // be destroyed before it. RecordedFlows may outlive the client; they then record nothing.
  explicit RecorderClient(kj::Own<kj::AsyncIoStream> link, RecorderLimits limits = {});
  ~RecorderClient() noexcept(false);
  KJ_DISALLOW_COPY(RecorderClient);

  // Never fails: a flow the recorder cannot take is relayed and counted as lost.
  kj::Own<RecordedFlow> openFlow(FlowInfo info) override;

  // Resolves once the recorder has answered the bootstrap request, that is, once it got past its
  // own start-up checks; rejects if the link closed first (an embedded recorder that exited).
  // A link lost before that answer is only reported here, not logged, so that start-up fails
  // with the recorder's own message and the caller's one line.
  kj::Promise<void> whenReady();

  // For shutdown: resolves when every queued byte was sent, every close() the relay made was
  // answered, and the link has nothing left to write; then closes the link. Appends after that
  // count as lost.
  kj::Promise<void> drainAndClose();

  bool linkUp() const;
  RecorderCounters counters() const;

  class Impl;

private:
  kj::Own<Impl> impl;
};

}  // namespace tlstap
