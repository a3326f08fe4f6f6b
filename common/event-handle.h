// One libevent `struct event`, owned: freed (and so removed from its base) when destroyed.
// libevent allows event_free() on a pending or active event, and from inside its own callback.
#pragma once

#include <event2/event.h>
#include <kj/common.h>
#include <kj/debug.h>

namespace tlstap {

class EventHandle {
public:
  EventHandle() = default;
  EventHandle(event_base* base, evutil_socket_t fd, short what, event_callback_fn callback,
              void* arg)
      : event(event_new(base, fd, what, callback, arg)) {
    KJ_ASSERT(event != nullptr, "event_new failed");
  }
  ~EventHandle() noexcept {
    if (event != nullptr) event_free(event);
  }
  EventHandle(EventHandle&& other) noexcept : event(other.event) { other.event = nullptr; }
  EventHandle& operator=(EventHandle&& other) noexcept {
    if (this != &other) {
      if (event != nullptr) event_free(event);
      event = other.event;
      other.event = nullptr;
    }
    return *this;
  }
  KJ_DISALLOW_COPY(EventHandle);

  explicit operator bool() const { return event != nullptr; }
  struct event* get() const { return event; }

  // Adds the event (again) with an optional timeout; a no-op without an event. False if
  // libevent refused (e.g. a closed fd): callers that would otherwise wait forever check it.
  bool add(const struct timeval* timeout = nullptr) {
    return event == nullptr || event_add(event, timeout) == 0;
  }
  void addSeconds(uint32_t seconds) {
    struct timeval timeout = {static_cast<time_t>(seconds), 0};
    add(&timeout);
  }
  void remove() {
    if (event != nullptr) event_del(event);
  }
  // Keeps a persistent fd event added exactly while `wanted`, without a system call when
  // nothing changes.
  void want(bool wanted) {
    if (event == nullptr) return;
    bool pending = event_pending(event, EV_READ | EV_WRITE | EV_TIMEOUT, nullptr) != 0;
    if (wanted && !pending) event_add(event, nullptr);
    if (!wanted && pending) event_del(event);
  }
  // Runs the callback soon from the event loop, even without an fd or timeout.
  void activate(short result = EV_TIMEOUT) {
    if (event != nullptr) event_active(event, result, 0);
  }

private:
  struct event* event = nullptr;
};

}  // namespace tlstap
