// Re-encryption towards the backend (no --terminate): the client credentials and priorities that
// every backend session shares, built once at start-up, and the set-up of one backend session
// with the client's SNI and ALPN forwarded and the backend's certificate checked.
#pragma once

#include <gnutls/gnutls.h>
#include <kj/array.h>
#include <kj/memory.h>
#include <kj/string.h>
#include <kj/vector.h>

#include "front/tls-session.h"

namespace tlstap {

// Read-only after construction, so one instance serves every worker thread.
class BackendTlsConfig {
public:
  BackendTlsConfig() = default;
  ~BackendTlsConfig() noexcept;
  KJ_DISALLOW_COPY(BackendTlsConfig);

  // Trusts the system store plus `caFile` (PEM, --backend-ca), or nothing at all with
  // `insecure`. Returns the reason it cannot (naming the file), or nullptr.
  kj::Maybe<kj::String> init(kj::Maybe<kj::StringPtr> caFile, bool insecure);

  gnutls_certificate_credentials_t credentials() const { return certificateCredentials; }
  gnutls_priority_t priority() const { return priorityCache; }
  bool verifies() const { return verify; }

private:
  gnutls_certificate_credentials_t certificateCredentials = nullptr;
  gnutls_priority_t priorityCache = nullptr;
  bool verify = true;
};

// The client's ALPN protocols that can be offered to the backend, in the client's order: GnuTLS
// takes at most 8, each shorter than 32 bytes (longer ones are dropped; they are rare and no
// well-known protocol is among them).
kj::Vector<kj::StringPtr> forwardableAlpn(kj::ArrayPtr<const kj::String> offered);

// A client session towards the backend on `fd` (not owned). `name` is sent as SNI (unless it is
// an IP address, which SNI cannot carry) and is what the backend's certificate must name; it
// must outlive the session (GnuTLS keeps the pointer). `alpn`: the client's protocols.
kj::Own<TlsSession> newBackendSession(const BackendTlsConfig& config, int fd, kj::StringPtr name,
                                      kj::ArrayPtr<const kj::String> alpn);

}  // namespace tlstap
