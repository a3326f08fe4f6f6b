// The embedded recorder as a RecorderLinkSource: each connect() asks the recorder's supervisor
// (embedded-recorder.h, recorder/supervisor.h) for a link over the control socket and receives
// the front's end of a fresh socket pair whose other end a running tlstap-recorder serves. The
// supervisor restarts a recorder that died, so after a link breaks, connect() again gives a link
// to the new recorder. It needs no fork, exec or new unix socket in the front: it works under
// the front's seccomp lock-down (it sends and receives on a socket it already has).
//
//     SupervisedRecorderSource source(base, embedded.takeControl());
//     source.connect().then([](kj::Own<kj::AsyncIoStream> link) { ... RecorderClient ... });
//
// connect() resolves once the supervisor answers, which after a crash may be up to 5 s (its
// restart delay); callers that need a bound add a timer. It rejects when the supervisor has
// exited (DISCONNECTED) or says the recorder refused its options (FAILED; refused() is then
// true): both are final, and every later connect() rejects the same way.
#pragma once

#include <event2/event.h>
#include <kj/async-io.h>
#include <kj/io.h>
#include <kj/vector.h>

#include "common/event-handle.h"
#include "front/recorder-link-source.h"

namespace tlstap {

class SupervisedRecorderSource final : public RecorderLinkSource {
public:
  // `control` is the front's end of the supervisor's control socket. The event_base must
  // outlive the source, and a KjOnLibevent must run on it. Destroying the source closes the
  // control socket: the supervisor then lets the recorder finish and exits.
  SupervisedRecorderSource(event_base* base, kj::AutoCloseFd control);
  ~SupervisedRecorderSource() noexcept(false);
  KJ_DISALLOW_COPY(SupervisedRecorderSource);

  // Calls that overlap are answered in order, one request to the supervisor at a time (e.g. the
  // client reconnecting while start-up asks why the first link broke). A connect() whose promise
  // is dropped before the answer leaves that answer (a link to a fresh recorder) for the next.
  kj::Promise<kj::Own<kj::AsyncIoStream>> connect() override;
  kj::StringPtr describe() const override;

  // True once the supervisor said the recorder refused its options (exit status 2, after
  // printing why): the front's start-up then exits 2 without a line of its own.
  bool refused() const { return recorderRefused; }

private:
  static void onReadable(evutil_socket_t, short, void* arg);
  // From the libevent callback: takes one answer and settles the first waiting connect().
  void receive();
  // Sends the request if a connect() waits for an answer and none is asked for.
  void ask();
  void fail(kj::Exception&& exception);

  event_base* base;
  kj::AutoCloseFd control;
  EventHandle readable;
  bool asked = false;  // a request is sent and its answer not yet received
  bool recorderRefused = false;
  kj::Vector<kj::Own<kj::PromiseFulfiller<kj::AutoCloseFd>>> waiting;  // oldest first
  kj::Maybe<kj::AutoCloseFd> unclaimed;  // an answer that came after its connect() was dropped
  kj::Maybe<kj::Exception> failure;      // final: every connect() rejects with it
};

}  // namespace tlstap
