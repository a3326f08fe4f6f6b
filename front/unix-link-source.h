// --recorder unix:/path: each link is a new connection to the recorder's unix socket.
//
// It creates a unix socket per link, which the front's seccomp policy forbids after lock-down;
// there the links come from the supervisor instead, behind the same RecorderLinkSource.
#pragma once

#include <event2/event.h>
#include <kj/string.h>

#include "common/address.h"
#include "front/recorder-link-source.h"

namespace tlstap {

class UnixLinkSource final : public RecorderLinkSource {
public:
  // `address` is an AF_UNIX address; `name` ("unix:/path") names it in log lines. The event_base
  // must outlive the links.
  UnixLinkSource(event_base* base, SocketAddress address, kj::String name);

  // Resolves at once with the connected stream, or rejects with "cannot connect to NAME: cause"
  // (no socket there, nobody listening, its backlog full).
  kj::Promise<kj::Own<kj::AsyncIoStream>> connect() override;
  kj::StringPtr describe() const override { return name; }

private:
  event_base* base;
  SocketAddress address;
  kj::String name;
};

// Socket buffer of the front's end of a local link. The default (~200 KiB) fills with three
// batches: the front then waits on the recorder and both wake once per batch. A few MiB lets
// the recorder take many batches per wake-up. Best effort: capped by net.core.wmem_max.
constexpr int LOCAL_LINK_BUFFER_BYTES = 4 << 20;

}  // namespace tlstap
