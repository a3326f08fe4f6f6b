#include "tls-link.h"

#include <arpa/inet.h>
#include <string.h>
#include <unistd.h>
#include <gnutls/crypto.h>
#include <kj/debug.h>

#include "common/log.h"
#include "common/tls-stream.h"

namespace tlstap {

namespace {

// TLS 1.3 only: the link is ours on both ends, so nothing older needs to be spoken. AES-GCM
// first, by name: the link carries every recorded byte, and with NORMAL's order the two ends
// agreed on ChaCha20 here (nettle's generic code), at a fifth of AES-GCM's speed with AES-NI.
#define LINK_PRIORITY_BASE                                                               \
  "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"
constexpr const char* CERT_PRIORITY = LINK_PRIORITY_BASE;
// PSK only with an (EC)DHE exchange: a PSK that leaks later must not decrypt recorded links.
constexpr const char* PSK_PRIORITY = LINK_PRIORITY_BASE ":-KX-ALL:+ECDHE-PSK:+DHE-PSK";
// Both ends share one key, so the identity names the protocol rather than a party.
constexpr const char* PSK_IDENTITY = "tlstap-link";
// A shorter key is a typing mistake or a weak password, not a key.
constexpr size_t MIN_PSK_BYTES = 16;
constexpr size_t SHA256_BYTES = 32;

bool isHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

kj::String toHex(kj::ArrayPtr<const kj::byte> bytes) {
  static constexpr char DIGITS[] = "0123456789abcdef";
  auto text = kj::heapString(bytes.size() * 2);
  for (size_t i = 0; i < bytes.size(); i++) {
    text[2 * i] = DIGITS[bytes[i] >> 4];
    text[2 * i + 1] = DIGITS[bytes[i] & 15];
  }
  return text;
}

bool isIpLiteral(kj::StringPtr host) {
  kj::byte address[16];
  return inet_pton(AF_INET, host.cStr(), address) == 1 ||
         inet_pton(AF_INET6, host.cStr(), address) == 1;
}

SecretOrigin originOf(const OptionParser& parser) {
  return parser.configFile() == nullptr ? SecretOrigin::COMMAND_LINE : SecretOrigin::CONFIG_FILE;
}

kj::Maybe<kj::String> setOnce(kj::Maybe<kj::String>& field, kj::StringPtr value) {
  if (field != nullptr) return kj::str("given twice");
  if (value.size() == 0) return kj::str("empty value");
  field = kj::heapString(value);
  return nullptr;
}

// Resolves a PASSWORD spec of a --link-... option, warning about a literal on the command line.
kj::Maybe<kj::String> resolveSecret(kj::StringPtr option, kj::StringPtr spec, SecretOrigin origin,
                                    SecretString& out) {
  bool wasLiteral = false;
  KJ_IF_MAYBE(error, resolvePassword(spec, out, wasLiteral)) {
    return kj::str(option, ": ", *error);
  }
  if (wasLiteral && origin == SecretOrigin::COMMAND_LINE) {
    logWarning(option, ": the secret is given on the command line, where other users can read "
               "it; use file:PATH, env:NAME or fd:N");
  }
  return nullptr;
}

// --- RAII owners ---------------------------------------------------------------------------------

class PriorityCache {
public:
  explicit PriorityCache(const char* text) {
    int rc = gnutls_priority_init(&cache, text, nullptr);
    KJ_REQUIRE(rc == 0, "gnutls_priority_init", gnutls_strerror(rc));
  }
  ~PriorityCache() noexcept { gnutls_priority_deinit(cache); }
  KJ_DISALLOW_COPY(PriorityCache);
  gnutls_priority_t get() const { return cache; }

private:
  gnutls_priority_t cache = nullptr;
};

class CertificateCredentials {
public:
  CertificateCredentials() {
    int rc = gnutls_certificate_allocate_credentials(&credentials);
    KJ_REQUIRE(rc == 0, "gnutls_certificate_allocate_credentials", gnutls_strerror(rc));
  }
  ~CertificateCredentials() noexcept { gnutls_certificate_free_credentials(credentials); }
  KJ_DISALLOW_COPY(CertificateCredentials);
  gnutls_certificate_credentials_t get() const { return credentials; }

private:
  gnutls_certificate_credentials_t credentials = nullptr;
};

class PskServerCredentials {
public:
  PskServerCredentials() {
    int rc = gnutls_psk_allocate_server_credentials(&credentials);
    KJ_REQUIRE(rc == 0, "gnutls_psk_allocate_server_credentials", gnutls_strerror(rc));
  }
  ~PskServerCredentials() noexcept { gnutls_psk_free_server_credentials(credentials); }
  KJ_DISALLOW_COPY(PskServerCredentials);
  gnutls_psk_server_credentials_t get() const { return credentials; }

private:
  gnutls_psk_server_credentials_t credentials = nullptr;
};

class PskClientCredentials {
public:
  PskClientCredentials() {
    int rc = gnutls_psk_allocate_client_credentials(&credentials);
    KJ_REQUIRE(rc == 0, "gnutls_psk_allocate_client_credentials", gnutls_strerror(rc));
  }
  ~PskClientCredentials() noexcept { gnutls_psk_free_client_credentials(credentials); }
  KJ_DISALLOW_COPY(PskClientCredentials);
  gnutls_psk_client_credentials_t get() const { return credentials; }

private:
  gnutls_psk_client_credentials_t credentials = nullptr;
};

// What a failed handshake means when GnuTLS's own words do not say it: the hint for a GnuTLS
// error, or nullptr.
using FailureHint = kj::StringPtr (*)(int code);

// Starts the handshake of a set-up session and resolves with the stream once it is done.
kj::Promise<kj::Own<kj::AsyncIoStream>> handshake(kj::Own<kj::AsyncIoStream> inner,
                                                  TlsSessionHandle session,
                                                  kj::Maybe<TlsStream::PeerCheck> check,
                                                  FailureHint hint = nullptr) {
  auto stream = kj::heap<TlsStream>(kj::mv(inner), kj::mv(session), kj::mv(check));
  auto& ref = *stream;
  auto promise = ref.handshake();
  if (hint != nullptr) {
    // Runs while the continuation below, which owns the stream, still exists.
    promise = promise.catch_([&ref, hint](kj::Exception&& exception) {
      auto text = hint(ref.failureCode());
      if (text.size() > 0) {
        kj::throwFatalException(kj::Exception(
            exception.getType(), exception.getFile(), exception.getLine(),
            kj::str(exception.getDescription(), " (", text, ")")));
      }
      kj::throwFatalException(kj::mv(exception));
    });
  }
  return promise.then([stream = kj::mv(stream)]() mutable -> kj::Own<kj::AsyncIoStream> {
    return kj::mv(stream);
  });
}

kj::StringPtr pskServerHint(int code) {
  // TLS 1.3 checks the PSK through the binder of the ClientHello; GnuTLS reports a binder made
  // with another key as an illegal parameter.
  return code == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER ? "the front's --link-psk differs"
                                                     : kj::StringPtr();
}

// --- Certificates --------------------------------------------------------------------------------

// "--link-cert FILE[:PASSWORD]": a PEM file with the certificate (chain) and its key,
// "CERT.pem+KEY.pem", or PKCS#12.
kj::Maybe<kj::String> loadOwnCertificate(gnutls_certificate_credentials_t credentials,
                                         kj::StringPtr spec, SecretOrigin origin) {
  kj::String file;
  SecretString password;
  bool hasPassword = false;
  KJ_IF_MAYBE(colon, spec.findFirst(':')) {
    file = kj::heapString(spec.slice(0, *colon));
    KJ_IF_MAYBE(error, resolveSecret("--link-cert", spec.slice(*colon + 1), origin, password)) {
      return kj::mv(*error);
    }
    hasPassword = true;
  } else {
    file = kj::heapString(spec);
  }
  kj::StringPtr certFile = file, keyFile = file;
  kj::String certStorage, keyStorage;
  if (access(file.cStr(), F_OK) != 0) {
    KJ_IF_MAYBE(plus, file.findFirst('+')) {
      certStorage = kj::heapString(file.slice(0, *plus));
      keyStorage = kj::heapString(file.slice(*plus + 1));
      certFile = certStorage;
      keyFile = keyStorage;
    }
  }
  SecretString certContents, keyContents;
  KJ_IF_MAYBE(error, readSecretFile(certFile, certContents)) {
    return kj::str("--link-cert: ", *error);
  }
  if (keyFile != certFile) {
    KJ_IF_MAYBE(error, readSecretFile(keyFile, keyContents)) {
      return kj::str("--link-cert: ", *error);
    }
  }
  auto& keyPem = keyFile != certFile ? keyContents : certContents;
  const char* pass = hasPassword ? password.cStr() : nullptr;
  auto certData = certContents.asDatum();
  int rc;
  if (memmem(certContents.cStr(), certContents.size(), "-----BEGIN ", 11) != nullptr) {
    if (memmem(keyPem.cStr(), keyPem.size(), "PRIVATE KEY-----", 16) == nullptr) {
      return kj::str("--link-cert: '", keyFile, "': no private key (give one PEM file with the "
                     "certificate and its key, or CERT.pem+KEY.pem)");
    }
    auto keyData = keyPem.asDatum();
    rc = gnutls_certificate_set_x509_key_mem2(credentials, &certData, &keyData,
                                              GNUTLS_X509_FMT_PEM, pass, 0);
  } else {
    rc = gnutls_certificate_set_x509_simple_pkcs12_mem(credentials, &certData,
                                                       GNUTLS_X509_FMT_DER, pass);
  }
  if (rc < 0) {
    if (rc == GNUTLS_E_DECRYPTION_FAILED || rc == GNUTLS_E_MAC_VERIFY_FAILED) {
      return kj::str("--link-cert: '", keyFile, "': ",
                     hasPassword ? "wrong password" : "the key is encrypted; give :PASSWORD");
    }
    if (rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
      return kj::str("--link-cert: '", keyFile, "': the key does not match the certificate");
    }
    return kj::str("--link-cert: '", certFile, "': ", gnutls_strerror(rc));
  }
  return nullptr;
}

kj::Maybe<kj::String> loadCa(gnutls_certificate_credentials_t credentials, kj::StringPtr file) {
  SecretString contents;
  KJ_IF_MAYBE(error, readSecretFile(file, contents)) return kj::str("--link-ca: ", *error);
  auto data = contents.asDatum();
  int rc = gnutls_certificate_set_x509_trust_mem(credentials, &data, GNUTLS_X509_FMT_PEM);
  if (rc < 0) return kj::str("--link-ca: '", file, "': ", gnutls_strerror(rc));
  if (rc == 0) return kj::str("--link-ca: '", file, "': no PEM certificate in it");
  return nullptr;
}

class CertificateLink final : public TlsLink {
public:
  CertificateLink(Role role, const TlsLinkOptions& options)
      : role(role), priority(CERT_PRIORITY), pins(kj::heapArray<kj::String>(options.pins.size())) {
    for (auto i : kj::indices(options.pins)) pins[i] = kj::heapString(options.pins[i]);
    KJ_IF_MAYBE(ca, options.ca) {
      hasCa = true;
      description = kj::str("certificates issued by ", *ca,
                            pins.size() > 0 ? ", and pinned" : "");
    } else {
      description = kj::str("pinned certificate");
    }
  }

