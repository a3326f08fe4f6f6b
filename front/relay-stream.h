// One side of a relay: a connected, non-blocking socket, with TLS (TlsSession) or without
// (PlainStream). The relay drives both of its sides through this one interface, so a plain
// backend and a re-encrypted one share every rule about buffers, backpressure and half-close.
#pragma once

#include <stddef.h>
#include <kj/common.h>

namespace tlstap {

enum class TlsStatus {
  DONE,   // the call completed; `bytes` says how much was transferred
  AGAIN,  // wait until the socket is ready (wantsWrite() says which way), then call again
  END,    // the peer ended the stream (close_notify, or EOF without it)
};

struct TlsResult {
  TlsStatus status;
  size_t bytes;
};

class RelayStream {
public:
  virtual ~RelayStream() noexcept(false) = default;

  // Each of these returns DONE, AGAIN or END, or throws a kj::Exception: DISCONNECTED when the
  // peer reset the connection, FAILED for any other fatal error. The description names the peer.
  virtual TlsResult recv(kj::ArrayPtr<kj::byte> buffer) = 0;
  // After AGAIN, call again with at least the bytes of the interrupted call (a TLS session has
  // already encrypted them); DONE then reports how many bytes were taken.
  virtual TlsResult send(kj::ArrayPtr<const kj::byte> bytes) = 0;
  // Writes output a send() accepted but the socket did not take yet: DONE once there is none.
  virtual TlsResult flush() = 0;
  virtual bool hasPendingOutput() const = 0;
  // Frees send buffers that hold nothing, for when the connection goes quiet.
  virtual void releaseOutbox() = 0;
  // Ends our direction at the stream level (TLS close_notify, after pending output); the caller
  // then shuts the socket down for writing. The peer may go on sending.
  virtual TlsResult bye() = 0;

  // After AGAIN: whether the interrupted call waits for the socket to be writable (else readable).
  virtual bool wantsWrite() const = 0;
  virtual int fd() const = 0;
};

}  // namespace tlstap
