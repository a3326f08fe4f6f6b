#include "recorder-client.h"

#include <string.h>
#include <kj/debug.h>
#include <kj/list.h>
#include <kj/map.h>
#include <kj/vector.h>

#include "common/log.h"
#include "front/recorder-link.h"

namespace tlstap {

namespace {

// Charged per queued chunk on top of its payload, so a flood of tiny reads is bounded by the memory
// it really takes, not only by its payload.
constexpr size_t CHUNK_OVERHEAD = 64;
// Payloads of the relay's large reads (at most 64 KiB each) go into buffers of this size that are
// reused: a fresh allocation per read, freed once batched, made glibc shrink and regrow the heap
// at every batch (brk and page faults, more than the copy itself cost). Smaller reads get
// exactly-sized buffers, so the waste is under half and is charged as queued memory.
constexpr size_t POOLED_BYTES = 64 << 10;
constexpr size_t MAX_SPARE_BUFFERS = 8;

struct PendingChunk {
  Side side;
  bool fin;
  int64_t timeUs;
  kj::Array<kj::byte> storage;  // the payload is its first `size` bytes
  size_t size = 0;
  kj::Maybe<kj::Own<PendingChunk>> next;

  kj::ArrayPtr<const kj::byte> bytes() const { return storage.slice(0, size); }
  size_t charge() const { return storage.size() + CHUNK_OVERHEAD; }
};

PendingChunk* rawPointer(kj::Maybe<kj::Own<PendingChunk>>& chunk) {
  KJ_IF_MAYBE(own, chunk) return own->get();
  return nullptr;
}

proto::Direction toDirection(Side side) {
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

}  // namespace

// A flow's record queue and its state on the recorder. Shared by the relay's handle, the client's
// table and the RPC continuations, so that queued data is still sent after the relay let go.
class FlowState final : public kj::Refcounted {
public:
  FlowState(RecorderClient::Impl& client, uint64_t id, kj::String name, int64_t startTimeUs)
      : client(client), id(id), name(kj::mv(name)), lastTimeUs(startTimeUs) {}
  ~FlowState() noexcept(false);

  // The recorder rejects time going backwards within a flow; CLOCK_REALTIME may step back.
  int64_t clampTime(int64_t timeUs) {
    if (timeUs < lastTimeUs) return lastTimeUs;
    lastTimeUs = timeUs;
    return timeUs;
  }

  void push(kj::Own<PendingChunk> chunk) {
    PendingChunk* raw = chunk.get();
    if (tail == nullptr) {
      head = kj::mv(chunk);
    } else {
      tail->next = kj::mv(chunk);
    }
    tail = raw;
  }

  kj::Maybe<RecorderClient::Impl&> client;  // null once the client is gone
  uint64_t id;
  kj::String name;  // "client -> server", for log lines
  kj::Maybe<proto::Flow::Client> remote;  // null: not (or no longer) recording
  kj::Maybe<kj::Own<PendingChunk>> head;
  PendingChunk* tail = nullptr;
  size_t waitingCharge = 0;  // queued, with CHUNK_OVERHEAD per chunk
  size_t waitingBytes = 0;   // queued payload
  bool sending = false;      // a data call's stream promise or the close answer is outstanding
  bool finished[2] = {false, false};
  int64_t lastTimeUs;
  bool closeQueued = false;
  bool closeSent = false;
  int64_t closeTimeUs = 0;
  kj::Maybe<Side> resetBy;
  bool handleGone = false;
  bool latchedFull = false;
  kj::Maybe<kj::Function<void()>> onDrain;
  bool opened = false;     // the recorder answered openFlow
  uint64_t sentBytes = 0;  // put into data calls
  uint64_t lostBytes = 0;
  bool lossLogged = false;
  kj::ListLink<FlowState> readyLink;
  kj::ListLink<FlowState> fullLink;
};

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
  kj::Array<kj::byte> copyPayload(kj::ArrayPtr<const kj::byte> bytes);
  void recycle(kj::Array<kj::byte> storage);
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
  kj::Vector<kj::Array<kj::byte>> spareBuffers;  // of POOLED_BYTES each
  RecorderCounters stats;
  bool pumpScheduled = false;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> drained;
  kj::TaskSet tasks;  // last: destroyed first, so no continuation runs on a half-destroyed client
};

FlowState::~FlowState() noexcept(false) {
  KJ_IF_MAYBE(c, client) c->unlink(*this);
}

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
    chunk->storage = copyPayload(bytes.slice(0, size));
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
// Sending.

void RecorderClient::Impl::enqueue(FlowState& flow) {
  if (flow.sending || flow.readyLink.isLinked()) return;
  ready.add(flow);
  schedulePump();
}

void RecorderClient::Impl::schedulePump() {
  // Deferred to the KJ queue, which runs after the libevent callbacks of this loop iteration:
  // everything the relay read in one iteration goes out together.
  if (pumpScheduled) return;
  pumpScheduled = true;
  tasks.add(kj::evalLater([this]() {
    pumpScheduled = false;
    pump();
  }));
}

void RecorderClient::Impl::pump() {
  while (!ready.empty()) {
    // The socket is the bottleneck: wait for a write to finish (RecorderLink's onWritten).
    if (linkBacklog() > limits.linkQueueBytes) break;
    FlowState& flow = ready.front();
    ready.remove(flow);
    sendNext(flow);
  }
  notifyDrained();
  checkDrained();
}

void RecorderClient::Impl::sendNext(FlowState& flow) {
  KJ_IF_MAYBE(remote, flow.remote) {
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      if (flow.head != nullptr) {
        sendData(flow, *remote);
      } else if (flow.closeQueued && !flow.closeSent) {
        sendClose(flow, *remote);
      }
    })) {
      callFailed(flow, kj::mv(*exception));
      return;
    }
  } else {
    dropQueue(flow);
  }
  retireIfDone(flow);
}

