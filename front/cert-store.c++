#include "cert-store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <gnutls/pkcs12.h>
#include <gnutls/x509.h>
#include <kj/debug.h>

#include "client-hello.h"
#include "common/log.h"
#include "common/password.h"

namespace tlstap {

namespace {

class Pkcs12 {
public:
  Pkcs12() { KJ_ASSERT(gnutls_pkcs12_init(&p12) == 0); }
  ~Pkcs12() { gnutls_pkcs12_deinit(p12); }
  KJ_DISALLOW_COPY(Pkcs12);

  gnutls_pkcs12_t p12 = nullptr;
};

bool isPem(const SecretString& contents) {
  return memmem(contents.cStr(), contents.size(), "-----BEGIN ", 11) != nullptr;
}

bool fileExists(kj::StringPtr path) { return access(path.cStr(), F_OK) == 0; }

struct ParsedSpec {
  kj::Vector<kj::String> names;
  kj::String file;
  kj::Maybe<kj::StringPtr> password;  // points into the spec
};

kj::Maybe<kj::String> parseSpec(kj::StringPtr spec, ParsedSpec& out) {
  KJ_IF_MAYBE(colon, spec.findFirst(':')) {
    auto namesText = kj::heapString(spec.slice(0, *colon));
    auto rest = spec.slice(*colon + 1);
    // The password may itself hold colons ("file:/path"), so FILE ends at the first one.
    KJ_IF_MAYBE(second, rest.findFirst(':')) {
      out.file = kj::heapString(rest.slice(0, *second));
      out.password = rest.slice(*second + 1);
    } else {
      out.file = kj::heapString(rest);
    }
    if (out.file.size() == 0) return kj::str("'", spec, "': FILE is empty");
    size_t start = 0;
    for (;;) {
      auto left = namesText.slice(start);
      size_t length = left.findFirst(',').orDefault(left.size());
      auto name = lowerCaseAscii(kj::heapString(left.slice(0, length)));
      bool wildcard = name.startsWith("*.");
      if (!isValidHostName(wildcard ? name.slice(2) : name.asPtr())) {
        return kj::str("name '", name, "' is not a host name or a *.domain wildcard");
      }
      for (auto& earlier : out.names) {
        if (earlier == name) return kj::str("name '", name, "' is given twice");
      }
      out.names.add(kj::mv(name));
      if (length == left.size()) break;
      start += length + 1;
    }
    return nullptr;
  }
  return kj::str("'", spec, "': expected NAME[,NAME...]:FILE[:PASSWORD]");
}

// Moves the certificate that belongs to `key` to the front: servers send the leaf first, and
// GnuTLS checks the key against certs[0].
kj::Maybe<kj::String> putLeafFirst(CertList& list, gnutls_x509_privkey_t key,
                                   kj::StringPtr file) {
  unsigned char keyId[64];
  size_t keyIdSize = sizeof(keyId);
  int rc = gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, keyId, &keyIdSize);
  if (rc < 0) return kj::str("'", file, "': unusable private key (", gnutls_strerror(rc), ")");
  for (unsigned i = 0; i < list.count; i++) {
    unsigned char certId[64];
    size_t certIdSize = sizeof(certId);
    if (gnutls_x509_crt_get_key_id(list.certs[i], GNUTLS_KEYID_USE_SHA256, certId,
                                   &certIdSize) < 0) {
      continue;
    }
    if (certIdSize == keyIdSize && memcmp(certId, keyId, keyIdSize) == 0) {
      // Keep the order of the rest: it is the chain as the user wrote it.
      auto leaf = list.certs[i];
      memmove(list.certs + 1, list.certs, i * sizeof(list.certs[0]));
      list.certs[0] = leaf;
      return nullptr;
    }
  }
  return kj::str("'", file, "': private key does not match any certificate in it");
}

kj::Maybe<kj::String> loadPem(const SecretString& chainPem, const SecretString& keyPem,
                              kj::StringPtr chainFile, kj::StringPtr keyFile,
                              const kj::Maybe<SecretString>& password, CertList& certs,
                              PrivateKey& key) {
  auto chainData = chainPem.asDatum();
  int rc = gnutls_x509_crt_list_import2(&certs.certs, &certs.count, &chainData,
                                        GNUTLS_X509_FMT_PEM, 0);
  if (rc < 0 || certs.count == 0) {
    if (rc == GNUTLS_E_BASE64_DECODING_ERROR || rc == GNUTLS_E_BASE64_UNEXPECTED_HEADER_ERROR ||
        rc == GNUTLS_E_NO_CERTIFICATE_FOUND || certs.count == 0) {
      return kj::str("'", chainFile, "': no certificate");
    }
    return kj::str("'", chainFile, "': bad certificate (", gnutls_strerror(rc), ")");
  }
  // GnuTLS reports a missing key in several ways depending on what else the file holds.
  if (memmem(keyPem.cStr(), keyPem.size(), "PRIVATE KEY-----", 16) == nullptr) {
    return kj::str("'", keyFile, "': no private key");
  }
  auto keyData = keyPem.asDatum();
  rc = gnutls_x509_privkey_init(&key.key);
  if (rc < 0) return kj::str("'", keyFile, "': ", gnutls_strerror(rc));
  const char* pass = nullptr;
  KJ_IF_MAYBE(p, password) pass = p->cStr();
  rc = gnutls_x509_privkey_import2(key.key, &keyData, GNUTLS_X509_FMT_PEM, pass, 0);
  if (rc < 0) {
    if (rc == GNUTLS_E_DECRYPTION_FAILED) {
      if (pass == nullptr || *pass == '\0') {
        return kj::str("'", keyFile, "': the private key is encrypted and no password was given");
      }
      return kj::str("'", keyFile, "': wrong password for the private key");
    }
    if (rc == GNUTLS_E_BASE64_UNEXPECTED_HEADER_ERROR || rc == GNUTLS_E_BASE64_DECODING_ERROR) {
      return kj::str("'", keyFile, "': no private key");
    }
    if (pass != nullptr && *pass != '\0' && memmem(keyPem.cStr(), keyPem.size(), "ENCRYPTED", 9)) {
      // A wrong password on an encrypted key without integrity check decrypts to garbage that
      // then fails to parse.
      return kj::str("'", keyFile, "': wrong password for the private key (",
                     gnutls_strerror(rc), ")");
    }
    return kj::str("'", keyFile, "': bad private key (", gnutls_strerror(rc), ")");
  }
  KJ_IF_MAYBE(error, putLeafFirst(certs, key.key, chainFile)) {
    if (chainFile != keyFile) {
      return kj::str("'", keyFile, "': key does not match the certificate in '", chainFile, "'");
    }
    return kj::mv(*error);
  }
  return nullptr;
}

kj::Maybe<kj::String> loadPkcs12(const SecretString& contents, kj::StringPtr file,
                                 const kj::Maybe<SecretString>& password, CertList& certs,
                                 PrivateKey& key) {
  Pkcs12 p12;
  auto data = contents.asDatum();
  int rc = gnutls_pkcs12_import(p12.p12, &data, GNUTLS_X509_FMT_DER, 0);
  if (rc < 0) {
    return kj::str("'", file, "': neither PEM nor PKCS#12 (", gnutls_strerror(rc), ")");
  }
  const char* pass = nullptr;
  KJ_IF_MAYBE(p, password) pass = p->cStr();
  // OpenSSL writes an empty password either as no password or as an empty BMPString and reads
  // both; so do we.
  rc = gnutls_pkcs12_verify_mac(p12.p12, pass);
  if (rc == GNUTLS_E_MAC_VERIFY_FAILED && (pass == nullptr || *pass == '\0')) {
    const char* other = pass == nullptr ? "" : nullptr;
    if (gnutls_pkcs12_verify_mac(p12.p12, other) == 0) {
      pass = other;
      rc = 0;
    }
  }
  if (rc == GNUTLS_E_MAC_VERIFY_FAILED) {
    if (pass == nullptr || *pass == '\0') {
      return kj::str("'", file, "': PKCS#12 file needs a password (none given)");
    }
    return kj::str("'", file, "': wrong password for the PKCS#12 file");
  }
  // Any other MAC result (a file written without a MAC) leaves the password to be checked by
  // decrypting the bags below.
  gnutls_x509_crt_t* extra = nullptr;
  unsigned extraCount = 0;
  rc = gnutls_pkcs12_simple_parse(p12.p12, pass, &key.key, &certs.certs, &certs.count, &extra,
                                  &extraCount, nullptr, 0);
  for (unsigned i = 0; i < extraCount; i++) gnutls_x509_crt_deinit(extra[i]);
  gnutls_free(extra);
  if (rc < 0) {
    if (rc == GNUTLS_E_DECRYPTION_FAILED) {
      return kj::str("'", file, "': wrong password for the PKCS#12 file");
    }
    if (key.key == nullptr) {
      return kj::str("'", file, "': no private key, or no certificate for it (",
                     gnutls_strerror(rc), ")");
    }
    return kj::str("'", file, "': bad PKCS#12 file (", gnutls_strerror(rc), ")");
  }
  if (key.key == nullptr) return kj::str("'", file, "': no private key");
  if (certs.count == 0) return kj::str("'", file, "': no certificate for the private key");
  return putLeafFirst(certs, key.key, file);
}

// Warns about a certificate that clients will reject for a name (a lab may want that anyway).
void checkNames(gnutls_x509_crt_t leaf, kj::ArrayPtr<const kj::String> names,
                kj::StringPtr file) {
  for (auto& name : names) {
    // A wildcard covers any one label; ask about a name under it.
    auto probe = name.startsWith("*.") ? kj::str("tlstap-probe", name.slice(1)) : kj::str(name);
    if (!gnutls_x509_crt_check_hostname2(leaf, probe.cStr(), 0)) {
      logWarning("--servercert: the certificate in '", file, "' is not valid for '", name,
                 "'; clients will reject it");
    }
  }
  time_t expires = gnutls_x509_crt_get_expiration_time(leaf);
  if (expires != time_t(-1) && expires < time(nullptr)) {
    logWarning("--servercert: the certificate in '", file, "' has expired");
  }
}

}  // namespace

