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
  Impl(kj::Timer& timer, kj::Own<RecorderLinkSource> source, RecorderLimits limits);
  ~Impl() noexcept(false);

  kj::Own<RecordedFlow> openFlow(FlowInfo info);
  kj::Promise<void> whenReady();
  kj::Promise<void> drainAndClose();
  bool linkUp() const { return link != nullptr; }
  RecorderClientCounters counters() const;

  // The relay's side (recorder-client.c++).
  void append(FlowState& flow, Side from, int64_t timeUs, kj::ArrayPtr<const kj::byte> bytes);
  void finish(FlowState& flow, Side from, int64_t timeUs);
  void close(FlowState& flow, int64_t timeUs, kj::Maybe<Side> resetBy);
  void handleDropped(FlowState& flow);
  void unlink(FlowState& flow);

private:
  void taskFailed(kj::Exception&& exception) override;

  // Queues a chunk, charging it to the bounds; carries the side's pending skip.
  void queueChunk(FlowState& flow, Side from, bool fin, int64_t timeUs,
                  kj::ArrayPtr<const kj::byte> bytes);
  // PASS with no link: whether `bytes` more would go over a bound (then they are lost).
  bool overBoundWhileDown(FlowState& flow, size_t bytes);
  void countLost(FlowState& flow, size_t bytes);
  void logLoss(FlowState& flow);
  void latchIfFull(FlowState& flow);
  void notifyDrained();
  void releaseChunks(FlowState& flow, uint count);
  void dropQueue(FlowState& flow);
  void retireIfDone(FlowState& flow);
  void checkDrained();

  // The link's side (recorder-client-link.c++).
  void connect();
  void linkUpAt(kj::Own<kj::AsyncIoStream> stream);
  void reconnectLater();
  // Pings the link of `generation` every third of limits.linkTimeout until it is gone; one
  // unanswered for linkTimeout ends it.
  kj::Promise<void> keepAlive(uint64_t generation);
  void linkLost(kj::StringPtr reason);
  void reopen(FlowState& flow);
  void enqueue(FlowState& flow);
  void schedulePump();
  void pump();
  bool canSend(FlowState& flow);
  void sendNext(FlowState& flow);
  void sendData(FlowState& flow, proto::Flow::Client& remote);
  void sendClose(FlowState& flow, proto::Flow::Client& remote);
  void dataAnswered(FlowState& flow, uint64_t batch);
  void callFailed(FlowState& flow, kj::Exception&& exception);
  void flowRefused(FlowState& flow, kj::StringPtr reason);
  size_t linkBacklog();

  // Follows one RPC call of a flow. Answers from a link that is gone by then are ignored.
  enum class Call { OPEN, DATA, CLOSE };
  void track(FlowState& flow, kj::Promise<void> call, Call kind, uint64_t batch = 0);

  kj::Timer& timer;
  kj::Own<RecorderLinkSource> source;
  RecorderLimits limits;
  kj::Maybe<kj::Own<RecorderLink>> link;
  uint64_t linkGeneration = 0;  // bumped when a link goes away: its late answers are ignored
  bool closing = false;         // drainAndClose() was called
  bool closed = false;          // drainAndClose() closed the link: no reconnecting
  bool answered = false;        // the first recorder answered the bootstrap request
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> firstAnswer;  // whenReady()
  kj::Maybe<kj::ForkedPromise<void>> firstAnswerPromise;
  kj::Duration backoff;         // before the next connection attempt
  kj::Maybe<kj::TimePoint> downSince;  // when the link was lost, until a new one answers
  kj::Maybe<kj::String> lastFailure;   // the last connect failure logged, to log each once
  bool reconnectPending = false;       // a connection attempt or its timer is under way
  kj::HashMap<uint64_t, kj::Own<FlowState>> flows;  // every flow with a handle or work left
  uint64_t nextFlowId = 0;
  kj::List<FlowState, &FlowState::readyLink> ready;   // flows with something to send, FIFO
  kj::List<FlowState, &FlowState::fullLink> fullFlows;  // flows that reported full()
  size_t totalCharge = 0;
  PayloadPool payloads;
  RecorderClientCounters stats;
  bool pumpScheduled = false;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> drained;
  kj::TaskSet tasks;  // last: destroyed first, so no continuation runs on a half-destroyed client
};

}  // namespace tlstap
