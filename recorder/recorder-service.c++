#include "recorder-service.h"

#include <kj/debug.h>

#include "common/log.h"
#include "recorder/flow-contract.h"

namespace tlstap {

namespace {

class FlowService final : public proto::Flow::Server {
public:
  FlowService(uint64_t id, const FlowEndpoints& endpoints, int64_t startTimeUs,
              kj::Maybe<const FlowResume&> resume, PacketSink& sink, RecorderCounters& counters,
              kj::StringPtr peerName, kj::Maybe<WriteBarrier&> barrier)
      : id(id), description(describeEndpoints(endpoints)), peerName(kj::heapString(peerName)),
        counters(counters), barrier(barrier), contract(endpoints, startTimeUs, sink, resume) {
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
    return check(contract.data(context.getParams().getChunks()));
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
    KJ_IF_MAYBE(b, barrier) return b->afterFlush();
    return kj::READY_NOW;
  }

  uint64_t id;
  kj::String description;
  kj::String peerName;  // a copy: the flow may outlive the connection's Recorder capability
  RecorderCounters& counters;
  kj::Maybe<WriteBarrier&> barrier;
  FlowContract contract;
  bool loggedViolation = false;
};

}  // namespace

kj::Promise<void> WriteBarrier::afterFlush() {
  auto paf = kj::newPromiseAndFulfiller<void>();
  waiting.add(kj::mv(paf.fulfiller));
  if (!pending) {
    // evalLater, not evalLast: under a steady stream the queue never runs dry, and the answers
    // must not wait for it to.
    pending = true;
    scheduled = kj::evalLater([this]() { run(); }).eagerlyEvaluate(nullptr);
  }
  return kj::mv(paf.promise);
}

void WriteBarrier::run() {
  pending = false;
  auto callers = kj::mv(waiting);
  waiting = kj::Vector<kj::Own<kj::PromiseFulfiller<void>>>();
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { flush(); })) {
    for (auto& caller : callers) caller->reject(kj::cp(*exception));
    return;
  }
  for (auto& caller : callers) caller->fulfill();
}

RecorderService::RecorderService(PacketSink& sink, RecorderCounters& counters,
                                 kj::String peerName, kj::Maybe<WriteBarrier&> barrier)
    : sink(sink), counters(counters), peerName(kj::mv(peerName)), barrier(barrier) {}

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
                                                     sink, counters, peerName, barrier));
  // The front reopens a flow whose open was answered as resumed: answer once the handshake is in
  // the kernel. Calls on the flow are pipelined and need not wait for this.
  KJ_IF_MAYBE(b, barrier) return b->afterFlush();
  return kj::READY_NOW;
}

}  // namespace tlstap
