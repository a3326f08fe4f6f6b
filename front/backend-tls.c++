#include "backend-tls.h"

#include <arpa/inet.h>
#include <kj/debug.h>

#include "common/password.h"

namespace tlstap {

namespace {

// TLS 1.3 and 1.2, as towards clients; X25519 first so that the key share GnuTLS sends first is
// the one most servers pick, with no HelloRetryRequest. The ciphers are the client side's set in
// the same order (tls-session.c++): AES-GCM first where the CPU has AES instructions, for a
// backend that takes the client's preference.
constexpr const char* BACKEND_PRIORITY_AES_FIRST =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:"
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:"
    "-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "+AES-128-CCM:+AES-256-CCM:+AES-128-CBC:+AES-256-CBC";
constexpr const char* BACKEND_PRIORITY_CHACHA20_FIRST =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:"
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:"
    "-CIPHER-ALL:+CHACHA20-POLY1305:+AES-128-GCM:+AES-256-GCM:"
    "+AES-128-CCM:+AES-256-CCM:+AES-128-CBC:+AES-256-CBC";

// GnuTLS's ALPN limits (lib/ext/alpn.h): more protocols, or a longer name, is an error.
constexpr size_t MAX_ALPN_PROTOCOLS = 8;
constexpr size_t MAX_ALPN_NAME_BYTES = 31;

bool isIpAddress(kj::StringPtr name) {
  unsigned char address[16];
  return inet_pton(AF_INET, name.cStr(), address) == 1 ||
         inet_pton(AF_INET6, name.cStr(), address) == 1;
}

}  // namespace

BackendTlsConfig::~BackendTlsConfig() noexcept {
  if (priorityCache != nullptr) gnutls_priority_deinit(priorityCache);
  if (certificateCredentials != nullptr) {
    gnutls_certificate_free_credentials(certificateCredentials);
  }
}

kj::Maybe<kj::String> BackendTlsConfig::init(kj::Maybe<kj::StringPtr> caFile, bool insecure) {
  verify = !insecure;
  int rc = gnutls_priority_init(
      &priorityCache,
      cpuHasAesInstructions() ? BACKEND_PRIORITY_AES_FIRST : BACKEND_PRIORITY_CHACHA20_FIRST,
      nullptr);
  if (rc < 0) {
    priorityCache = nullptr;
    return kj::str("backend TLS priorities: ", gnutls_strerror(rc));
  }
  rc = gnutls_certificate_allocate_credentials(&certificateCredentials);
  if (rc < 0) {
    certificateCredentials = nullptr;
    return kj::str("backend TLS credentials: ", gnutls_strerror(rc));
  }
  if (insecure) return nullptr;
  rc = gnutls_certificate_set_x509_system_trust(certificateCredentials);
  if (rc < 0 && caFile == nullptr) {
    return kj::str("the system trust store cannot be loaded (", gnutls_strerror(rc),
                   "); give --backend-ca FILE");
  }
  KJ_IF_MAYBE(file, caFile) {
    SecretString contents;
    KJ_IF_MAYBE(error, readSecretFile(*file, contents)) return kj::str("--backend-ca: ", *error);
    gnutls_datum_t pem = {const_cast<unsigned char*>(contents.asBytes().begin()),
                          unsigned(contents.size())};
    rc = gnutls_certificate_set_x509_trust_mem(certificateCredentials, &pem,
                                               GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
      return kj::str("--backend-ca: '", *file, "': bad certificate (", gnutls_strerror(rc), ")");
    }
    if (rc == 0) return kj::str("--backend-ca: '", *file, "': no PEM certificate in it");
  }
  return nullptr;
}

kj::Vector<kj::StringPtr> forwardableAlpn(kj::ArrayPtr<const kj::String> offered) {
  kj::Vector<kj::StringPtr> result;
  for (auto& protocol : offered) {
    if (result.size() == MAX_ALPN_PROTOCOLS) break;
    if (protocol.size() == 0 || protocol.size() > MAX_ALPN_NAME_BYTES) continue;
    result.add(protocol);
  }
  return result;
}

kj::Own<TlsSession> newBackendSession(const BackendTlsConfig& config, int fd, kj::StringPtr name,
                                      kj::ArrayPtr<const kj::String> alpn) {
  auto tls = kj::heap<TlsSession>(GNUTLS_CLIENT, fd, "backend");
  auto session = tls->handle();
  int rc = gnutls_priority_set(session, config.priority());
  if (rc >= 0) {
    rc = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, config.credentials());
  }
  if (rc >= 0 && !isIpAddress(name)) {
    rc = gnutls_server_name_set(session, GNUTLS_NAME_DNS, name.begin(), name.size());
  }
  auto protocols = forwardableAlpn(alpn);
  if (rc >= 0 && protocols.size() > 0) {
    // GnuTLS copies the names.
    KJ_STACK_ARRAY(gnutls_datum_t, list, protocols.size(), 8, 8);
    for (size_t i = 0; i < protocols.size(); i++) {
      list[i] = {reinterpret_cast<unsigned char*>(const_cast<char*>(protocols[i].begin())),
                 unsigned(protocols[i].size())};
    }
    rc = gnutls_alpn_set_protocols(session, list.begin(), list.size(), 0);
  }
  // The handshake fails with GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR unless the chain leads to a
  // trusted root and the leaf names `name` (a DNS name, or an IP address in its SANs).
  if (rc >= 0 && config.verifies()) gnutls_session_set_verify_cert(session, name.cStr(), 0);
  if (rc < 0) {
    kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                          kj::str("backend TLS session set-up: ",
                                                  gnutls_strerror(rc))));
  }
  return tls;
}

}  // namespace tlstap
