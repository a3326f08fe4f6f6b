#include "relay.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <kj/debug.h>

#include "common/clock.h"

namespace tlstap {

namespace {
bool isReset(int error) { return error == ECONNRESET || error == EPIPE || error == ECONNABORTED; }
}  // namespace

Relay::Relay(TlsSession& client, int backendFd, kj::Maybe<RecordedFlow&> flow,
             kj::ArrayPtr<kj::byte> scratch, size_t bufferBytes)
    : client(client), backend(backendFd), flow(flow), scratch(scratch), toBackend(bufferBytes),
      toClient(bufferBytes) {}

bool Relay::recordingFull() const {
  KJ_IF_MAYBE(f, flow) return f->full();
  return false;
}

bool Relay::canReadClient() const {
  return aborted == nullptr && !clientEnded && toBackend.room() > 0 && !recordingFull();
}

bool Relay::canReadBackend() const {
  return aborted == nullptr && !backendEnded && toClient.room() > 0 && !recordingFull();
}

bool Relay::finished() const {
  return aborted != nullptr || (clientEnded && backendEnded && backendShutDown && clientClosed);
}

Relay::Wait Relay::clientWait() const {
  return client.wantsWrite() ? Wait::WRITE : Wait::READ;
}

RelayWants Relay::wants() const {
  RelayWants result;
  if (finished()) return result;
  bool clientRecv = canReadClient();
  result.clientRead = (clientRecv && clientRecvWait == Wait::READ) ||
                      clientSendWait == Wait::READ;
  result.clientWrite = (clientRecv && clientRecvWait == Wait::WRITE) ||
                       clientSendWait == Wait::WRITE;
  result.backendRead = canReadBackend() && backendRecvBlocked;
  result.backendWrite = !toBackend.empty() && backendSendBlocked;
  return result;
}

bool Relay::pump(size_t budget) {
  size_t moved = 0;
  // A socket that said EAGAIN is not tried again within this call: it cannot have changed in a
  // way that matters before the event loop reports it (wants() asks for it, level-triggered),
  // and every retry was a wasted system call per turn of the loop below.
  clientRecvAgain = clientSendAgain = backendRecvAgain = backendSendAgain = false;
  while (!finished()) {
    bool progress = false;
    // Writes first: they make room, so the reads after them can take more.
    progress |= flushToBackend(moved);
    progress |= flushToClient(moved);
    progress |= readClient(moved);
    progress |= readBackend(moved);
    progress |= endDirections();
    if (!progress) {
      // Nothing can move until an event comes, possibly not for a long time: an idle connection
      // must not hold the session's send buffer.
      client.releaseOutbox();
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
kj::Maybe<TlsResult> Relay::clientCall(Call&& call) {
  TlsResult result = {TlsStatus::AGAIN, 0};
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { result = call(); })) {
    abort(Side::CLIENT, exception->getDescription());
    return nullptr;
  }
  return result;
}

bool Relay::flushToBackend(size_t& moved) {
  if (aborted != nullptr || toBackend.empty() || backendSendAgain) return false;
  auto bytes = toBackend.readable();
  ssize_t n = ::send(backend, bytes.begin(), bytes.size(), MSG_NOSIGNAL);
  if (n > 0) {
    toBackend.consume(n);
    moved += n;
    backendSendBlocked = false;
    // The backend may answer at once; reading its answer in this same call lets the recording
    // carry request and response in one batch.
    backendRecvAgain = false;
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    backendSendBlocked = true;
    backendSendAgain = true;
    return false;
  }
  if (n < 0 && errno == EINTR) return true;
  abort(Side::SERVER, isReset(errno) ? kj::str("backend reset the connection")
                                     : kj::str("backend write: ", strerror(errno)));
  return false;
}

bool Relay::flushToClient(size_t& moved) {
  if (aborted != nullptr || clientSendAgain) return false;
  if (toClient.empty()) return flushClientOutput();
  // After AGAIN GnuTLS holds an encrypted record made from the front of these bytes; calling
  // again with the same front completes it and reports how much it took.
  auto bytes = toClient.readable();
  KJ_IF_MAYBE(result, clientCall([&]() { return client.send(bytes); })) {
    switch (result->status) {
      case TlsStatus::DONE:
        toClient.consume(result->bytes);
        moved += result->bytes;
        clientSendWait = Wait::NONE;
        return true;
      case TlsStatus::AGAIN:
        clientSendWait = clientWait();
        clientSendAgain = true;
        return false;
      case TlsStatus::END:
        abort(Side::CLIENT, "client closed the connection while the front was writing");
        return false;
    }
  }
  return false;
}

bool Relay::flushClientOutput() {
  // Ciphertext the session gathered and the socket did not take yet.
  if (!client.hasPendingOutput()) return false;
  KJ_IF_MAYBE(result, clientCall([&]() { return client.flush(); })) {
    if (result->status == TlsStatus::DONE) {
      clientSendWait = Wait::NONE;
      return true;
    }
    clientSendWait = clientWait();
    clientSendAgain = true;
  }
  return false;
}

bool Relay::readClient(size_t& moved) {
  if (!canReadClient() || clientRecvAgain) return false;
  auto buffer = scratch.slice(0, kj::min(scratch.size(), toBackend.room()));
  KJ_IF_MAYBE(result, clientCall([&]() { return client.recv(buffer); })) {
    int64_t now = wallClockUs();
    switch (result->status) {
      case TlsStatus::DONE: {
        auto bytes = buffer.slice(0, result->bytes).asConst();
        KJ_IF_MAYBE(f, flow) f->append(Side::CLIENT, now, bytes);
        toBackend.append(bytes);
        fromClient += bytes.size();
        moved += bytes.size();
        events++;
        clientRecvWait = Wait::NONE;
        return true;
      }
      case TlsStatus::AGAIN:
        clientRecvWait = clientWait();
        clientRecvAgain = true;
        return false;
      case TlsStatus::END:
        clientEnded = true;
        clientRecvWait = Wait::NONE;
        events++;
        KJ_IF_MAYBE(f, flow) f->finish(Side::CLIENT, now);
        return true;
    }
  }
  return false;
}

bool Relay::readBackend(size_t& moved) {
  if (!canReadBackend() || backendRecvAgain) return false;
  auto buffer = scratch.slice(0, kj::min(scratch.size(), toClient.room()));
  ssize_t n = ::recv(backend, buffer.begin(), buffer.size(), 0);
  int error = errno;
  int64_t now = wallClockUs();
  if (n > 0) {
    auto bytes = buffer.slice(0, n).asConst();
    KJ_IF_MAYBE(f, flow) f->append(Side::SERVER, now, bytes);
    toClient.append(bytes);
    fromBackend += n;
    moved += n;
    events++;
    backendRecvBlocked = false;
    return true;
  }
  if (n == 0) {
    backendEnded = true;
    events++;
    KJ_IF_MAYBE(f, flow) f->finish(Side::SERVER, now);
    return true;
  }
  if (error == EAGAIN || error == EWOULDBLOCK) {
    backendRecvBlocked = true;
    backendRecvAgain = true;
    return false;
  }
  if (error == EINTR) return true;
  abort(Side::SERVER, isReset(error) ? kj::str("backend reset the connection")
                                     : kj::str("backend read: ", strerror(error)));
  return false;
}

bool Relay::endDirections() {
  if (aborted != nullptr) return false;
  bool progress = false;
  if (clientEnded && toBackend.empty() && !backendShutDown) {
    // The client will send no more: let the backend see EOF, while its answer may still flow.
    ::shutdown(backend, SHUT_WR);
    backendShutDown = true;
    progress = true;
  }
  if (backendEnded && toClient.empty() && !clientClosed && !clientSendAgain) {
    TlsResult result = {TlsStatus::AGAIN, 0};
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { result = client.bye(); })) {
      if (!clientEnded) {
        abort(Side::CLIENT, exception->getDescription());
        return false;
      }
      // The client already ended its side and has gone: there is nobody left to tell.
      result = {TlsStatus::DONE, 0};
    }
    if (result.status == TlsStatus::AGAIN) {
      clientSendWait = clientWait();
      clientSendAgain = true;
    } else {
      ::shutdown(client.fd(), SHUT_WR);
      clientClosed = true;
      clientSendWait = Wait::NONE;
      progress = true;
    }
  }
  return progress;
}

}  // namespace tlstap