void RecorderClient::Impl::sendData(FlowState& flow, proto::Flow::Client& remote) {
  // One call takes what is queued, up to batchBytes (at least one chunk) and the contract's limit.
  uint count = 0;
  size_t payload = 0;
  uint64_t words = 16;
  for (PendingChunk* chunk = rawPointer(flow.head);
       chunk != nullptr && count < proto::MAX_CHUNKS_PER_BATCH && payload < limits.batchBytes;
       chunk = rawPointer(chunk->next)) {
    ++count;
    payload += chunk->size;
    words += 4 + (chunk->size + 7) / 8;
  }
  auto request = remote.dataRequest(capnp::MessageSize{words, 0});
  auto list = request.initChunks(count);
  for (uint i = 0; i < count; i++) {
    auto chunk = kj::mv(KJ_ASSERT_NONNULL(flow.head));
    flow.head = kj::mv(chunk->next);
    auto builder = list[i];
    builder.setDirection(toDirection(chunk->side));
    builder.setTimeUs(chunk->timeUs);
    builder.setBytes(chunk->bytes());
    builder.setFin(chunk->fin);
    flow.waitingCharge -= chunk->charge();
    totalCharge -= chunk->charge();
    flow.waitingBytes -= chunk->size;
    stats.bytesWaiting -= chunk->size;
    recycle(kj::mv(chunk->storage));
  }
  if (flow.head == nullptr) flow.tail = nullptr;
  stats.bytesSent += payload;
  flow.sentBytes += payload;
  ++stats.dataCalls;
  // The stream promise resolves as soon as Cap'n Proto's flow-control window has room again, so
  // a few calls stay in flight while the next batch fills.
  track(flow, request.send(), Call::DATA);
}

void RecorderClient::Impl::sendClose(FlowState& flow, proto::Flow::Client& remote) {
  flow.closeSent = true;
  auto request = remote.closeRequest();
  auto how = request.initHow();
  how.setTimeUs(flow.closeTimeUs);
  KJ_IF_MAYBE(side, flow.resetBy) {
    how.setReset(toDirection(*side));
  } else {
    how.setFin();
  }
  track(flow, request.send().ignoreResult(), Call::CLOSE);
}

void RecorderClient::Impl::track(FlowState& flow, kj::Promise<void> call, Call kind) {
  uint64_t generation = linkGeneration;
  if (kind != Call::OPEN) flow.sending = true;
  tasks.add(call.then(
      [this, &flow, generation, kind]() {
        if (generation != linkGeneration) return;
        if (kind == Call::OPEN) {
          flow.opened = true;
          return;
        }
        flow.sending = false;
        if (kind == Call::CLOSE) flow.remote = nullptr;  // answered: nothing more goes there
        callDone(flow);
      },
      [this, &flow, generation, kind](kj::Exception&& exception) {
        if (generation != linkGeneration) return;
        if (kind != Call::OPEN) flow.sending = false;
        callFailed(flow, kj::mv(exception));
      }).attach(kj::addRef(flow)));
}

