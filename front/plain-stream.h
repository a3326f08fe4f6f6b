// A relay side without TLS: the plaintext backend of --terminate. Bytes go to the socket as they
// are; nothing is held back, so there is never pending output and bye() has nothing to send.
#pragma once

#include <kj/string.h>

#include "front/relay-stream.h"

namespace tlstap {

class PlainStream final : public RelayStream {
public:
  // `fd`: a connected, non-blocking socket (not owned). `peer` names it in error descriptions.
  PlainStream(int fd, kj::StringPtr peer) : socket(fd), peer(peer) {}
  KJ_DISALLOW_COPY(PlainStream);

  TlsResult recv(kj::ArrayPtr<kj::byte> buffer) override;
  TlsResult send(kj::ArrayPtr<const kj::byte> bytes) override;
  TlsResult flush() override { return {TlsStatus::DONE, 0}; }
  bool hasPendingOutput() const override { return false; }
  void releaseOutbox() override {}
  TlsResult bye() override { return {TlsStatus::DONE, 0}; }
  bool wantsWrite() const override { return againForWrite; }
  int fd() const override { return socket; }

private:
  int socket;
  kj::StringPtr peer;
  bool againForWrite = false;

  [[noreturn]] void fail(const char* what, int error);
};

}  // namespace tlstap