ServerCredentials::ServerCredentials() {
  int rc = gnutls_certificate_allocate_credentials(&credentials);
  KJ_REQUIRE(rc == 0, "gnutls_certificate_allocate_credentials", gnutls_strerror(rc));
}

ServerCredentials::~ServerCredentials() noexcept(false) {
  if (credentials != nullptr) gnutls_certificate_free_credentials(credentials);
}

CertStore::CertStore() {}
CertStore::~CertStore() noexcept(false) {}

PrivateKey::~PrivateKey() { reset(); }

void PrivateKey::reset() {
  // GnuTLS zeroes the key material when a privkey is deinitialised.
  if (key != nullptr) gnutls_x509_privkey_deinit(key);
  key = nullptr;
}

CertList::~CertList() {
  for (unsigned i = 0; i < count; i++) gnutls_x509_crt_deinit(certs[i]);
  gnutls_free(certs);
}

kj::Maybe<kj::String> loadKeyAndChain(kj::StringPtr file, kj::Maybe<kj::StringPtr> passwordSpec,
                                      SecretOrigin origin, kj::StringPtr option,
                                      KeyAndChain& out) {
  kj::Maybe<SecretString> password;
  KJ_IF_MAYBE(spec, passwordSpec) {
    SecretString secret;
    bool wasLiteral = false;
    KJ_IF_MAYBE(error, resolvePassword(*spec, secret, wasLiteral)) {
      return kj::str("'", file, "': ", *error);
    }
    if (wasLiteral && secret.size() > 0 && origin == SecretOrigin::COMMAND_LINE) {
      logWarning(option, ": the password for '", file, "' is given on the command "
                 "line, where other users can read it; use file:PATH, env:NAME or fd:N");
    }
    password = kj::mv(secret);
  }

  // "CHAIN+KEY" names two files, unless a file by the whole name exists.
  kj::StringPtr chainFile = file;
  kj::StringPtr keyFile = file;
  kj::String chainStorage, keyStorage;
  if (!fileExists(file)) {
    KJ_IF_MAYBE(plus, file.findFirst('+')) {
      chainStorage = kj::heapString(file.slice(0, *plus));
      keyStorage = kj::heapString(file.slice(*plus + 1));
      chainFile = chainStorage;
      keyFile = keyStorage;
    }
  }

  SecretString chainContents;
  KJ_IF_MAYBE(error, readSecretFile(chainFile, chainContents)) return kj::mv(*error);
  if (chainFile != keyFile) {
    SecretString keyContents;
    KJ_IF_MAYBE(error, readSecretFile(keyFile, keyContents)) return kj::mv(*error);
    return loadPem(chainContents, keyContents, chainFile, keyFile, password, out.certs, out.key);
  } else if (isPem(chainContents)) {
    return loadPem(chainContents, chainContents, chainFile, chainFile, password, out.certs,
                   out.key);
  } else {
    return loadPkcs12(chainContents, chainFile, password, out.certs, out.key);
  }
}

