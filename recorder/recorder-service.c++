#include "recorder-service.h"

#include <kj/debug.h>

#include "common/log.h"
#include "recorder/flow-contract.h"

namespace tlstap {

namespace {

class FlowService final : public proto::Flow::Server {
public:
  FlowService(uint64_t id, const FlowEndpoints& endpoints, int64_t startTimeUs,
              kj::Maybe<const FlowResume&> resume, PacketSink& sink, FlowCounters& counters,
              kj::StringPtr peerName)
      : id(id), description(describeEndpoints(endpoints)), peerName(kj::heapString(peerName)),
        counters(counters), sink(sink), contract(endpoints, startTimeUs, sink, resume) {
    counters.flowsOpen++;
    counters.flowsTotal++;
    if (resume != nullptr) counters.flowsResumed++;
    logDebug("flow ", id, resume == nullptr ? " opened: " : " resumed: ", description);
  }

  ~FlowService() noexcept(false) {
    counters.flowsOpen--;
    counters.payloadBytes += contract.payloadBytes();
    if (!contract.ended()) {
      logDebug("flow ", id, " dropped by ", peerName, " without close: ", description);
    }
  }

  kj::Promise<void> data(DataContext context) override {
    auto violation = contract.data(context.getParams().getChunks());
    if (violation != nullptr) return check(kj::mv(violation));
    // Backpressure: while the disk is full the call stays open, so the front slows down
    // instead of losing data.
    return sink.whenWritten();
  }

  kj::Promise<void> close(CloseContext context) override {
    auto result = check(contract.close(context.getParams().getHow()));
    logDebug("flow ", id, " closed, ", contract.payloadBytes(), " bytes: ", description);
    return result;
  }

private:
  // A violation is logged once, when it ends the flow; the caller gets an exception, so its
  // stream of calls on this flow fails while its other flows go on.
  kj::Promise<void> check(kj::Maybe<kj::String> violation) {
    KJ_IF_MAYBE(reason, violation) {
      if (!loggedViolation) {
        loggedViolation = true;
        counters.flowsBroken++;
        logError("flow ", id, " from ", peerName, " broke the contract (", *reason,
                 "); flow ended: ", description);
      }
      return KJ_EXCEPTION(FAILED, kj::str("tlstap-recorder refused flow ", id, ": ", *reason));
    }
    // The front forgets what an answered call carried: answer once it is in the kernel.
    return sink.whenWritten();
  }

  uint64_t id;
  kj::String description;
  kj::String peerName;  // a copy: the flow may outlive the connection's Recorder capability
  FlowCounters& counters;
  PacketSink& sink;
  FlowContract contract;
  bool loggedViolation = false;
};

}  // namespace

RecorderService::RecorderService(PacketSink& sink, FlowCounters& counters,
                                 kj::String peerName)
    : sink(sink), counters(counters), peerName(kj::mv(peerName)) {}

kj::Promise<void> RecorderService::openFlow(OpenFlowContext context) {
  auto meta = context.getParams().getMeta();
  FlowEndpoints endpoints;
  kj::Maybe<FlowResume> resume;
  KJ_IF_MAYBE(reason, checkFlowMeta(meta, endpoints, resume)) {
    counters.flowsBroken++;
    logError("front ", peerName, " opened a flow with bad metadata (", *reason, "); refused");
    return KJ_EXCEPTION(FAILED, kj::str("tlstap-recorder refused flow: ", *reason));
  }
  auto id = counters.nextFlowId++;
  context.getResults().setFlow(kj::heap<FlowService>(id, endpoints, meta.getStartTimeUs(), resume,
                                                     sink, counters, peerName));
  // The front reopens a flow whose open was answered as resumed: answer once the handshake is in
  // the kernel. Calls on the flow are pipelined and need not wait for this.
  return sink.whenWritten();
}

}  // namespace tlstap
