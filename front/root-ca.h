// tlstap's own root CA, which signs the certificates the front forges for names no --servercert
// covers. It is either loaded with --cacert load:FILE[:PASSWORD], or generated at the first start
// and kept in a state directory (--cadir) so that every later start, and so every client that
// installed it, sees the same certificate. Like PolarProxy, the front always has a CA: without
// --cacert one is generated.
#pragma once

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <time.h>
#include <kj/array.h>
#include <kj/memory.h>
#include <kj/string.h>

#include "front/cert-store.h"
#include "common/password.h"

namespace tlstap {

// The name of the generated CA's file (certificate and key, PEM) inside --cadir.
constexpr const char* ROOT_CA_FILE_NAME = "root-ca.pem";
// The Common Name of a generated CA when no --cn is given.
constexpr const char* DEFAULT_CA_COMMON_NAME = "tlstap root CA";

// A CA certificate and its signing key, read-only once made: forging threads share it.
class RootCa {
public:
  // Takes a chain whose first certificate is the CA's, with its key; checks that it may sign
  // certificates. `file` names where it came from in errors and log lines.
  static kj::Maybe<kj::String> fromKeyAndChain(KeyAndChain& loaded, kj::StringPtr file,
                                               kj::Own<RootCa>& out);
  RootCa() = default;  // empty: for fromKeyAndChain()
  ~RootCa() noexcept;
  KJ_DISALLOW_COPY(RootCa);

  gnutls_x509_crt_t certificate() const { return chain.certs[0]; }
  // The CA certificate first, then any issuers of it that came with it (sent after a leaf).
  kj::ArrayPtr<const gnutls_x509_crt_t> certificates() const {
    return kj::arrayPtr(chain.certs, chain.count);
  }
  gnutls_privkey_t signingKey() const { return key; }
  kj::ArrayPtr<const kj::byte> der() const { return derBytes; }
  kj::StringPtr commonName() const { return cn; }
  // "AB:CD:..." (SHA-256 of the DER), what a user compares after installing the CA.
  kj::StringPtr fingerprint() const { return sha256; }
  time_t expiration() const { return notAfter; }

private:
  CertList chain;
  gnutls_privkey_t key = nullptr;  // GnuTLS zeroes it when freed
  kj::Array<kj::byte> derBytes;
  kj::String cn;
  kj::String sha256;
  time_t notAfter = 0;
};

// Where the CA comes from: the options --cacert, --cadir and --cn.
struct RootCaSource {
  kj::Maybe<kj::StringPtr> caCert;  // "load:FILE[:PASSWORD]"
  SecretOrigin caCertOrigin = SecretOrigin::COMMAND_LINE;
  kj::Maybe<kj::StringPtr> caDir;
  kj::Maybe<kj::StringPtr> commonName;
};

// Loads the --cacert CA, or the generated one from the CA directory, generating and storing it
// there first if there is none. `description` says which CA is in use, with its fingerprint, for
// the log once start-up has succeeded. Returns one line starting with the option it is about, or
// nullptr.
kj::Maybe<kj::String> openRootCa(const RootCaSource& source, kj::Own<RootCa>& out,
                                 kj::String& description);

// The CA directory when --cadir is not given: $STATE_DIRECTORY (systemd's StateDirectory=) if
// set, else /var/lib/tlstap for root, else $XDG_STATE_HOME/tlstap or ~/.local/state/tlstap.
kj::Maybe<kj::String> defaultCaDir(kj::String& out);

// Loads DIR/root-ca.pem, or generates a CA named `commonName` and stores it there (creating DIR
// with mode 0700, the file with 0600). `created` tells which. Refuses a key file other users can
// read. The error names the directory or file, without an option prefix.
kj::Maybe<kj::String> loadOrCreateRootCa(kj::StringPtr dir, kj::StringPtr commonName,
                                         kj::Own<RootCa>& out, bool& created);

// -x FILE: writes the CA certificate as DER.
kj::Maybe<kj::String> exportCaCertificate(const RootCa& ca, kj::StringPtr path);

}  // namespace tlstap