  kj::Maybe<kj::String> load(const TlsLinkOptions& options) {
    KJ_IF_MAYBE(error, loadOwnCertificate(credentials.get(), KJ_ASSERT_NONNULL(options.cert),
                                          options.certOrigin)) {
      return kj::mv(*error);
    }
    KJ_IF_MAYBE(ca, options.ca) return loadCa(credentials.get(), *ca);
    return nullptr;
  }

  kj::Promise<kj::Own<kj::AsyncIoStream>> wrap(kj::Own<kj::AsyncIoStream> inner,
                                               kj::StringPtr serverName) override {
    return kj::evalNow([&]() {
      TlsSessionHandle session(role == Role::CLIENT ? GNUTLS_CLIENT
                                                    : GNUTLS_SERVER | GNUTLS_NO_TICKETS);
      auto s = session.get();
      KJ_REQUIRE(gnutls_priority_set(s, priority.get()) == 0);
      KJ_REQUIRE(gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, credentials.get()) == 0);
      if (role == Role::SERVER) {
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        // Without the CA list a front sends whatever certificate it has, so that a wrong one is
        // refused for what it is rather than as "no certificate".
        gnutls_certificate_send_x509_rdn_sequence(s, 1);
      }
      kj::String expectedName;
      if (role == Role::CLIENT && serverName.size() > 0) {
        expectedName = kj::heapString(serverName);
        if (!isIpLiteral(serverName)) {
          gnutls_server_name_set(s, GNUTLS_NAME_DNS, serverName.begin(), serverName.size());
        }
      }
      TlsStream::PeerCheck check =
          [this, expectedName = kj::mv(expectedName)](gnutls_session_t s) {
            return checkPeer(s, expectedName);
          };
      return handshake(kj::mv(inner), kj::mv(session), kj::mv(check));
    });
  }

