#include "recorder-client-impl.h"

#include <kj/debug.h>

namespace tlstap {

// ---------------------------------------------------------------------------------------------
// The link: connecting, losing it, reconnecting with backoff.

void RecorderClient::Impl::connect() {
  tasks.add(source->connect().then(
      [this](kj::Own<kj::AsyncIoStream> stream) { linkUpAt(kj::mv(stream)); },
      [this](kj::Exception&& exception) {
        reconnectPending = false;
        auto reason = kj::str(exception.getDescription());
        KJ_IF_MAYBE(fulfiller, firstAnswer) {
          // Start-up: the caller reports it (whenReady()).
          (*fulfiller)->reject(kj::mv(exception));
          firstAnswer = nullptr;
        } else if (lastFailure == nullptr || reason != KJ_ASSERT_NONNULL(lastFailure)) {
          logWarning("recorder ", source->describe(), ": ", reason, "; retrying");
        }
        lastFailure = kj::mv(reason);
        reconnectLater();
      }));
}

void RecorderClient::Impl::linkUpAt(kj::Own<kj::AsyncIoStream> stream) {
  reconnectPending = false;
  if (closed) return;
  auto newLink = kj::heap<RecorderLink>(kj::mv(stream), [this]() {
    // A write finished: batches held back by the link's backlog may go, and a drain may be done.
    if (!ready.empty() || drained != nullptr) schedulePump();
  });
  uint64_t generation = linkGeneration;
  tasks.add(newLink->onDisconnect().then(
      [this, generation]() {
        if (generation == linkGeneration) linkLost("the recorder closed the connection");
      },
      [this, generation](kj::Exception&& exception) {
        if (generation == linkGeneration) linkLost(exception.getDescription());
      }));
  tasks.add(newLink->recorder().whenResolved().then(
      [this, generation]() {
        if (generation != linkGeneration) return;
        backoff = limits.reconnectFirst;
        lastFailure = nullptr;
        answered = true;
        KJ_IF_MAYBE(fulfiller, firstAnswer) {
          (*fulfiller)->fulfill();
          firstAnswer = nullptr;
        }
        KJ_IF_MAYBE(since, downSince) {
          logInfo("recorder link to ", source->describe(), " restored after ",
                  (timer.now() - *since) / kj::MILLISECONDS, " ms; ", flows.size(),
                  " flows reopened");
          downSince = nullptr;
        }
      },
      [this](kj::Exception&& exception) {
        // A lost link is handled by onDisconnect; start-up hears of it here.
        KJ_IF_MAYBE(fulfiller, firstAnswer) {
          (*fulfiller)->reject(kj::mv(exception));
          firstAnswer = nullptr;
        }
      }));
  link = kj::mv(newLink);
  tasks.add(keepAlive(generation));
  kj::Vector<kj::Own<FlowState>> all;
  for (auto& entry : flows) all.add(kj::addRef(*entry.value));
  for (auto& flow : all) {
    if (flow->refused || flow->closeAcked) continue;
    logFailure("reopening a flow", [&]() { reopen(*flow); });
  }
  // Flows that reported full() because there was no link may go on filling up to their bound.
  notifyDrained();
}

void RecorderClient::Impl::reconnectLater() {
  if (closed || reconnectPending || link != nullptr) return;
  reconnectPending = true;
  auto delay = backoff;
  backoff = kj::min(backoff * 2, limits.reconnectMax);
  tasks.add(timer.afterDelay(delay).then([this]() {
    if (closed || link != nullptr) {
      reconnectPending = false;
      return;
    }
    connect();
  }));
}

kj::Promise<void> RecorderClient::Impl::keepAlive(uint64_t generation) {
  auto interval = limits.linkTimeout / 3;
  return timer.afterDelay(interval).then([this, generation]() -> kj::Promise<void> {
    if (generation != linkGeneration || link == nullptr) return kj::READY_NOW;
    auto answered = KJ_ASSERT_NONNULL(link)->recorder().pingRequest().send().ignoreResult()
                        .then([]() { return true; });
    auto silent = timer.afterDelay(limits.linkTimeout).then([]() { return false; });
    return answered.exclusiveJoin(kj::mv(silent)).then(
        [this, generation](bool gotAnswer) -> kj::Promise<void> {
          if (generation != linkGeneration) return kj::READY_NOW;
          if (gotAnswer) return keepAlive(generation);
          auto ms = limits.linkTimeout / kj::MILLISECONDS;
          linkLost(kj::str("no answer to a ping for ",
                           ms % 1000 == 0 ? kj::str(ms / 1000, " s") : kj::str(ms, " ms"),
                           " (--link-timeout)"));
          return kj::READY_NOW;
        },
        [](kj::Exception&&) {
          // The link broke: onDisconnect or the calls in flight report it.
        });
  });
}

void RecorderClient::Impl::linkLost(kj::StringPtr reason) {
  KJ_IF_MAYBE(l, link) {
    if (closed) {
      // Our own doing (drainAndClose).
    } else if (!answered) {
      // Never answered: whenReady() reports it, and start-up fails with one line.
      logDebug("recorder link closed before the recorder answered: ", reason);
    } else if (downSince == nullptr) {
      logError("recorder link to ", source->describe(), " lost (", reason, "); reconnecting, ",
               limits.whenDown == RecorderDown::PASS
                   ? "relaying on and counting what does not fit in the record queues as lost"
                   : "holding connections whose record queue is full until it is back");
    } else {
      logDebug("recorder link to ", source->describe(), " lost again: ", reason);
    }
    if (!closed) {
      ++stats.linksLost;
      if (downSince == nullptr) downSince = timer.now();
    }
    ++linkGeneration;
    auto dying = kj::mv(*l);
    link = nullptr;
    for (auto& entry : flows) {
      auto& flow = *entry.value;
      // Capabilities of the old link go before it. Its calls will never be answered (see
      // track()): everything unacknowledged goes again on the next link.
      flow.remote = nullptr;
      flow.closeSent = false;
      flow.unsent = rawPointer(flow.head);
      flow.batches.clear();
      flow.firstBatch = 0;
      if (flow.readyLink.isLinked()) ready.remove(flow);
    }
    // Closing the connection now, not later: after a drain the caller may wait for the embedded
    // recorder to exit, which it does when the link closes. (Never called from inside the RPC
    // system: only from our own continuations, whose RPC promise is already released.)
    dying = nullptr;
    notifyDrained();
    reconnectLater();
    checkDrained();
  }
}

void RecorderClient::Impl::reopen(FlowState& flow) {
  auto& current = *KJ_ASSERT_NONNULL(link);
  auto request = current.recorder().openFlowRequest();
  auto meta = request.initMeta();
  fillFlowMeta(meta, flow.info);
  if (flow.openAnswered) {
    // Some recorder wrote the handshake and everything acknowledged: continue from there.
    auto resume = meta.initResume();
    resume.setClientOffset(flow.ackedOffset[static_cast<int>(Side::CLIENT)]);
    resume.setServerOffset(flow.ackedOffset[static_cast<int>(Side::SERVER)]);
    resume.setClientFin(flow.ackedFin[static_cast<int>(Side::CLIENT)]);
    resume.setServerFin(flow.ackedFin[static_cast<int>(Side::SERVER)]);
    ++stats.flowsResumed;
  }
  auto response = request.send();
  // Pipelined: data calls go out before the answer.
  flow.remote = response.getFlow();
  flow.closeSent = false;
  flow.unsent = rawPointer(flow.head);
  track(flow, response.ignoreResult(), Call::OPEN);
  enqueue(flow);
}

size_t RecorderClient::Impl::linkBacklog() {
  KJ_IF_MAYBE(l, link) return (*l)->backlog();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Sending.

namespace {

size_t callsInFlight(const FlowState& flow) { return flow.batches.size() - flow.firstBatch; }

}  // namespace

bool RecorderClient::Impl::canSend(FlowState& flow) {
  if (flow.remote == nullptr) return false;
  if (flow.unsent != nullptr) return callsInFlight(flow) < limits.callsInFlight;
  return flow.closeQueued && !flow.closeSent && !flow.closeAcked;
}

void RecorderClient::Impl::enqueue(FlowState& flow) {
  if (flow.readyLink.isLinked() || !canSend(flow)) return;
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
    auto flow = kj::addRef(ready.front());
    ready.remove(*flow);
    sendNext(*flow);
    // Round robin: a flow with more to send goes to the back.
    enqueue(*flow);
  }
  checkDrained();
}

void RecorderClient::Impl::sendNext(FlowState& flow) {
  if (!canSend(flow)) return;
  auto& remote = KJ_ASSERT_NONNULL(flow.remote);
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    if (flow.unsent != nullptr) {
      sendData(flow, remote);
    } else {
      sendClose(flow, remote);
    }
  })) {
    callFailed(flow, kj::mv(*exception));
  }
}

