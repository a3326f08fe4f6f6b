// Serves fronts: each connected stream gets its own Cap'n Proto two-party RPC system whose
// bootstrap capability is a RecorderService. A connection that breaks the RPC protocol (garbage,
// oversized messages) ends alone, with a log line; the flows of other connections go on.
#pragma once

#include <kj/async-io.h>
#include <kj/string.h>

#include "recorder/packet-sink.h"
#include "recorder/recorder-service.h"

namespace tlstap {

class LinkServer {
public:
  // With a barrier, Flow calls return once their packets are in the kernel (recorder-service.h).
  LinkServer(PacketSink& sink, RecorderCounters& counters,
             kj::Maybe<WriteBarrier&> barrier = nullptr);
  ~LinkServer() noexcept(false);
  KJ_DISALLOW_COPY(LinkServer);

  // Accepts fronts until cancelled. `name` is the listening address, for log lines.
  kj::Promise<void> acceptFrom(kj::Own<kj::ConnectionReceiver> listener, kj::String name);
  // Serves one connected stream; resolves when the front disconnects.
  kj::Promise<void> serve(kj::Own<kj::AsyncIoStream> stream, kj::String peerName);

  size_t connectionCount() const { return connections; }
  // Resolves once no front is connected (at shutdown: every queued message has been handled).
  kj::Promise<void> whenAllDisconnected();

private:
  void connectionEnded();

  class ErrorHandler final : public kj::TaskSet::ErrorHandler {
  public:
    void taskFailed(kj::Exception&& exception) override;
  };

  PacketSink& sink;
  RecorderCounters& counters;
  kj::Maybe<WriteBarrier&> barrier;
  size_t connections = 0;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> idleWaiters;
  ErrorHandler errorHandler;
  // Last: destroying it cancels the connections, whose clean-up uses the members above.
  kj::TaskSet tasks;
};

}  // namespace tlstap
