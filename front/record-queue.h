// A flow's record queue (front/recorder-client.h): the chunks read from the relay and not yet
// handed to the recorder, with the flow's state on the recorder, and the pool of reused payload
// buffers. Shared by the relay's handle, the client's table and the RPC continuations.
#pragma once

#include <stdint.h>
#include <kj/array.h>
#include <kj/function.h>
#include <kj/list.h>
#include <kj/memory.h>
#include <kj/refcount.h>
#include <kj/string.h>
#include <kj/vector.h>

#include "common/side.h"
#include "recorder.capnp.h"
#include "front/flow-recorder.h"
#include "front/recorder-client.h"

namespace tlstap {

// Charged per queued chunk on top of its payload, so a flood of tiny reads is bounded by the memory
// it really takes, not only by its payload.
constexpr size_t CHUNK_OVERHEAD = 64;

struct PendingChunk {
  Side side;
  bool fin;
  int64_t timeUs;
  uint64_t skip = 0;            // bytes of this side lost just before it (Chunk.skip)
  kj::Array<kj::byte> storage;  // the payload is its first `size` bytes
  size_t size = 0;
  kj::Maybe<kj::Own<PendingChunk>> next;

  kj::ArrayPtr<const kj::byte> bytes() const { return storage.slice(0, size); }
  size_t charge() const { return storage.size() + CHUNK_OVERHEAD; }
};

inline PendingChunk* rawPointer(kj::Maybe<kj::Own<PendingChunk>>& chunk) {
  KJ_IF_MAYBE(own, chunk) return own->get();
  return nullptr;
}

// Payload copies. Payloads of the relay's large reads (at most 64 KiB each) go into buffers of
// POOLED_BYTES that are reused: a fresh allocation per read, freed once batched, made glibc shrink
// and regrow the heap at every batch (brk and page faults, more than the copy itself cost).
// Smaller reads get exactly-sized buffers, so the waste is under half and is charged as queued
// memory.
class PayloadPool {
public:
  static constexpr size_t POOLED_BYTES = 64 << 10;

  kj::Array<kj::byte> copy(kj::ArrayPtr<const kj::byte> bytes);
  void recycle(kj::Array<kj::byte> storage);

private:
  static constexpr size_t MAX_SPARE_BUFFERS = 8;
  kj::Vector<kj::Array<kj::byte>> spareBuffers;  // of POOLED_BYTES each
};

// A flow's record queue and its state on the recorder. Shared by the relay's handle, the client's
// table and the RPC continuations, so that queued data is still sent after the relay let go.
//
// The queue holds every chunk the recorder has not acknowledged: [head, unsent) went into data
// calls on the current link that are not answered yet, [unsent, tail] waits to be sent. A chunk
// leaves only when its call returns (the recorder has written it), so when the link breaks,
// everything from head on is sent again on the next link.
class FlowState final : public kj::Refcounted {
public:
  FlowState(RecorderClient::Impl& client, uint64_t id, FlowInfo info)
      : client(client), id(id),
        name(kj::str(info.client.toString(), " -> ", info.server.toString())),
        info(kj::mv(info)), lastTimeUs(this->info.startTimeUs) {}
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
    if (unsent == nullptr) unsent = raw;
  }

  // Whether anything is left for the recorder to acknowledge.
  bool settled() const { return head == nullptr && (!closeQueued || closeAcked || refused); }

  // A data call in flight: how many chunks from head it carries, and whether it was answered
  // (answers are applied in order, so an early answer waits for the ones before it).
  struct Batch {
    uint64_t number;
    uint chunks;
    bool answered;
  };

  kj::Maybe<RecorderClient::Impl&> client;  // null once the client is gone
  uint64_t id;
  kj::String name;  // "client -> server", for log lines
  FlowInfo info;    // for opening it again on a new link
  kj::Maybe<proto::Flow::Client> remote;  // on the current link; null while there is none
  bool refused = false;       // the recorder refused it: nothing more is recorded
  bool openAnswered = false;  // some recorder wrote its handshake: reopen it as resumed

  kj::Maybe<kj::Own<PendingChunk>> head;
  PendingChunk* unsent = nullptr;  // the first chunk not sent on the current link
  PendingChunk* tail = nullptr;
  size_t waitingCharge = 0;  // queued (sent or not), with CHUNK_OVERHEAD per chunk
  size_t waitingBytes = 0;   // queued payload
  kj::Vector<Batch> batches;  // data calls in flight, oldest first from firstBatch
  size_t firstBatch = 0;
  uint64_t nextBatch = 0;

  // Acknowledged by the recorder, per side: sequence offset (bytes recorded or skipped) and FIN.
  uint64_t ackedOffset[2] = {0, 0};
  bool ackedFin[2] = {false, false};
  uint64_t pendingSkip[2] = {0, 0};  // lost bytes not yet carried by a queued chunk

  bool finished[2] = {false, false};
  int64_t lastTimeUs;
  bool closeQueued = false;
  bool closeSent = false;  // on the current link
  bool closeAcked = false;
  int64_t closeTimeUs = 0;
  kj::Maybe<Side> resetBy;
  bool handleGone = false;
  bool latchedFull = false;
  kj::Maybe<kj::Function<void()>> onDrain;
  uint64_t lostBytes = 0;
  uint64_t lostLogged = 0;  // of lostBytes, already in a log line
  kj::ListLink<FlowState> readyLink;
  kj::ListLink<FlowState> fullLink;
};

}  // namespace tlstap
