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
// A chunk stays queued (and charged to the bounds) until the recorder acknowledges it: its
// Flow.data call returned, which the recorder does once the packets are in the kernel. If the link
// breaks, one line is logged and the client asks its RecorderLinkSource for a new link with
// backoff (100 ms doubling to 5 s); on the new link every flow still open is reopened where the
// recorder's acknowledgements left it (FlowMeta.resume: same addresses, sequence numbers going
// on) and everything unacknowledged is sent again, so a restarted recorder loses nothing.
//
// While there is no link the queues keep filling up to their bounds. Past a bound,
// RecorderDown::BLOCK keeps the flow full() (the relay stops reading it until the recorder is
// back); RecorderDown::PASS relays on and counts the bytes it cannot keep as lost, per flow (one
// log line when the flow ends); the recording then shows the gap: the sequence numbers jump over
// the lost bytes (Chunk.skip), which analysers report as "previous segment not captured".
#pragma once

#include <stdint.h>
#include <kj/async-io.h>

#include "front/flow-recorder.h"
#include "front/front-options.h"
#include "front/recorder-link-source.h"

namespace tlstap {

struct RecorderLimits {
  size_t flowQueueBytes = 1 << 20;    // a flow is full above this (and drains at half of it)
  size_t totalQueueBytes = 64 << 20;  // all flows are full above this (drain at three quarters)
  size_t batchBytes = 64 << 10;       // a Flow.data call stops growing at this size
  size_t linkQueueBytes = 4 << 20;    // batches wait while the link holds this much unwritten
  uint32_t callsInFlight = 4;         // data calls per flow awaiting the recorder's answer
  kj::Duration reconnectFirst = 100 * kj::MILLISECONDS;  // backoff after a lost link, doubling
  kj::Duration reconnectMax = 5 * kj::SECONDS;
  RecorderDown whenDown = RecorderDown::BLOCK;  // past a bound while there is no link
  // A link whose recorder leaves a ping unanswered this long is given up (common/link-timeout.h).
  kj::Duration linkTimeout = DEFAULT_LINK_TIMEOUT_SECONDS * kj::SECONDS;
};

// What the front's recorder client handed to the recorder, and what came of it.
struct RecorderClientCounters {
  uint64_t bytesQueued = 0;    // every byte handed to append()
  uint64_t bytesSent = 0;      // bytes put into Flow.data calls, resent ones again
  uint64_t bytesRecorded = 0;  // bytes the recorder acknowledged
  uint64_t bytesLost = 0;      // bytes that will never be recorded (pass mode, flow refused)
  uint64_t dataCalls = 0;      // Flow.data calls made
  uint64_t flowsOpened = 0;
  uint64_t linksLost = 0;      // links that broke (not closed by drainAndClose)
  uint64_t flowsResumed = 0;   // flows reopened on a new link
  size_t bytesWaiting = 0;     // queued and not yet acknowledged, now
};

class RecorderClient final : public FlowRecorder {
public:
  // Asks `source` for its first link at once. A KjOnLibevent must be current on this thread (its
  // timer is `timer`), and the client must be destroyed before it. RecordedFlows may outlive the
  // client; they then record nothing. Destroying the client counts what is still queued as lost.
  RecorderClient(kj::Timer& timer, kj::Own<RecorderLinkSource> source,
                 RecorderLimits limits = {});
  ~RecorderClient() noexcept(false);
  KJ_DISALLOW_COPY(RecorderClient);

  // Never fails: a flow the recorder cannot take is relayed and counted as lost.
  kj::Own<RecordedFlow> openFlow(FlowInfo info) override;

  // Resolves once the first link's recorder has answered the bootstrap request, that is, once it
  // got past its own start-up checks; rejects if the first link could not be opened or closed
  // before that (an embedded recorder that exited). A first link lost before that answer is only
  // reported here, not logged, so that start-up fails with the recorder's own message and the
  // caller's one line.
  kj::Promise<void> whenReady();

  // For shutdown: resolves when the recorder acknowledged every queued byte and answered every
  // close() the relay made; then closes the link. While there is no link it keeps reconnecting:
  // the caller bounds the wait. Appends after that count as lost.
  kj::Promise<void> drainAndClose();

  bool linkUp() const;
  RecorderClientCounters counters() const;

  class Impl;

private:
  kj::Own<Impl> impl;
};

}  // namespace tlstap
