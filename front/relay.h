// The two-way relay of one established connection: plaintext from the TLS client to the backend
// socket and back, every byte handed to the flow's recording at the moment it is read.
//
// It is a state machine driven by the connection's event callbacks: pump() moves whatever the
// sockets, the two bounded buffers and the record queue allow, then wants() says which socket
// readiness would let it move more. Backpressure falls out of that: a side is not read while the
// other side's buffer is full or the record queue is over its bound.
//
// Half-close is passed on: client close_notify/EOF -> shutdown(SHUT_WR) to the backend; backend
// EOF -> close_notify (and FIN) to the client. The relay is finished when both directions are,
// or at once when either side resets or fails (an abort, reported with the side at fault).
#pragma once

#include <stdint.h>
#include <kj/array.h>
#include <kj/string.h>

#include "common/side.h"
#include "front/flow-recorder.h"
#include "front/relay-buffer.h"
#include "front/tls-session.h"

namespace tlstap {

struct RelayWants {
  bool clientRead = false;
  bool clientWrite = false;
  bool backendRead = false;
  bool backendWrite = false;
};

class Relay {
public:
  // `scratch` is the worker's read buffer, shared by all its connections (only used during
  // pump()). `bufferBytes` bounds each direction's unwritten bytes.
  Relay(TlsSession& client, int backendFd, kj::Maybe<RecordedFlow&> flow,
        kj::ArrayPtr<kj::byte> scratch, size_t bufferBytes);
  KJ_DISALLOW_COPY(Relay);

  // Moves bytes until nothing more can move now, or until about `budget` bytes have moved; returns
  // true in the latter case (call again soon, after letting other connections run).
  bool pump(size_t budget);

  RelayWants wants() const;

  // Both directions are finished in order, or the relay was aborted.
  bool finished() const;
  // After an abort: the side that reset or failed, and why.
  kj::Maybe<Side> abortedBy() const { return aborted; }
  kj::StringPtr abortReason() const { return reason; }

  uint64_t bytesFrom(Side side) const { return side == Side::CLIENT ? fromClient : fromBackend; }
  // Changes whenever anything happens on the connection; the idle timer compares it.
  uint64_t activity() const { return events; }

private:
  enum class Wait : uint8_t { NONE, READ, WRITE };

  TlsSession& client;
  int backend;
  kj::Maybe<RecordedFlow&> flow;
  kj::ArrayPtr<kj::byte> scratch;
  RelayBuffer toBackend;  // read from the client, not yet written to the backend
  RelayBuffer toClient;   // read from the backend, not yet written to the client

  Wait clientRecvWait = Wait::NONE;  // an interrupted gnutls_record_recv, and what it waits for
  Wait clientSendWait = Wait::NONE;  // an interrupted gnutls_record_send or gnutls_bye
  bool backendRecvBlocked = false;
  bool backendSendBlocked = false;
  // Set when a call in this pump() found its socket not ready; cleared at the start of each pump.
  bool clientRecvAgain = false;
  bool clientSendAgain = false;
  bool backendRecvAgain = false;
  bool backendSendAgain = false;

  bool clientEnded = false;    // close_notify or EOF read from the client
  bool backendEnded = false;   // EOF read from the backend
  bool backendShutDown = false;  // shutdown(SHUT_WR) sent to the backend
  bool clientClosed = false;   // close_notify (and FIN) sent to the client
  kj::Maybe<Side> aborted;
  kj::String reason;

  uint64_t fromClient = 0;
  uint64_t fromBackend = 0;
  uint64_t events = 0;

  bool recordingFull() const;
  bool canReadClient() const;
  bool canReadBackend() const;
  Wait clientWait() const;

  bool flushToBackend(size_t& moved);
  bool flushToClient(size_t& moved);
  bool flushClientOutput();
  bool readClient(size_t& moved);
  bool readBackend(size_t& moved);
  bool endDirections();
  void abort(Side side, kj::StringPtr why);
  // Runs one TLS call; on failure aborts the relay (as the client's doing) and returns nullptr.
  template <typename Call>
  kj::Maybe<TlsResult> clientCall(Call&& call);
};

}  // namespace tlstap
