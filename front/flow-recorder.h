// What the relay sees of recording: it opens a RecordedFlow per proxied connection and hands it
// every decrypted byte as it is read. The implementation (recorder-client.h) batches the bytes
// into Flow.data calls to tlstap-recorder. The relay never drops: when a flow's record queue is
// full it stops reading that connection until the queue drains (DESIGN.md, "Nothing lost").
#pragma once

#include <stdint.h>
#include <kj/function.h>
#include <kj/memory.h>
#include <kj/string.h>

#include "common/address.h"
#include "common/side.h"

namespace tlstap {

struct FlowInfo {
  SocketAddress client;  // the real client address and port
  SocketAddress server;  // the address the client connected to, or the resolved upstream
  uint16_t pcapPort = 0;  // the server port written into the capture (PCAPPORT of -p)
  kj::String sni;
  kj::String alpn;
  kj::String tlsVersion;
  kj::String cipher;
  int64_t startTimeUs = 0;  // when the connection was accepted
};

class RecordedFlow {
public:
  virtual ~RecordedFlow() noexcept(false) = default;

  // Queues plaintext read from `from` at timeUs (taken at read time). Never drops.
  virtual void append(Side from, int64_t timeUs, kj::ArrayPtr<const kj::byte> bytes) = 0;
  // `from` sent its last byte (the relay saw EOF / close_notify on that side).
  virtual void finish(Side from, int64_t timeUs) = 0;
  // The connection is over: orderly (resetBy == nullptr) or aborted by that side.
  virtual void close(int64_t timeUs, kj::Maybe<Side> resetBy) = 0;

  // True while this flow's record queue (or the recorder's total) is over its bound: the relay
  // must stop reading from both sockets of this flow until the drain callback runs.
  virtual bool full() const = 0;
  // Called (from the event loop) each time full() turns from true to false.
  virtual void setOnDrain(kj::Function<void()> callback) = 0;
};

class FlowRecorder {
public:
  virtual ~FlowRecorder() noexcept(false) = default;
  virtual kj::Own<RecordedFlow> openFlow(FlowInfo info) = 0;
};

}  // namespace tlstap
