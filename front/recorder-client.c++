#include "recorder-client.h"

#include <kj/debug.h>

#include "front/recorder-client-impl.h"

namespace tlstap {

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

RecorderClient::Impl::Impl(kj::Timer& timer, kj::Own<RecorderLinkSource> source,
                           RecorderLimits limits)
    : timer(timer), source(kj::mv(source)), limits(limits), backoff(limits.reconnectFirst),
      tasks(*this) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  firstAnswer = kj::mv(paf.fulfiller);
  firstAnswerPromise = paf.promise.fork();
  reconnectPending = true;
  connect();
}

RecorderClient::Impl::~Impl() noexcept(false) {
  for (auto& entry : flows) {
    auto& flow = *entry.value;
    // Never acknowledged (shutdown gave up waiting for the recorder): lost.
    if (!flow.refused && flow.waitingBytes > 0) countLost(flow, flow.waitingBytes);
    logLoss(flow);
    // Handles may outlive the client: they must find no client rather than a dangling one.
    unlink(flow);
    flow.client = nullptr;
  }
}

void RecorderClient::Impl::taskFailed(kj::Exception&& exception) {
  logError("recorder client: ", exception.getDescription());
}

kj::Own<RecordedFlow> RecorderClient::Impl::openFlow(FlowInfo info) {
  uint64_t id = nextFlowId++;
  auto state = kj::refcounted<FlowState>(*this, id, kj::mv(info));
  ++stats.flowsOpened;
  flows.insert(id, kj::addRef(*state));
  // Without a link it is opened on the next one.
  if (link != nullptr) logFailure("opening a flow", [&]() { reopen(*state); });
  return kj::heap<FlowHandle>(kj::mv(state));
}

kj::Promise<void> RecorderClient::Impl::whenReady() {
  return KJ_ASSERT_NONNULL(firstAnswerPromise).addBranch();
}

kj::Promise<void> RecorderClient::Impl::drainAndClose() {
  closing = true;
  if (closed) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  drained = kj::mv(paf.fulfiller);
  checkDrained();
  return kj::mv(paf.promise);
}

RecorderClientCounters RecorderClient::Impl::counters() const { return stats; }

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
  if (flow.refused || closed) {
    countLost(flow, bytes.size());
    return;
  }
  if (overBoundWhileDown(flow, bytes.size())) {
    // --recorder-down pass: relayed, not recorded. The next chunk of this side says so.
    countLost(flow, bytes.size());
    flow.pendingSkip[static_cast<int>(from)] += bytes.size();
    return;
  }
  timeUs = flow.clampTime(timeUs);
  while (bytes.size() > 0) {
    size_t size = kj::min(bytes.size(), size_t(proto::MAX_CHUNK_BYTES));
    queueChunk(flow, from, false, timeUs, bytes.slice(0, size));
    bytes = bytes.slice(size, bytes.size());
  }
  enqueue(flow);
  latchIfFull(flow);
}

void RecorderClient::Impl::finish(FlowState& flow, Side from, int64_t timeUs) {
  int side = static_cast<int>(from);
  if (flow.closeQueued || flow.finished[side]) return;
  flow.finished[side] = true;
  if (flow.refused || closed) return;
  queueChunk(flow, from, true, flow.clampTime(timeUs), nullptr);
  enqueue(flow);
}

void RecorderClient::Impl::close(FlowState& flow, int64_t timeUs, kj::Maybe<Side> resetBy) {
  if (flow.closeQueued) return;
  flow.closeQueued = true;
  flow.closeTimeUs = flow.clampTime(timeUs);
  flow.resetBy = resetBy;
  // The flow is over: say what it lost, once.
  logLoss(flow);
  if (flow.refused || closed) return;
  for (Side side : {Side::CLIENT, Side::SERVER}) {
    // Bytes lost at the very end still move the FIN past them.
    int i = static_cast<int>(side);
    if (flow.pendingSkip[i] > 0 && !flow.finished[i]) {
      queueChunk(flow, side, false, flow.closeTimeUs, nullptr);
    }
  }
  enqueue(flow);
}

void RecorderClient::Impl::handleDropped(FlowState& flow) {
  flow.handleGone = true;
  if (flow.fullLink.isLinked()) fullFlows.remove(flow);
  flow.latchedFull = false;
  // Without close() the connection stays open in the capture (as in a cut capture); what is
  // queued is still sent.
  logLoss(flow);
  retireIfDone(flow);
}

void RecorderClient::Impl::unlink(FlowState& flow) {
  if (flow.readyLink.isLinked()) ready.remove(flow);
  if (flow.fullLink.isLinked()) fullFlows.remove(flow);
}

void RecorderClient::Impl::queueChunk(FlowState& flow, Side from, bool fin, int64_t timeUs,
                                      kj::ArrayPtr<const kj::byte> bytes) {
  int side = static_cast<int>(from);
  auto chunk = kj::heap<PendingChunk>();
  chunk->side = from;
  chunk->fin = fin;
  chunk->timeUs = timeUs;
  chunk->skip = flow.pendingSkip[side];
  flow.pendingSkip[side] = 0;
  if (bytes.size() > 0) chunk->storage = payloads.copy(bytes);
  chunk->size = bytes.size();
  flow.waitingCharge += chunk->charge();
  totalCharge += chunk->charge();
  flow.waitingBytes += chunk->size;
  stats.bytesWaiting += chunk->size;
  flow.push(kj::mv(chunk));
}

// ---------------------------------------------------------------------------------------------
// Losing data: every byte that will not be recorded is counted, per flow and in total.

