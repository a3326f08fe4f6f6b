// The certificates and keys the front serves, by server name. Loaded once at start-up, before the
// sandbox closes the file system; read-only afterwards, so find() may be called from any thread.
#pragma once

#include <gnutls/gnutls.h>
#include <kj/map.h>
#include <kj/memory.h>
#include <kj/string.h>
#include <kj/vector.h>

#include "common/password.h"

namespace tlstap {

// A private key as GnuTLS reads it; GnuTLS zeroes the key material when it is freed.
class PrivateKey {
public:
  PrivateKey() = default;
  ~PrivateKey();
  KJ_DISALLOW_COPY(PrivateKey);

  void reset();
  gnutls_x509_privkey_t key = nullptr;
};

// A certificate array allocated by GnuTLS (gnutls_x509_crt_list_import2, pkcs12_simple_parse).
class CertList {
public:
  CertList() = default;
  ~CertList();
  KJ_DISALLOW_COPY(CertList);

  gnutls_x509_crt_t* certs = nullptr;
  unsigned count = 0;
};

// A certificate chain, the certificate of the key first, and its private key.
struct KeyAndChain {
  CertList certs;
  PrivateKey key;
};

// Reads a certificate chain and its key from FILE: PKCS#12 (.p12/.pfx), a PEM file holding the
// chain and the key, or "CHAIN.pem+KEY.pem". `passwordSpec` (a resolvePassword() spec) opens the
// PKCS#12 file or an encrypted PEM key. Returns a one-line error naming the file and the cause,
// or nullptr. A literal password from the command line (`origin`) is warned about, naming
// `option`. Shared by --servercert and --cacert.
kj::Maybe<kj::String> loadKeyAndChain(kj::StringPtr file, kj::Maybe<kj::StringPtr> passwordSpec,
                                      SecretOrigin origin, kj::StringPtr option,
                                      KeyAndChain& out);

// One gnutls_certificate_credentials_t holding a certificate chain and its key, ready for
// gnutls_credentials_set() on server sessions.
class ServerCredentials {
public:
  ServerCredentials();
  ~ServerCredentials() noexcept(false);
  KJ_DISALLOW_COPY(ServerCredentials);

  gnutls_certificate_credentials_t get() const { return credentials; }

private:
  gnutls_certificate_credentials_t credentials = nullptr;
};

class CertStore {
public:
  CertStore();
  ~CertStore() noexcept(false);
  KJ_DISALLOW_COPY(CertStore);

  // "--servercert NAME[,NAME...]:FILE[:PASSWORD]". FILE is PKCS#12 (.p12/.pfx), a PEM file
  // holding the chain and the key, or "CHAIN.pem+KEY.pem" (Let's Encrypt fullchain.pem+
  // privkey.pem). PASSWORD (a resolvePassword() spec) opens the PKCS#12 file or an encrypted PEM
  // key. Names are host names or "*.example.com" (one label). Returns a one-line error naming
  // the file or name and the cause, without an option prefix, or nullptr. Logs a warning when
  // the password is a literal from the command line (`origin`), or the certificate does not
  // cover a name.
  kj::Maybe<kj::String> addServerCert(kj::StringPtr spec,
                                      SecretOrigin origin = SecretOrigin::COMMAND_LINE);

  // The credentials for a server name: exact match first, then a wildcard, case-insensitive.
  // nullptr if no certificate covers it. Valid as long as this store lives.
  kj::Maybe<gnutls_certificate_credentials_t> find(kj::StringPtr serverName) const;

  bool empty() const { return credentials.size() == 0; }

private:
  kj::Vector<kj::Own<ServerCredentials>> credentials;
  kj::HashMap<kj::String, gnutls_certificate_credentials_t> exactNames;
  // "*.example.com" is stored under "example.com".
  kj::HashMap<kj::String, gnutls_certificate_credentials_t> wildcardParents;
};

}  // namespace tlstap
