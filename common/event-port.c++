#include "event-port.h"

#include <kj/debug.h>

#include "common/log.h"

namespace tlstap {

namespace {
// How many KJ events one libevent callback runs before letting libevent look at the sockets again,
// so a long promise chain cannot starve I/O.
constexpr uint MAX_TURNS_PER_CALLBACK = 4096;
}  // namespace

LibeventEventPort::LibeventEventPort(event_base* base)
    : base(base), runEvent(base, -1, 0, &runCallback, this), loop(*this) {}

LibeventEventPort::~LibeventEventPort() noexcept(false) {}

void LibeventEventPort::runCallback(evutil_socket_t, short, void* arg) {
  auto& self = *static_cast<LibeventEventPort*>(arg);
  // Inside Promise::wait() KJ turns its own queue as soon as event_base_loop() returns.
  if (self.insideKjWait) return;
  // No exception may unwind into libevent. KJ already catches what promise callbacks throw; this
  // only catches failures of the loop machinery itself.
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    self.loop.run(MAX_TURNS_PER_CALLBACK);
  })) {
    logError("event loop: ", exception->getDescription());
  }
  // run() stopped at the turn limit: come back after libevent has looked at the sockets. KJ will
  // not call setRunnable(true) again because, for it, the queue never became empty. A zero
  // timeout rather than event_active(): libevent runs events activated during its callbacks in
  // the same pass, before polling the sockets again.
  if (self.loop.isRunnable()) {
    static const struct timeval zero = {0, 0};
    KJ_REQUIRE(self.runEvent.add(&zero), "event_add() failed");
  }
}

void LibeventEventPort::loopOnce(int flags) {
  // KJ only waits when its queue is empty, and polls while it is turning the queue itself: the run
  // event would only make event_base_loop() return at once (a busy loop), so take it out for this
  // iteration and put it back afterwards. After Promise::wait() returns, KJ may consider itself
  // runnable without calling setRunnable(true) again, so the event must be active then.
  runEvent.remove();
  insideKjWait = true;
  int result = event_base_loop(base, flags);
  insideKjWait = false;
  runEvent.activate();
  KJ_REQUIRE(result >= 0,
             "event_base_loop() failed: Promise::wait() inside a libevent callback is not allowed");
  KJ_REQUIRE(result == 0 || (flags & EVLOOP_NONBLOCK),
             "waiting for a promise while no libevent event is pending: it would never resolve");
}

bool LibeventEventPort::wait() {
  loopOnce(EVLOOP_ONCE);
  return false;  // no cross-thread wake()
}

bool LibeventEventPort::poll() {
  loopOnce(EVLOOP_NONBLOCK);
  return false;
}

void LibeventEventPort::setRunnable(bool runnable) {
  if (runnable) {
    runEvent.activate();
  } else {
    runEvent.remove();
  }
}

// ---------------------------------------------------------------------------------------------

LibeventTimer::LibeventTimer(event_base* base)
    : clock(kj::systemPreciseMonotonicClock()),
      timers(clock.now()),
      timeoutEvent(base, -1, 0, &timeoutCallback, this) {}

kj::TimePoint LibeventTimer::now() const { return clock.now(); }

kj::Promise<void> LibeventTimer::atTime(kj::TimePoint time) {
  advance();
  auto promise = timers.atTime(time);
  rearm();
  return promise;
}

kj::Promise<void> LibeventTimer::afterDelay(kj::Duration delay) {
  // The TimerImpl's clock only moves when advanced: bring it to now first so the delay counts from
  // the call, not from the last time a timer fired.
  advance();
  auto promise = timers.afterDelay(delay);
  rearm();
  return promise;
}

void LibeventTimer::timeoutCallback(evutil_socket_t, short, void* arg) {
  auto& self = *static_cast<LibeventTimer*>(arg);
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    self.advance();
    self.rearm();
  })) {
    logError("timer: ", exception->getDescription());
  }
}

void LibeventTimer::advance() { timers.advanceTo(clock.now()); }

void LibeventTimer::rearm() {
  KJ_IF_MAYBE(next, timers.nextEvent()) {
    // Round up: a timeout that fires a microsecond early would only re-arm itself.
    int64_t delayUs = (*next - clock.now()) / kj::MICROSECONDS + 1;
    if (delayUs < 0) delayUs = 0;
    struct timeval tv;
    tv.tv_sec = delayUs / 1000000;
    tv.tv_usec = delayUs % 1000000;
    KJ_REQUIRE(timeoutEvent.add(&tv), "event_add() failed");
  } else {
    timeoutEvent.remove();
  }
}

// ---------------------------------------------------------------------------------------------

KjOnLibevent::KjOnLibevent(event_base* base)
    : port(base), scope(port.getLoop()), libeventTimer(base) {}

}  // namespace tlstap