  kj::StringPtr describe() const override { return description; }

private:
  Role role;
  CertificateCredentials credentials;
  PriorityCache priority;
  kj::Array<kj::String> pins;
  bool hasCa = false;
  kj::String description;

  // With both --link-ca and --link-pin, both must hold: the pin narrows what the CA issued down
  // to the certificates named.
  kj::Maybe<kj::String> checkPeer(gnutls_session_t session, kj::StringPtr expectedName) {
    unsigned count = 0;
    const gnutls_datum_t* chain = gnutls_certificate_get_peers(session, &count);
    if (chain == nullptr || count == 0) return kj::str("it sent no certificate");
    if (pins.size() > 0) {
      kj::byte digest[SHA256_BYTES];
      int rc = gnutls_hash_fast(GNUTLS_DIG_SHA256, chain[0].data, chain[0].size, digest);
      if (rc < 0) return kj::str("hashing its certificate: ", gnutls_strerror(rc));
      auto fingerprint = toHex(kj::arrayPtr(digest, SHA256_BYTES));
      bool pinned = false;
      for (auto& pin : pins) pinned = pinned || pin == fingerprint;
      if (!pinned) {
        return kj::str("its certificate sha256:", fingerprint, " is not pinned by --link-pin");
      }
    }
    if (!hasCa) return nullptr;
    unsigned status = 0;
    const char* name = expectedName.size() > 0 ? expectedName.cStr() : nullptr;
    int rc = gnutls_certificate_verify_peers3(session, name, &status);
    if (rc < 0) return kj::str("verifying its certificate: ", gnutls_strerror(rc));
    if (status == 0) return nullptr;
    gnutls_datum_t text = {nullptr, 0};
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) < 0) {
      return kj::str("its certificate is not trusted by --link-ca (status ", status, ")");
    }
    auto reason = kj::str("its certificate is not trusted by --link-ca: ",
                          kj::StringPtr(reinterpret_cast<const char*>(text.data), text.size));
    gnutls_free(text.data);
    return kj::mv(reason);
  }
};

