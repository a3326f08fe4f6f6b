// The listening side of the front: one socket per -p address (a default 0.0.0.0 listener gets a
// [::] twin so IPv6 clients reach it too), bound at start-up before privileges are dropped, and
// an Acceptor that hands accepted sockets to a Worker while it is below --max-connections.
#pragma once

#include <event2/event.h>
#include <kj/array.h>
#include <kj/io.h>
#include <kj/memory.h>
#include <kj/string.h>
#include <kj/vector.h>

#include "common/address.h"
#include "common/event-handle.h"
#include "front/front-options.h"
#include "front/worker.h"

namespace tlstap {

struct BoundListener {
  kj::AutoCloseFd fd;
  SocketAddress address;  // as bound (the real port, if 0 was asked for)
  Route route;
};

// Binds every mapping. Returns one line naming -p, the address and the cause on the first
// failure (the caller exits 2), or nullptr.
kj::Maybe<kj::String> bindListeners(kj::ArrayPtr<const PortMapping> ports,
                                    kj::Vector<BoundListener>& out);

class Acceptor {
public:
  Acceptor(Worker& worker, kj::Vector<BoundListener> listeners);
  ~Acceptor() noexcept(false);
  KJ_DISALLOW_COPY(Acceptor);

  // Starts accepting on every listener.
  void start();
  // Shutdown: stops accepting for good and closes the listening sockets.
  void close();

private:
  struct Listening {
    Acceptor& acceptor;
    BoundListener bound;
    EventHandle event;
  };

  Worker& worker;
  kj::Vector<kj::Own<Listening>> listening;
  EventHandle retryTimer;  // resumes accepting after running out of file descriptors
  bool closed = false;
  bool paused = false;
  int64_t limitLoggedUs = -1;  // when the limit was last logged (monotonic), to log it rarely

  void pause();
  void resume();
  void acceptFrom(Listening& listener);
  static void onReadable(evutil_socket_t, short, void* listener);
  static void onRetry(evutil_socket_t, short, void* acceptor);
};

}  // namespace tlstap