void RecorderClient::Impl::callDone(FlowState& flow) {
  if (flow.head != nullptr || (flow.closeQueued && !flow.closeSent)) {
    enqueue(flow);
  } else {
    retireIfDone(flow);
    checkDrained();
  }
}

void RecorderClient::Impl::callFailed(FlowState& flow, kj::Exception&& exception) {
  // DISCONNECTED is the link; anything else is the recorder refusing or ending this one flow.
  if (exception.getType() == kj::Exception::Type::DISCONNECTED) {
    linkLost(exception.getDescription());
  } else {
    flowRefused(flow, exception.getDescription());
  }
  retireIfDone(flow);
  checkDrained();
}

// ---------------------------------------------------------------------------------------------
// Losing data: every byte that will not be recorded is counted, per flow and in total.

void RecorderClient::Impl::flowRefused(FlowState& flow, kj::StringPtr reason) {
  if (flow.remote == nullptr) return;  // already reported
  logError("flow ", flow.name, ": the recorder refused it (", reason, "); not recording it");
  flow.remote = nullptr;
  if (!flow.opened) {
    // Pipelined calls went out before the refusal came back: none of it was recorded.
    stats.bytesSent -= flow.sentBytes;
    countLost(flow, flow.sentBytes);
    flow.sentBytes = 0;
  }
  dropQueue(flow);
  if (flow.closeQueued || flow.handleGone) logLoss(flow);
  notifyDrained();
}

void RecorderClient::Impl::linkLost(kj::StringPtr reason) {
  KJ_IF_MAYBE(l, link) {
    if (closing) {
      // Our own doing (drainAndClose).
    } else if (!answered) {
      // Never answered: whenReady() reports it, and start-up fails with one line.
      logDebug("recorder link closed before the recorder answered: ", reason);
    } else {
      logError("recorder link lost (", reason, "); relaying on without recording, counting the "
               "bytes not recorded");
    }
    ++linkGeneration;
    auto dying = kj::mv(*l);
    link = nullptr;
    kj::Vector<kj::Own<FlowState>> all;
    for (auto& entry : flows) all.add(kj::addRef(*entry.value));
    for (auto& flow : all) {
      flow->remote = nullptr;  // capabilities of the old link go before it
      flow->sending = false;   // its outstanding calls will never be answered (see track())
      dropQueue(*flow);
      if (flow->closeQueued || flow->handleGone) logLoss(*flow);
    }
    // Closing the connection now, not later: after a drain the caller may wait for the embedded
    // recorder to exit, which it does when the link closes. (Never called from inside the RPC
    // system: only from our own continuations, whose RPC promise is already released.)
    dying = nullptr;
    notifyDrained();
    for (auto& flow : all) retireIfDone(*flow);
    checkDrained();
  }
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
}

void RecorderClient::Impl::countLost(FlowState& flow, size_t bytes) {
  flow.lostBytes += bytes;
  stats.bytesLost += bytes;
}

void RecorderClient::Impl::logLoss(FlowState& flow) {
  if (flow.lostBytes == 0 || flow.lossLogged) return;
  flow.lossLogged = true;
  logWarning("flow ", flow.name, ": ", flow.lostBytes, " bytes not recorded");
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

kj::Array<kj::byte> RecorderClient::Impl::copyPayload(kj::ArrayPtr<const kj::byte> bytes) {
  if (bytes.size() <= POOLED_BYTES / 2 || bytes.size() > POOLED_BYTES) return kj::heapArray(bytes);
  kj::Array<kj::byte> storage;
  if (spareBuffers.empty()) {
    storage = kj::heapArray<kj::byte>(POOLED_BYTES);
  } else {
    storage = kj::mv(spareBuffers.back());
    spareBuffers.removeLast();
  }
  memcpy(storage.begin(), bytes.begin(), bytes.size());
  return storage;
}

void RecorderClient::Impl::recycle(kj::Array<kj::byte> storage) {
  if (storage.size() == POOLED_BYTES && spareBuffers.size() < MAX_SPARE_BUFFERS) {
    spareBuffers.add(kj::mv(storage));
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