// --- Pre-shared key ------------------------------------------------------------------------------

class PskLink final : public TlsLink {
public:
  PskLink(Role role, SecretString key) : role(role), priority(PSK_PRIORITY), key(kj::mv(key)) {
    if (role == Role::CLIENT) {
      auto data = this->key.asDatum();
      int rc = gnutls_psk_set_client_credentials(clientCredentials.get(), PSK_IDENTITY, &data,
                                                 GNUTLS_PSK_KEY_RAW);
      KJ_REQUIRE(rc == 0, "gnutls_psk_set_client_credentials", gnutls_strerror(rc));
    } else {
      gnutls_psk_set_server_credentials_function(serverCredentials.get(), &PskLink::lookup);
    }
  }

  kj::Promise<kj::Own<kj::AsyncIoStream>> wrap(kj::Own<kj::AsyncIoStream> inner,
                                               kj::StringPtr) override {
    return kj::evalNow([&]() {
      TlsSessionHandle session(role == Role::CLIENT ? GNUTLS_CLIENT
                                                    : GNUTLS_SERVER | GNUTLS_NO_TICKETS);
      auto s = session.get();
      KJ_REQUIRE(gnutls_priority_set(s, priority.get()) == 0);
      if (role == Role::CLIENT) {
        KJ_REQUIRE(gnutls_credentials_set(s, GNUTLS_CRD_PSK, clientCredentials.get()) == 0);
      } else {
        KJ_REQUIRE(gnutls_credentials_set(s, GNUTLS_CRD_PSK, serverCredentials.get()) == 0);
        gnutls_session_set_ptr(s, this);
      }
      return handshake(kj::mv(inner), kj::mv(session), nullptr,
                       role == Role::SERVER ? &pskServerHint : nullptr);
    });
  }

  kj::StringPtr describe() const override { return "pre-shared key"; }

private:
  Role role;
  PriorityCache priority;
  SecretString key;
  PskClientCredentials clientCredentials;
  PskServerCredentials serverCredentials;

  static int lookup(gnutls_session_t session, const char* identity, gnutls_datum_t* out) {
    auto& self = *static_cast<PskLink*>(gnutls_session_get_ptr(session));
    if (strcmp(identity, PSK_IDENTITY) != 0) {
      TlsStream::noteAuthFailure(session, kj::str("unknown PSK identity '", identity, "'"));
      return -1;
    }
    // GnuTLS frees this copy when the handshake no longer needs it.
    out->data = static_cast<unsigned char*>(gnutls_malloc(self.key.size()));
    if (out->data == nullptr) return -1;
    memcpy(out->data, self.key.asBytes().begin(), self.key.size());
    out->size = unsigned(self.key.size());
    return 0;
  }
};

}  // namespace

