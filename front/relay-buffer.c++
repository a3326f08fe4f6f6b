#include "relay-buffer.h"

#include <string.h>
#include <kj/debug.h>

namespace tlstap {

kj::ArrayPtr<kj::byte> RelayBuffer::writable() {
  if (storage == nullptr) storage = kj::heapArray<kj::byte>(capacity);
  // Sliding costs a copy of the held bytes, which are usually few (a partial write's rest).
  if (begin > capacity - end) {
    memmove(storage.begin(), storage.begin() + begin, size());
    end -= begin;
    begin = 0;
  }
  return storage.slice(end, capacity);
}

void RelayBuffer::commit(size_t count) {
  KJ_REQUIRE(storage != nullptr && count <= capacity - end, "relay buffer overflow", count);
  end += count;
}

void RelayBuffer::releaseIfEmpty() {
  if (empty()) {
    storage = nullptr;
    begin = end = 0;
  }
}

void RelayBuffer::consume(size_t count) {
  KJ_REQUIRE(count <= size(), "consumed more than the relay buffer holds", count, size());
  begin += count;
  if (begin == end) begin = end = 0;
}

}  // namespace tlstap
