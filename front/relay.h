// The two-way relay of one established connection: plaintext from the client's TLS session to
// the backend (a plain socket, or a TLS session when re-encrypting) and back, every byte handed to
// the flow's recording at the moment it is read.
//
// It is a state machine driven by the connection's event callbacks: pump() moves whatever the
// sockets, the two bounded buffers and the record queue allow, then wants() says which socket
// readiness would let it move more. Backpressure falls out of that: a side is not read while the
// other side's buffer is full or the record queue is over its bound.
//
// Half-close is passed on the same way both ways: the end of one side's stream (close_notify or
// EOF) -> close_notify, if that side speaks TLS, and a FIN to the other side. The relay is
// finished when both directions are, or at once when either side resets or fails (an abort,
// reported with the side at fault).
#pragma once

#include <stdint.h>
#include <kj/array.h>
#include <kj/string.h>

#include "common/side.h"
#include "front/flow-recorder.h"
#include "front/relay-buffer.h"
#include "front/relay-stream.h"

namespace tlstap {

struct RelayWants {
  bool clientRead = false;
  bool clientWrite = false;
  bool backendRead = false;
  bool backendWrite = false;
};

class Relay {
public:
  // `bufferBytes` bounds each direction's unwritten bytes.
  Relay(RelayStream& client, RelayStream& backend, kj::Maybe<RecordedFlow&> flow,
        size_t bufferBytes);
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

  uint64_t bytesFrom(Side side) const { return end(side).bytesRead; }
  // Changes whenever anything happens on the connection; the idle timer compares it.
  uint64_t activity() const { return events; }

private:
  enum class Wait : uint8_t { NONE, READ, WRITE };

  // One side of the relay and the state of the calls made on it.
  struct End {
    End(RelayStream& stream, Side side, size_t bufferBytes)
        : stream(stream), side(side), outgoing(bufferBytes) {}
    RelayStream& stream;
    Side side;
    RelayBuffer outgoing;  // read from the other side, not yet written to this one

    Wait recvWait = Wait::NONE;  // an interrupted recv, and what it waits for
    Wait sendWait = Wait::NONE;  // an interrupted send, flush or bye
    // Set when a call in this pump() found the socket not ready; cleared at the start of each
    // pump.
    bool recvAgain = false;
    bool sendAgain = false;
    bool ended = false;   // its stream ended: close_notify or EOF read from it
    bool closed = false;  // our direction to it ended: close_notify (if TLS) and FIN sent
    uint64_t bytesRead = 0;

    kj::StringPtr name() const { return side == Side::CLIENT ? "client" : "backend"; }
    Wait waitFor() const { return stream.wantsWrite() ? Wait::WRITE : Wait::READ; }
  };

  End clientEnd;
  End backendEnd;
  kj::Maybe<RecordedFlow&> flow;
  kj::Maybe<Side> aborted;
  kj::String reason;
  uint64_t events = 0;

  const End& end(Side side) const { return side == Side::CLIENT ? clientEnd : backendEnd; }
  End& other(End& e) { return &e == &clientEnd ? backendEnd : clientEnd; }
  const End& other(const End& e) const { return &e == &clientEnd ? backendEnd : clientEnd; }

  bool recordingFull() const;
  bool canRead(const End& from) const;
  void wantsOf(const End& e, bool& read, bool& write) const;

  bool flush(End& to, size_t& moved);
  bool flushPending(End& to);
  bool read(End& from, size_t& moved);
  bool endDirection(End& to);
  void abort(Side side, kj::StringPtr why);
  // Runs one call on `e`'s stream; on failure aborts the relay (as that side's doing) and returns
  // nullptr.
  template <typename Call>
  kj::Maybe<TlsResult> callOn(End& e, Call&& call);
};

}  // namespace tlstap
