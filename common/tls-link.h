// The mutually authenticated TLS 1.3 link between tlstap-front and a recorder on another host
// (DESIGN.md, "Security model"). Both programs take the same options and both sides
// authenticate the other, in one of two ways:
//
//   certificates:     --link-cert FILE[:PASSWORD] (own certificate and key) with
//                     --link-ca FILE (the CA that issued the peer's certificate),
//                     --link-pin sha256:HEX (the SHA-256 fingerprint of the peer's certificate,
//                     repeatable for a rotation), or both (then both must hold)
//   pre-shared key:   --link-psk PASSWORD-SPEC (file:, env:, fd:), TLS 1.3 PSK with (EC)DHE
//
// The front is the TLS client, the recorder the server. A peer that fails is refused inside the
// handshake, before the caller sees a stream, so no RPC message of it is ever read.
#pragma once

#include <gnutls/gnutls.h>
#include <kj/async-io.h>
#include <kj/string.h>
#include <kj/vector.h>

#include "common/options.h"
#include "common/password.h"

namespace tlstap {

struct TlsLinkOptions {
  kj::Maybe<kj::String> cert;  // --link-cert FILE[:PASSWORD], the whole spec
  SecretOrigin certOrigin = SecretOrigin::COMMAND_LINE;
  kj::Maybe<kj::String> ca;    // --link-ca FILE
  kj::Vector<kj::String> pins;  // --link-pin: 64 lower-case hex digits each
  kj::Maybe<kj::String> psk;   // --link-psk PASSWORD-SPEC
  SecretOrigin pskOrigin = SecretOrigin::COMMAND_LINE;

  bool given() const {
    return cert != nullptr || ca != nullptr || pins.size() > 0 || psk != nullptr;
  }
  // Wipes the specs that may hold a literal secret (--link-cert's password, --link-psk), as the
  // front does its --servercert specs: call once TlsLink::load() has read them.
  void wipeSecrets() {
    KJ_IF_MAYBE(spec, cert) wipe(*spec);
    KJ_IF_MAYBE(spec, psk) wipe(*spec);
  }
  // The name of one option that was given, for error lines ("--link-psk").
  kj::StringPtr optionName() const {
    return psk != nullptr ? "--link-psk" : cert != nullptr ? "--link-cert"
                                         : ca != nullptr   ? "--link-ca"
                                                           : "--link-pin";
  }
};

// Registers --link-cert, --link-ca, --link-pin and --link-psk.
void addTlsLinkOptions(OptionParser& parser, TlsLinkOptions& options);

// Checks the combination: a PSK, or a certificate with a CA, pins or both. Returns one line
// naming the option, or nullptr. Call only when some link option was given.
kj::Maybe<kj::String> checkTlsLinkOptions(const TlsLinkOptions& options);

// "sha256:HEX" (HEX with or without colons, as `openssl x509 -fingerprint -sha256` prints it)
// to 64 lower-case hex digits; the error or nullptr.
kj::Maybe<kj::String> parsePin(kj::StringPtr text, kj::String& out);

// The loaded credentials of one side, shared by all its link connections.
class TlsLink {
public:
  enum class Role { CLIENT, SERVER };

  // Reads the files and secrets the options name. Returns "--link-...: cause", or nullptr with
  // `out` set. Warns (log) about a literal password on the command line.
  static kj::Maybe<kj::String> load(const TlsLinkOptions& options, Role role,
                                    kj::Own<TlsLink>& out);

  virtual ~TlsLink() noexcept(false) = default;

  // Runs the handshake over `inner` and resolves with the authenticated stream, or rejects with
  // one line saying why the peer was refused. `serverName` (client side) is the host the
  // recorder was named by; with --link-ca its certificate must be valid for it.
  virtual kj::Promise<kj::Own<kj::AsyncIoStream>> wrap(kj::Own<kj::AsyncIoStream> inner,
                                                       kj::StringPtr serverName = nullptr) = 0;

  // "certificates issued by ca.pem", "pinned certificate", "pre-shared key", for log lines.
  virtual kj::StringPtr describe() const = 0;
};

}  // namespace tlstap