kj::Maybe<kj::String> parsePin(kj::StringPtr text, kj::String& out) {
  if (!text.startsWith("sha256:")) {
    return kj::str("'", text, "': expected sha256:HEX (the certificate's SHA-256 fingerprint)");
  }
  kj::Vector<char> digits;
  for (char c : text.slice(7)) {
    if (c == ':') continue;
    if (!isHexDigit(c)) return kj::str("'", text, "': '", c, "' is not a hex digit");
    digits.add(c >= 'A' && c <= 'F' ? char(c - 'A' + 'a') : c);
  }
  if (digits.size() != 2 * SHA256_BYTES) {
    return kj::str("'", text, "': a SHA-256 fingerprint has 64 hex digits, not ", digits.size());
  }
  digits.add('\0');
  out = kj::String(digits.releaseAsArray());
  return nullptr;
}

void addTlsLinkOptions(OptionParser& parser, TlsLinkOptions& options) {
  auto* o = &options;
  auto* p = &parser;
  parser.addOption("link-cert", 0, "FILE[:PASSWORD]",
                   "own certificate and key for the TLS link (PEM with both, CERT.pem+KEY.pem, or "
                   "PKCS#12); PASSWORD: file:PATH, env:NAME, fd:N",
                   [o, p](kj::StringPtr value) -> kj::Maybe<kj::String> {
    if (value.startsWith(":")) return kj::str("'", value, "': no FILE");
    KJ_IF_MAYBE(colon, value.findFirst(':')) {
      if (isLiteralPassword(value.slice(*colon + 1))) p->noteLiteralSecret();
    }
    o->certOrigin = originOf(*p);
    return setOnce(o->cert, value);
  });
  parser.addOption("link-ca", 0, "FILE",
                   "trust the TLS link peer's certificate if this CA (PEM) issued it",
                   [o](kj::StringPtr value) { return setOnce(o->ca, value); });
  parser.addOption("link-pin", 0, "sha256:HEX",
                   "trust the TLS link peer's certificate with this SHA-256 fingerprint; "
                   "repeatable",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    kj::String pin;
    KJ_IF_MAYBE(error, parsePin(value, pin)) return kj::mv(*error);
    o->pins.add(kj::mv(pin));
    return nullptr;
  });
  parser.addOption("link-psk", 0, "PASSWORD",
                   "pre-shared key of the TLS link instead of certificates (file:PATH, env:NAME, "
                   "fd:N)",
                   [o, p](kj::StringPtr value) -> kj::Maybe<kj::String> {
    if (isLiteralPassword(value)) p->noteLiteralSecret();
    o->pskOrigin = originOf(*p);
    return setOnce(o->psk, value);
  });
}

kj::Maybe<kj::String> checkTlsLinkOptions(const TlsLinkOptions& options) {
  bool certificates = options.cert != nullptr || options.ca != nullptr || options.pins.size() > 0;
  if (options.psk != nullptr && certificates) {
    return kj::str("--link-psk: cannot be combined with --link-cert, --link-ca or --link-pin "
                   "(choose a pre-shared key or certificates)");
  }
  if (options.psk != nullptr) return nullptr;
  if (options.cert == nullptr) {
    return kj::str(options.ca != nullptr ? "--link-ca" : "--link-pin",
                   ": needs --link-cert FILE (each side presents its own certificate)");
  }
  if (options.ca == nullptr && options.pins.size() == 0) {
    return kj::str("--link-cert: needs --link-ca FILE or --link-pin sha256:HEX to check the "
                   "peer's certificate");
  }
  return nullptr;
}

kj::Maybe<kj::String> TlsLink::load(const TlsLinkOptions& options, Role role,
                                    kj::Own<TlsLink>& out) {
  KJ_IF_MAYBE(error, checkTlsLinkOptions(options)) return kj::mv(*error);
  KJ_IF_MAYBE(spec, options.psk) {
    SecretString key;
    KJ_IF_MAYBE(error, resolveSecret("--link-psk", *spec, options.pskOrigin, key)) {
      return kj::mv(*error);
    }
    if (key.size() < MIN_PSK_BYTES) {
      return kj::str("--link-psk: the key has ", key.size(), " bytes; at least ", MIN_PSK_BYTES,
                     " are needed (make one with: openssl rand -hex 32)");
    }
    out = kj::heap<PskLink>(role, kj::mv(key));
    return nullptr;
  }
  auto link = kj::heap<CertificateLink>(role, options);
  KJ_IF_MAYBE(error, link->load(options)) return kj::mv(*error);
  out = kj::mv(link);
  return nullptr;
}

}  // namespace tlstap
