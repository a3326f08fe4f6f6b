#include "record-queue.h"

#include <string.h>

#include "front/recorder-client-impl.h"

namespace tlstap {

FlowState::~FlowState() noexcept(false) {
  KJ_IF_MAYBE(c, client) c->unlink(*this);
}

kj::Array<kj::byte> PayloadPool::copy(kj::ArrayPtr<const kj::byte> bytes) {
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

void PayloadPool::recycle(kj::Array<kj::byte> storage) {
  if (storage.size() == POOLED_BYTES && spareBuffers.size() < MAX_SPARE_BUFFERS) {
    spareBuffers.add(kj::mv(storage));
  }
}

}  // namespace tlstap
