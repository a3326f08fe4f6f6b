#include "recorder-client-impl.h"

#include <kj/debug.h>

namespace tlstap {

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
    payloads.recycle(kj::mv(chunk->storage));
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

}  // namespace tlstap
