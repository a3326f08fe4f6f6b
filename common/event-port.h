// One event loop per thread: the KJ event loop (and so Cap'n Proto RPC) runs on top of a libevent
// event_base. The thread's main loop stays `event_base_dispatch(base)`; whenever KJ has work queued
// the port activates an event whose callback runs the KJ queue, so libevent callbacks and promise
// continuations interleave on one thread without either loop blocking the other.
//
// Usage (one per thread, before any promise is created):
//
//     KjOnLibevent kj(base);
//     ... set up libevent events and Cap'n Proto objects ...
//     event_base_dispatch(base);
//
// `promise.wait(kj.waitScope())` also works, but only outside event_base_dispatch() (start-up,
// tests): libevent does not allow a loop to be re-entered from one of its own callbacks.
#pragma once

#include <event2/event.h>
#include <kj/async.h>
#include <kj/timer.h>

#include "common/event-handle.h"

namespace tlstap {

// A kj::EventPort driven by libevent. wait() and poll() run one iteration of the event_base (for
// Promise::wait()); setRunnable(true) activates an event whose callback runs the KJ queue (for
// event_base_dispatch()). Cross-thread wake() is not supported: each worker thread owns its own
// loop and hands work between threads through libevent, not kj::Executor.
class LibeventEventPort final : public kj::EventPort {
public:
  explicit LibeventEventPort(event_base* base);
  ~LibeventEventPort() noexcept(false);
  KJ_DISALLOW_COPY(LibeventEventPort);

  kj::EventLoop& getLoop() { return loop; }
  event_base* getBase() const { return base; }

  bool wait() override;
  bool poll() override;
  void setRunnable(bool runnable) override;

private:
  static void runCallback(evutil_socket_t, short, void* arg);
  // Runs one iteration of the event_base for wait()/poll(), with the KJ queue left to the caller.
  void loopOnce(int flags);

  event_base* base;
  EventHandle runEvent;
  bool insideKjWait = false;
  kj::EventLoop loop;  // last: it keeps a reference to this port
};

// A kj::Timer whose deadlines are libevent timeouts on the same event_base.
class LibeventTimer final : public kj::Timer {
public:
  explicit LibeventTimer(event_base* base);
  KJ_DISALLOW_COPY(LibeventTimer);

  kj::TimePoint now() const override;
  kj::Promise<void> atTime(kj::TimePoint time) override;
  kj::Promise<void> afterDelay(kj::Duration delay) override;

private:
  static void timeoutCallback(evutil_socket_t, short, void* arg);
  void advance();
  void rearm();

  const kj::MonotonicClock& clock;
  kj::TimerImpl timers;
  EventHandle timeoutEvent;
};

// Everything one thread needs to run KJ on its event_base: the port, the loop, the thread's
// WaitScope (which makes the loop current) and a timer. Construct it before any promise and destroy
// it after every promise and every Cap'n Proto object of the thread.
class KjOnLibevent {
public:
  explicit KjOnLibevent(event_base* base);
  KJ_DISALLOW_COPY(KjOnLibevent);

  kj::WaitScope& waitScope() { return scope; }
  kj::Timer& timer() { return libeventTimer; }
  event_base* base() const { return port.getBase(); }

private:
  LibeventEventPort port;
  kj::WaitScope scope;
  LibeventTimer libeventTimer;
};

}  // namespace tlstap
