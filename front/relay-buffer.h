// The bytes one side of a relay has read but the other side has not yet accepted. Bounded, so a
// fast sender is stopped (the relay stops reading it) instead of growing memory; allocated when
// a read needs it and given back (releaseIfEmpty()) once the relay goes quiet, so an idle
// connection costs no buffer at all.
#pragma once

#include <stddef.h>
#include <kj/array.h>
#include <kj/common.h>

namespace tlstap {

class RelayBuffer {
public:
  explicit RelayBuffer(size_t capacity) : capacity(capacity) {}
  KJ_DISALLOW_COPY(RelayBuffer);

  size_t size() const { return end - begin; }
  bool empty() const { return end == begin; }
  // How many more bytes it holds (writable() offers all of them when this is not 0).
  size_t room() const { return capacity - size(); }
  bool allocated() const { return storage != nullptr; }

  // The bytes waiting to be written, oldest first.
  kj::ArrayPtr<const kj::byte> readable() const { return storage.slice(begin, end); }

  // For reading straight into the buffer, without a copy: the room after the bytes held
  // (allocating the storage, and sliding the held bytes to the front when more room is in
  // front of them than behind).
  // Fill a prefix of it, then commit() that many bytes.
  kj::ArrayPtr<kj::byte> writable();
  void commit(size_t count);
  // Gives the storage back if it holds nothing: for when the connection goes quiet. Not after
  // every write: allocating and freeing 64 KiB for each request cost more than the copy the
  // direct reads save.
  void releaseIfEmpty();
  // Drops the first `count` bytes (they were written). The storage stays for the next read.
  void consume(size_t count);

private:
  size_t capacity;
  kj::Array<kj::byte> storage;
  size_t begin = 0;
  size_t end = 0;
};

}  // namespace tlstap