void RecorderClient::Impl::sendData(FlowState& flow, proto::Flow::Client& remote) {
  // One call takes what is queued, up to batchBytes (at least one chunk) and the contract's limit.
  uint count = 0;
  size_t payload = 0;
  uint64_t words = 16;
  for (PendingChunk* chunk = flow.unsent;
       chunk != nullptr && count < proto::MAX_CHUNKS_PER_BATCH && payload < limits.batchBytes;
       chunk = rawPointer(chunk->next)) {
    ++count;
    payload += chunk->size;
    words += 5 + (chunk->size + 7) / 8;
  }
  // A plain call rather than the schema's stream: its promise is the recorder's answer, which
  // comes once the batch is written, and only then may the batch be forgotten. The record
  // queue's bounds do the flow control.
  auto request = remote.typelessRequest(capnp::typeId<proto::Flow>(), 0,
                                        capnp::MessageSize{words, 0});
  auto list = request.initAs<proto::Flow::DataParams>().initChunks(count);
  PendingChunk* chunk = flow.unsent;
  for (uint i = 0; i < count; i++, chunk = rawPointer(chunk->next)) {
    auto builder = list[i];
    builder.setDirection(toDirection(chunk->side));
    builder.setTimeUs(chunk->timeUs);
    builder.setBytes(chunk->bytes());
    builder.setFin(chunk->fin);
    builder.setSkip(chunk->skip);
  }
  flow.unsent = chunk;
  stats.bytesSent += payload;
  ++stats.dataCalls;
  uint64_t number = flow.nextBatch++;
  flow.batches.add(FlowState::Batch{number, count, false});
  track(flow, request.send().ignoreResult(), Call::DATA, number);
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

// ---------------------------------------------------------------------------------------------
// Answers.

void RecorderClient::Impl::track(FlowState& flow, kj::Promise<void> call, Call kind,
                                 uint64_t batch) {
  uint64_t generation = linkGeneration;
  tasks.add(call.then(
      [this, &flow, generation, kind, batch]() {
        if (generation != linkGeneration) return;
        switch (kind) {
          case Call::OPEN:
            flow.openAnswered = true;
            break;
          case Call::DATA:
            dataAnswered(flow, batch);
            break;
          case Call::CLOSE:
            flow.closeAcked = true;
            flow.remote = nullptr;  // answered: nothing more goes there
            retireIfDone(flow);
            checkDrained();
            break;
        }
      },
      [this, &flow, generation](kj::Exception&& exception) {
        if (generation != linkGeneration) return;
        callFailed(flow, kj::mv(exception));
      }).attach(kj::addRef(flow)));
}

void RecorderClient::Impl::dataAnswered(FlowState& flow, uint64_t batch) {
  // The recorder answers a flow's calls in order; should one come early, it waits for the ones
  // before it, so that only a prefix of the queue is ever released.
  for (size_t i = flow.firstBatch; i < flow.batches.size(); i++) {
    if (flow.batches[i].number == batch) flow.batches[i].answered = true;
  }
  while (flow.firstBatch < flow.batches.size() && flow.batches[flow.firstBatch].answered) {
    releaseChunks(flow, flow.batches[flow.firstBatch].chunks);
    ++flow.firstBatch;
  }
  if (flow.firstBatch == flow.batches.size()) {
    flow.batches.clear();
    flow.firstBatch = 0;
  }
  notifyDrained();
  enqueue(flow);
  retireIfDone(flow);
  checkDrained();
}

void RecorderClient::Impl::callFailed(FlowState& flow, kj::Exception&& exception) {
  // DISCONNECTED is the link; anything else is the recorder refusing or ending this one flow.
  auto ref = kj::addRef(flow);
  if (exception.getType() == kj::Exception::Type::DISCONNECTED) {
    linkLost(exception.getDescription());
  } else {
    flowRefused(flow, exception.getDescription());
  }
  retireIfDone(flow);
  checkDrained();
}

void RecorderClient::Impl::flowRefused(FlowState& flow, kj::StringPtr reason) {
  if (flow.refused) return;  // already reported
  logError("flow ", flow.name, ": the recorder refused it (", reason, "); not recording it");
  flow.refused = true;
  flow.remote = nullptr;
  // Nothing unacknowledged was recorded.
  dropQueue(flow);
  if (flow.closeQueued || flow.handleGone) logLoss(flow);
  notifyDrained();
}

}  // namespace tlstap
