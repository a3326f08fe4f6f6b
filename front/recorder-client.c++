#include "recorder-client.h"

#include <kj/debug.h>

#include "front/recorder-client-impl.h"

namespace tlstap {

// ---------------------------------------------------------------------------------------------

// What the relay holds. Every entry point catches: the relay calls from libevent callbacks.
class FlowHandle final : public RecordedFlow {
public:
  explicit FlowHandle(kj::Own<FlowState> state) : state(kj::mv(state)) {}
  ~FlowHandle() noexcept(false) {
    KJ_IF_MAYBE(c, state->client) {
      logFailure("dropping a flow", [&]() { c->handleDropped(*state); });
    }
  }

  void append(Side from, int64_t timeUs, kj::ArrayPtr<const kj::byte> bytes) override {
    KJ_IF_MAYBE(c, state->client) {
      logFailure("append", [&]() { c->append(*state, from, timeUs, bytes); });
    }
  }
  void finish(Side from, int64_t timeUs) override {
    KJ_IF_MAYBE(c, state->client) {
      logFailure("finish", [&]() { c->finish(*state, from, timeUs); });
    }
  }
  void close(int64_t timeUs, kj::Maybe<Side> resetBy) override {
    KJ_IF_MAYBE(c, state->client) {
      logFailure("close", [&]() { c->close(*state, timeUs, resetBy); });
    }
  }
  bool full() const override { return state->latchedFull; }
  void setOnDrain(kj::Function<void()> callback) override { state->onDrain = kj::mv(callback); }

private:
  kj::Own<FlowState> state;
};

// ---------------------------------------------------------------------------------------------

RecorderClient::Impl::Impl(kj::Own<kj::AsyncIoStream> connection, RecorderLimits limits)
    : limits(limits), tasks(*this) {
  auto newLink = kj::heap<RecorderLink>(kj::mv(connection), [this]() {
    // A write finished: batches held back by the link's backlog may go, and a drain may be done.
    if (!ready.empty() || drained != nullptr) schedulePump();
  });
  uint64_t generation = linkGeneration;
  tasks.add(newLink->onDisconnect().then([this, generation]() {
    if (generation == linkGeneration) linkLost("the recorder closed the connection");
  }));
  tasks.add(newLink->recorder().whenResolved().then(
      [this]() { answered = true; },
      [](kj::Exception&&) {
        // Reported by whenReady() and by the calls that fail with it.
      }));
  link = kj::mv(newLink);
}

RecorderClient::Impl::~Impl() noexcept(false) {
  // Handles may outlive the client: they must find no client rather than a dangling one.
  for (auto& entry : flows) {
    unlink(*entry.value);
    entry.value->client = nullptr;
  }
}

void RecorderClient::Impl::taskFailed(kj::Exception&& exception) {
  logError("recorder client: ", exception.getDescription());
}

kj::Own<RecordedFlow> RecorderClient::Impl::openFlow(FlowInfo info) {
  uint64_t id = nextFlowId++;
  auto state = kj::refcounted<FlowState>(
      *this, id, kj::str(info.client.toString(), " -> ", info.server.toString()),
      info.startTimeUs);
  ++stats.flowsOpened;
  KJ_IF_MAYBE(l, link) {
    logFailure("opening a flow", [&]() {
      auto request = (*l)->recorder().openFlowRequest();
      fillFlowMeta(request.initMeta(), info);
      auto response = request.send();
      // Pipelined: data calls go out before the answer. The answer itself is only awaited to
      // report a refusal at once rather than at the first data call.
      state->remote = response.getFlow();
      track(*state, response.ignoreResult(), Call::OPEN);
    });
  }
  flows.insert(id, kj::addRef(*state));
  return kj::heap<FlowHandle>(kj::mv(state));
}

kj::Promise<void> RecorderClient::Impl::whenReady() {
  KJ_IF_MAYBE(l, link) {
    return (*l)->recorder().whenResolved();
  }
  return KJ_EXCEPTION(DISCONNECTED, "the recorder link is down");
}

kj::Promise<void> RecorderClient::Impl::drainAndClose() {
  closing = true;
  if (link == nullptr) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  drained = kj::mv(paf.fulfiller);
  checkDrained();
  return kj::mv(paf.promise);
}

RecorderCounters RecorderClient::Impl::counters() const { return stats; }

// ---------------------------------------------------------------------------------------------
// What the relay hands in.

void RecorderClient::Impl::append(FlowState& flow, Side from, int64_t timeUs,
                                  kj::ArrayPtr<const kj::byte> bytes) {
  if (bytes.size() == 0) return;
  stats.bytesQueued += bytes.size();
  if (flow.closeQueued || flow.finished[static_cast<int>(from)]) {
    // A relay bug; sending it would make the recorder end the whole flow.
    logWarning("flow ", flow.name, ": ", bytes.size(), " bytes from the ", sideName(from),
               " after its end; not recorded");
    countLost(flow, bytes.size());
    return;
  }
  if (flow.remote == nullptr) {
    countLost(flow, bytes.size());
    return;
  }
  timeUs = flow.clampTime(timeUs);
  while (bytes.size() > 0) {
    size_t size = kj::min(bytes.size(), size_t(proto::MAX_CHUNK_BYTES));
    auto chunk = kj::heap<PendingChunk>();
    chunk->side = from;
    chunk->fin = false;
    chunk->timeUs = timeUs;
    chunk->storage = payloads.copy(bytes.slice(0, size));
    chunk->size = size;
    flow.waitingCharge += chunk->charge();
    totalCharge += chunk->charge();
    flow.waitingBytes += size;
    stats.bytesWaiting += size;
    flow.push(kj::mv(chunk));
    bytes = bytes.slice(size, bytes.size());
  }
  enqueue(flow);
  latchIfFull(flow);
}

void RecorderClient::Impl::finish(FlowState& flow, Side from, int64_t timeUs) {
  int side = static_cast<int>(from);
  if (flow.closeQueued || flow.finished[side]) return;
  flow.finished[side] = true;
  if (flow.remote == nullptr) return;
  auto chunk = kj::heap<PendingChunk>();
  chunk->side = from;
  chunk->fin = true;
  chunk->timeUs = flow.clampTime(timeUs);
  flow.waitingCharge += chunk->charge();
  totalCharge += chunk->charge();
  flow.push(kj::mv(chunk));
  enqueue(flow);
}

void RecorderClient::Impl::close(FlowState& flow, int64_t timeUs, kj::Maybe<Side> resetBy) {
  if (flow.closeQueued) return;
  flow.closeQueued = true;
  flow.closeTimeUs = flow.clampTime(timeUs);
  flow.resetBy = resetBy;
  if (flow.remote == nullptr) {
    logLoss(flow);
    return;
  }
  enqueue(flow);
}

void RecorderClient::Impl::handleDropped(FlowState& flow) {
  flow.handleGone = true;
  if (flow.fullLink.isLinked()) fullFlows.remove(flow);
  flow.latchedFull = false;
  // Without close() the connection stays open in the capture (as in a cut capture); what is
  // queued is still sent.
  if (flow.remote == nullptr) logLoss(flow);
  retireIfDone(flow);
}

void RecorderClient::Impl::unlink(FlowState& flow) {
  if (flow.readyLink.isLinked()) ready.remove(flow);
  if (flow.fullLink.isLinked()) fullFlows.remove(flow);
}

// ---------------------------------------------------------------------------------------------
// Backpressure and shutdown.

void RecorderClient::Impl::latchIfFull(FlowState& flow) {
  if (flow.latchedFull || flow.handleGone) return;
  if (flow.waitingCharge > limits.flowQueueBytes || totalCharge > limits.totalQueueBytes) {
    flow.latchedFull = true;
    fullFlows.add(flow);
  }
}


void RecorderClient::Impl::notifyDrained() {
  // Hysteresis: a flow reads again once its queue is down to half its bound and the total to
  // three quarters, so the relay does not flap between reading and waiting on every batch.
  if (fullFlows.empty() || totalCharge > limits.totalQueueBytes / 4 * 3) return;
  kj::Vector<kj::Own<FlowState>> released;
  for (auto& flow : fullFlows) {
    if (flow.waitingCharge <= limits.flowQueueBytes / 2) released.add(kj::addRef(flow));
  }
  for (auto& flow : released) {
    fullFlows.remove(*flow);
    flow->latchedFull = false;
  }
  for (auto& flow : released) {
    if (flow->handleGone) continue;
    KJ_IF_MAYBE(callback, flow->onDrain) {
      logFailure("drain callback", [&]() { (*callback)(); });
    }
  }
}

void RecorderClient::Impl::retireIfDone(FlowState& flow) {
  // A flow leaves the table once the relay let go of it and nothing is left to send or answer.
  if (!flow.handleGone || flow.sending || flow.head != nullptr) return;
  if (flow.closeQueued && flow.remote != nullptr) return;  // the close is still to go or answer
  flow.remote = nullptr;  // dropped without close: release the capability
  unlink(flow);
  flows.erase(flow.id);
}

void RecorderClient::Impl::checkDrained() {
  KJ_IF_MAYBE(fulfiller, drained) {
    if (link != nullptr) {
      for (auto& entry : flows) {
        auto& flow = *entry.value;
        if (flow.sending || flow.head != nullptr) return;
        if (flow.closeQueued && flow.remote != nullptr) return;
      }
      if (linkBacklog() > 0) return;
    }
    (*fulfiller)->fulfill();
    drained = nullptr;
    linkLost("closed after draining");
  }
}

size_t RecorderClient::Impl::linkBacklog() {
  KJ_IF_MAYBE(l, link) return (*l)->backlog();
  return 0;
}

// ---------------------------------------------------------------------------------------------

RecorderClient::RecorderClient(kj::Own<kj::AsyncIoStream> link, RecorderLimits limits)
    : impl(kj::heap<Impl>(kj::mv(link), limits)) {}
RecorderClient::~RecorderClient() noexcept(false) {}
kj::Own<RecordedFlow> RecorderClient::openFlow(FlowInfo info) {
  return impl->openFlow(kj::mv(info));
}
kj::Promise<void> RecorderClient::whenReady() { return impl->whenReady(); }
kj::Promise<void> RecorderClient::drainAndClose() { return impl->drainAndClose(); }
bool RecorderClient::linkUp() const { return impl->linkUp(); }
RecorderCounters RecorderClient::counters() const { return impl->counters(); }

}  // namespace tlstap