kj::Maybe<kj::String> CertStore::addServerCert(kj::StringPtr spec, SecretOrigin origin) {
  ParsedSpec parsed;
  KJ_IF_MAYBE(error, parseSpec(spec, parsed)) return kj::mv(*error);
  for (auto& name : parsed.names) {
    auto& map = name.startsWith("*.") ? wildcardParents : exactNames;
    auto key = name.startsWith("*.") ? name.slice(2) : name.asPtr();
    if (map.find(key) != nullptr) {
      return kj::str("name '", name, "' is already given by an earlier --servercert");
    }
  }

  KeyAndChain loaded;
  KJ_IF_MAYBE(error, loadKeyAndChain(parsed.file, parsed.password, origin, "--servercert",
                                     loaded)) {
    return kj::mv(*error);
  }
  auto& certs = loaded.certs;
  auto& key = loaded.key;

  auto owned = kj::heap<ServerCredentials>();
  int rc = gnutls_certificate_set_x509_key(owned->get(), certs.certs, certs.count, key.key);
  if (rc < 0) {
    if (rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
      return kj::str("'", parsed.file, "': key does not match certificate");
    }
    return kj::str("'", parsed.file, "': ", gnutls_strerror(rc));
  }
  checkNames(certs.certs[0], parsed.names, parsed.file);

  auto handle = owned->get();
  credentials.add(kj::mv(owned));
  for (auto& name : parsed.names) {
    if (name.startsWith("*.")) {
      wildcardParents.insert(kj::heapString(name.slice(2)), handle);
    } else {
      exactNames.insert(kj::mv(name), handle);
    }
  }
  return nullptr;
}

kj::Maybe<gnutls_certificate_credentials_t> CertStore::find(kj::StringPtr serverName) const {
  // Callers pass the SNI (already lower case) on the hot path: only copy when needed.
  kj::String lowered;
  for (char c : serverName) {
    if (c >= 'A' && c <= 'Z') {
      lowered = lowerCaseAscii(serverName);
      serverName = lowered;
      break;
    }
  }
  KJ_IF_MAYBE(found, exactNames.find(serverName)) return *found;
  KJ_IF_MAYBE(dot, serverName.findFirst('.')) {
    // "*.example.com" covers exactly one label: a.example.com, not b.a.example.com.
    if (*dot > 0) {
      KJ_IF_MAYBE(found, wildcardParents.find(serverName.slice(*dot + 1))) return *found;
    }
  }
  return nullptr;
}

}  // namespace tlstap
