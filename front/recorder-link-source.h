// Where the front's recorder link comes from. RecorderClient asks its source for a new link at
// start-up and again (with backoff) after a link breaks, without knowing whether the recorder is
// the embedded child, a local unix socket or a remote host reached over mutually authenticated TLS.
//
// After lock-down the front may not fork, execute or create unix sockets (DESIGN.md, "Security
// model"), so a source that needs any of those gets its file descriptors from a helper process
// set up before lock-down; a TCP source creates its own socket.
#pragma once

#include <kj/async-io.h>
#include <kj/string.h>

namespace tlstap {

class RecorderLinkSource {
public:
  virtual ~RecorderLinkSource() noexcept(false) = default;

  // Opens a new link: resolves with a connected stream on this thread's event loop, ready for
  // Cap'n Proto (any TLS handshake and authentication done), or rejects with a one-line reason.
  virtual kj::Promise<kj::Own<kj::AsyncIoStream>> connect() = 0;

  // How log lines name this recorder: "embedded recorder", "unix:/run/tlstap.sock",
  // "recorder.example:4433".
  virtual kj::StringPtr describe() const = 0;
};

}  // namespace tlstap
