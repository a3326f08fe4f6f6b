// RecorderClient's implementation, shared by recorder-client.c++ (the relay's side: flows,
// appends, backpressure, shutdown) and recorder-client-link.c++ (the link's side: sending, answers,
// losses).
#pragma once

#include <kj/async.h>
#include <kj/map.h>

#include "common/log.h"
#include "front/record-queue.h"
#include "front/recorder-client.h"
#include "front/recorder-link.h"

namespace tlstap {

inline proto::Direction toDirection(Side side) {
  return side == Side::CLIENT ? proto::Direction::CLIENT_TO_SERVER
                              : proto::Direction::SERVER_TO_CLIENT;
}

template <typename Func>
void logFailure(kj::StringPtr what, Func&& func) {
  // The relay calls in from libevent callbacks: nothing may unwind into them.
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions(kj::fwd<Func>(func))) {
    logError("recorder client: ", what, ": ", exception->getDescription());
  }
}

class RecorderClient::Impl final : private kj::TaskSet::ErrorHandler {
public:
  Impl(kj::Own<kj::AsyncIoStream> connection, RecorderLimits limits);
  ~Impl() noexcept(false);

  kj::Own<RecordedFlow> openFlow(FlowInfo info);
  kj::Promise<void> whenReady();
  kj::Promise<void> drainAndClose();
  bool linkUp() const { return link != nullptr; }
  RecorderCounters counters() const;

  void append(FlowState& flow, Side from, int64_t timeUs, kj::ArrayPtr<const kj::byte> bytes);
  void finish(FlowState& flow, Side from, int64_t timeUs);
  void close(FlowState& flow, int64_t timeUs, kj::Maybe<Side> resetBy);
  void handleDropped(FlowState& flow);
  void unlink(FlowState& flow);

private:
  void taskFailed(kj::Exception&& exception) override;
  void enqueue(FlowState& flow);
  void schedulePump();
  void pump();
  void sendNext(FlowState& flow);
  void sendData(FlowState& flow, proto::Flow::Client& remote);
  void sendClose(FlowState& flow, proto::Flow::Client& remote);
  void callDone(FlowState& flow);
  void callFailed(FlowState& flow, kj::Exception&& exception);
  void flowRefused(FlowState& flow, kj::StringPtr reason);
  void linkLost(kj::StringPtr reason);
  void dropQueue(FlowState& flow);
  void countLost(FlowState& flow, size_t bytes);
  void logLoss(FlowState& flow);
  void latchIfFull(FlowState& flow);
  void notifyDrained();
  void retireIfDone(FlowState& flow);
  void checkDrained();
  size_t linkBacklog();

  // Follows one RPC call of a flow: the openFlow answer, a data call's stream promise (the flow
  // is `sending` until it resolves) or the close answer. Answers from a link that is gone by then
  // are ignored.
  enum class Call { OPEN, DATA, CLOSE };
  void track(FlowState& flow, kj::Promise<void> call, Call kind);

  RecorderLimits limits;
  kj::Maybe<kj::Own<RecorderLink>> link;
  uint64_t linkGeneration = 0;  // bumped when a link goes away: its late answers are ignored
  bool closing = false;         // drainAndClose() was called: the link closing is no error
  bool answered = false;        // the recorder answered the bootstrap request
  kj::HashMap<uint64_t, kj::Own<FlowState>> flows;  // every flow with a handle or work left
  uint64_t nextFlowId = 0;
  kj::List<FlowState, &FlowState::readyLink> ready;   // flows with something to send, FIFO
  kj::List<FlowState, &FlowState::fullLink> fullFlows;  // flows that reported full()
  size_t totalCharge = 0;
  PayloadPool payloads;
  RecorderCounters stats;
  bool pumpScheduled = false;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> drained;
  kj::TaskSet tasks;  // last: destroyed first, so no continuation runs on a half-destroyed client
};

}  // namespace tlstap
