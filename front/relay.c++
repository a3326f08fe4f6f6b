#include "relay.h"

#include <sys/socket.h>
#include <kj/debug.h>

#include "common/clock.h"

namespace tlstap {

Relay::Relay(RelayStream& client, RelayStream& backend, kj::Maybe<RecordedFlow&> flow,
             size_t bufferBytes)
    : clientEnd(client, Side::CLIENT, bufferBytes), backendEnd(backend, Side::SERVER, bufferBytes),
      flow(flow) {}

bool Relay::recordingFull() const {
  KJ_IF_MAYBE(f, flow) return f->full();
  return false;
}

bool Relay::canRead(const End& from) const {
  return aborted == nullptr && !from.ended && other(from).outgoing.room() > 0 && !recordingFull();
}

bool Relay::finished() const {
  return aborted != nullptr ||
         (clientEnd.ended && backendEnd.ended && clientEnd.closed && backendEnd.closed);
}

void Relay::wantsOf(const End& e, bool& read, bool& write) const {
  // A TLS call may wait for the other readiness than its name says (a handshake message, a
  // key update): each call asks for what its last AGAIN waited for.
  bool receiving = canRead(e);
  read = (receiving && e.recvWait == Wait::READ) || e.sendWait == Wait::READ;
  write = (receiving && e.recvWait == Wait::WRITE) || e.sendWait == Wait::WRITE;
}

RelayWants Relay::wants() const {
  RelayWants result;
  if (finished()) return result;
  wantsOf(clientEnd, result.clientRead, result.clientWrite);
  wantsOf(backendEnd, result.backendRead, result.backendWrite);
  return result;
}

bool Relay::pump(size_t budget) {
  size_t moved = 0;
  // A socket that said EAGAIN is not tried again within this call: it cannot have changed in a
  // way that matters before the event loop reports it (wants() asks for it, level-triggered),
  // and every retry was a wasted system call per turn of the loop below.
  for (End* e : {&clientEnd, &backendEnd}) e->recvAgain = e->sendAgain = false;
  while (!finished()) {
    bool progress = false;
    // Writes first: they make room, so the reads after them can take more.
    progress |= flush(backendEnd, moved);
    progress |= flush(clientEnd, moved);
    progress |= read(clientEnd, moved);
    progress |= read(backendEnd, moved);
    progress |= endDirection(backendEnd);
    progress |= endDirection(clientEnd);
    if (!progress) {
      // Nothing can move until an event comes, possibly not for a long time: an idle connection
      // must not hold the sessions' send buffers, nor its own.
      clientEnd.stream.releaseOutbox();
      backendEnd.stream.releaseOutbox();
      clientEnd.outgoing.releaseIfEmpty();
      backendEnd.outgoing.releaseIfEmpty();
      return false;
    }
    if (moved >= budget) return !finished();
  }
  return false;
}

void Relay::abort(Side side, kj::StringPtr why) {
  if (aborted != nullptr) return;
  aborted = side;
  reason = kj::heapString(why);
  events++;
}

template <typename Call>
kj::Maybe<TlsResult> Relay::callOn(End& e, Call&& call) {
  TlsResult result = {TlsStatus::AGAIN, 0};
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { result = call(); })) {
    abort(e.side, exception->getDescription());
    return nullptr;
  }
  return result;
}

bool Relay::flush(End& to, size_t& moved) {
  if (aborted != nullptr || to.sendAgain) return false;
  if (to.outgoing.empty()) return flushPending(to);
  // After AGAIN a TLS session holds an encrypted record made from the front of these bytes;
  // calling again with the same front completes it and reports how much it took.
  auto bytes = to.outgoing.readable();
  KJ_IF_MAYBE(result, callOn(to, [&]() { return to.stream.send(bytes); })) {
    switch (result->status) {
      case TlsStatus::DONE:
        to.outgoing.consume(result->bytes);
        moved += result->bytes;
        to.sendWait = Wait::NONE;
        // The backend may answer at once; reading its answer in this same call lets the
        // recording carry request and response in one batch.
        if (&to == &backendEnd) to.recvAgain = false;
        return true;
      case TlsStatus::AGAIN:
        to.sendWait = to.waitFor();
        to.sendAgain = true;
        return false;
      case TlsStatus::END:
        abort(to.side, kj::str(to.name(), " closed the connection while the front was writing"));
        return false;
    }
  }
  return false;
}

bool Relay::flushPending(End& to) {
  // Ciphertext the session gathered and the socket did not take yet.
  if (!to.stream.hasPendingOutput()) return false;
  KJ_IF_MAYBE(result, callOn(to, [&]() { return to.stream.flush(); })) {
    if (result->status == TlsStatus::DONE) {
      to.sendWait = Wait::NONE;
      return true;
    }
    to.sendWait = to.waitFor();
    to.sendAgain = true;
  }
  return false;
}

bool Relay::read(End& from, size_t& moved) {
  auto& to = other(from);
  bool progress = false;
  // A TLS session hands out one record (16 KiB at most) per call: reading on while there is room
  // lets the other side write several records at once (TlsSession::send coalesces them).
  while (canRead(from) && !from.recvAgain) {
    // Straight into the other side's buffer: copying every byte relayed out of a read buffer
    // cost the front about 4% of its time in bulk transfers.
    auto buffer = to.outgoing.writable();
    TlsResult result = {TlsStatus::AGAIN, 0};
    KJ_IF_MAYBE(r, callOn(from, [&]() { return from.stream.recv(buffer); })) {
      result = *r;
    } else {
      return false;
    }
    int64_t now = wallClockUs();
    switch (result.status) {
      case TlsStatus::DONE: {
        auto bytes = buffer.slice(0, result.bytes).asConst();
        KJ_IF_MAYBE(f, flow) f->append(from.side, now, bytes);
        to.outgoing.commit(bytes.size());
        from.bytesRead += bytes.size();
        moved += bytes.size();
        events++;
        from.recvWait = Wait::NONE;
        progress = true;
        break;
      }
      case TlsStatus::AGAIN:
        from.recvWait = from.waitFor();
        from.recvAgain = true;
        return progress;
      case TlsStatus::END:
        from.ended = true;
        from.recvWait = Wait::NONE;
        events++;
        KJ_IF_MAYBE(f, flow) f->finish(from.side, now);
        return true;
    }
  }
  return progress;
}

bool Relay::endDirection(End& to) {
  // The other side will send no more: once everything it sent is written, `to` sees the end
  // (close_notify if it speaks TLS, then a FIN), while its answer may still flow.
  if (aborted != nullptr || to.closed || !other(to).ended || !to.outgoing.empty() ||
      to.sendAgain) {
    return false;
  }
  TlsResult result = {TlsStatus::AGAIN, 0};
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { result = to.stream.bye(); })) {
    if (!to.ended) {
      abort(to.side, exception->getDescription());
      return false;
    }
    // That side already ended its stream and has gone: there is nobody left to tell.
    result = {TlsStatus::DONE, 0};
  }
  if (result.status == TlsStatus::AGAIN) {
    to.sendWait = to.waitFor();
    to.sendAgain = true;
    return false;
  }
  ::shutdown(to.stream.fd(), SHUT_WR);
  to.closed = true;
  to.sendWait = Wait::NONE;
  return true;
}

}  // namespace tlstap
