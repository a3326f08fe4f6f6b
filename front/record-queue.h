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
#include "front/recorder-client.h"

namespace tlstap {

// Charged per queued chunk on top of its payload, so a flood of tiny reads is bounded by the memory
// it really takes, not only by its payload.
constexpr size_t CHUNK_OVERHEAD = 64;

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

}  // namespace tlstap
