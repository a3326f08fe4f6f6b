#include "worker.h"

#include <kj/debug.h>

#include "common/log.h"
#include "front/backend-session-cache.h"
#include "front/cert-forge.h"
#include "front/connection.h"

namespace tlstap {

namespace {
// The shared read buffer: one TLS record (16 KiB) or a good chunk of a backend socket, and at
// least a whole ClientHello for the peek.
constexpr size_t SCRATCH_BYTES = 64 * 1024;
static_assert(SCRATCH_BYTES >= MAX_CLIENT_HELLO_BYTES, "the peek needs the whole ClientHello");
}  // namespace

Worker::Worker(event_base* base, const FrontContext& context, kj::Maybe<FlowRecorder&> recorder,
               uint32_t maxConnections)
    : eventBase(base), frontContext(context), flowRecorder(recorder),
      maxConnections(maxConnections), scratchBuffer(kj::heapArray<kj::byte>(SCRATCH_BYTES)),
      reaper(base, -1, 0, &Worker::reap, this) {
  KJ_IF_MAYBE(forger, context.forger) forged = kj::heap<ForgedCertCache>(*forger);
  if (context.backendTls != nullptr) backendSessionCache = kj::heap<BackendSessionCache>();
}

kj::Maybe<ForgedCertCache&> Worker::forgedCerts() {
  KJ_IF_MAYBE(cache, forged) return **cache;
  return nullptr;
}

kj::Maybe<BackendSessionCache&> Worker::backendSessions() {
  KJ_IF_MAYBE(cache, backendSessionCache) return **cache;
  return nullptr;
}

Worker::~Worker() noexcept(false) {
  closeAll();
  retired.clear();
}

void Worker::accept(kj::AutoCloseFd fd, const SocketAddress& peer, Route route) {
  connectionCounters.accepted++;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    auto connection = kj::heap<Connection>(*this, kj::mv(fd), peer, route);
    auto& ref = *connection;
    connections.emplace(&ref, kj::mv(connection));
    ref.start();
  })) {
    connectionCounters.refused++;
    logError("client ", peer.toString(), ": ", exception->getDescription());
  }
}

void Worker::retire(Connection& connection) {
  bool wasFull = full();
  auto found = connections.find(&connection);
  if (found == connections.end()) return;
  retired.add(kj::mv(found->second));
  connections.erase(found);
  reaper.activate();
  if (wasFull && !full()) {
    KJ_IF_MAYBE(callback, onRoom) (*callback)();
  }
}

void Worker::reap(evutil_socket_t, short, void* self) {
  auto& worker = *reinterpret_cast<Worker*>(self);
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { worker.retired.clear(); })) {
    logError("freeing closed connections: ", exception->getDescription());
  }
}

ConnectionCounters Worker::liveCounters() const {
  ConnectionCounters total = connectionCounters;
  for (auto& entry : connections) {
    total.bytesFromClient += entry.first->bytesFrom(Side::CLIENT);
    total.bytesFromServer += entry.first->bytesFrom(Side::SERVER);
  }
  return total;
}

void Worker::closeAll() {
  kj::Vector<Connection*> open;
  for (auto& entry : connections) open.add(entry.first);
  for (auto connection : open) connection->stop();
}

}  // namespace tlstap