bool RecorderClient::Impl::overBoundWhileDown(FlowState& flow, size_t bytes) {
  if (limits.whenDown != RecorderDown::PASS || link != nullptr) return false;
  size_t charge = bytes + CHUNK_OVERHEAD;
  return flow.waitingCharge + charge > limits.flowQueueBytes ||
         totalCharge + charge > limits.totalQueueBytes;
}

void RecorderClient::Impl::countLost(FlowState& flow, size_t bytes) {
  flow.lostBytes += bytes;
  stats.bytesLost += bytes;
}

void RecorderClient::Impl::logLoss(FlowState& flow) {
  // Lines of one flow add up to its loss: a flow that loses more after its first line (refused
  // later, or still queued when the front exits) gets another.
  if (flow.lostBytes == flow.lostLogged) return;
  logWarning("flow ", flow.name, ": ", flow.lostBytes - flow.lostLogged, " bytes not recorded");
  flow.lostLogged = flow.lostBytes;
}

void RecorderClient::Impl::dropQueue(FlowState& flow) {
  if (flow.readyLink.isLinked()) ready.remove(flow);
  if (flow.waitingBytes > 0) countLost(flow, flow.waitingBytes);
  stats.bytesWaiting -= flow.waitingBytes;
  totalCharge -= flow.waitingCharge;
  flow.waitingCharge = 0;
  flow.waitingBytes = 0;
  // Unlinked one by one: a long queue must not recurse through nested destructors.
  while (flow.head != nullptr) {
    auto chunk = kj::mv(KJ_ASSERT_NONNULL(flow.head));
    flow.head = kj::mv(chunk->next);
  }
  flow.tail = nullptr;
  flow.unsent = nullptr;
  flow.batches.clear();
  flow.firstBatch = 0;
}

// ---------------------------------------------------------------------------------------------
// Acknowledgements, backpressure and shutdown.

void RecorderClient::Impl::releaseChunks(FlowState& flow, uint count) {
  for (uint i = 0; i < count; i++) {
    auto chunk = kj::mv(KJ_ASSERT_NONNULL(flow.head, "answer for more chunks than queued"));
    flow.head = kj::mv(chunk->next);
    int side = static_cast<int>(chunk->side);
    flow.ackedOffset[side] += chunk->size + chunk->skip;
    if (chunk->fin) flow.ackedFin[side] = true;
    flow.waitingCharge -= chunk->charge();
    totalCharge -= chunk->charge();
    flow.waitingBytes -= chunk->size;
    stats.bytesWaiting -= chunk->size;
    stats.bytesRecorded += chunk->size;
    if (flow.unsent == chunk.get()) flow.unsent = rawPointer(flow.head);
    payloads.recycle(kj::mv(chunk->storage));
  }
  if (flow.head == nullptr) {
    flow.tail = nullptr;
    flow.unsent = nullptr;
  }
}

void RecorderClient::Impl::latchIfFull(FlowState& flow) {
  if (flow.latchedFull || flow.handleGone) return;
  // PASS without a link: appends over the bound are counted lost instead of holding the relay.
  if (limits.whenDown == RecorderDown::PASS && link == nullptr) return;
  if (flow.waitingCharge > limits.flowQueueBytes || totalCharge > limits.totalQueueBytes) {
    flow.latchedFull = true;
    fullFlows.add(flow);
  }
}

void RecorderClient::Impl::notifyDrained() {
  // Hysteresis: a flow reads again once its queue is down to half its bound and the total to
  // three quarters, so the relay does not flap between reading and waiting on every batch.
  // PASS without a link releases every flow: the relay goes on, and what does not fit is lost.
  bool passing = limits.whenDown == RecorderDown::PASS && link == nullptr;
  if (fullFlows.empty()) return;
  if (!passing && totalCharge > limits.totalQueueBytes / 4 * 3) return;
  kj::Vector<kj::Own<FlowState>> released;
  for (auto& flow : fullFlows) {
    if (passing || flow.waitingCharge <= limits.flowQueueBytes / 2) {
      released.add(kj::addRef(flow));
    }
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
  // A flow leaves the table once the relay let go of it and the recorder acknowledged all of it.
  if (!flow.handleGone) return;
  if (!flow.refused && !flow.settled()) return;
  flow.remote = nullptr;  // dropped without close: release the capability
  unlink(flow);
  flows.erase(flow.id);
}

void RecorderClient::Impl::checkDrained() {
  KJ_IF_MAYBE(fulfiller, drained) {
    // Without a link, reconnecting goes on: the caller bounds the wait.
    if (link == nullptr) return;
    for (auto& entry : flows) {
      auto& flow = *entry.value;
      if (!flow.refused && !flow.settled()) return;
    }
    if (linkBacklog() > 0) return;
    (*fulfiller)->fulfill();
    drained = nullptr;
    closed = true;
    linkLost("closed after draining");
  }
}

// ---------------------------------------------------------------------------------------------

RecorderClient::RecorderClient(kj::Timer& timer, kj::Own<RecorderLinkSource> source,
                               RecorderLimits limits)
    : impl(kj::heap<Impl>(timer, kj::mv(source), limits)) {}
RecorderClient::~RecorderClient() noexcept(false) {}
kj::Own<RecordedFlow> RecorderClient::openFlow(FlowInfo info) {
  return impl->openFlow(kj::mv(info));
}
kj::Promise<void> RecorderClient::whenReady() { return impl->whenReady(); }
kj::Promise<void> RecorderClient::drainAndClose() { return impl->drainAndClose(); }
bool RecorderClient::linkUp() const { return impl->linkUp(); }
RecorderClientCounters RecorderClient::counters() const { return impl->counters(); }

}  // namespace tlstap
