#include "root-ca.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gnutls/crypto.h>
#include <kj/debug.h>
#include <kj/io.h>

#include "common/log.h"

namespace tlstap {

namespace {

// Ten years, as PolarProxy's and most private CAs: the CA is installed on clients by hand, so it
// should not need replacing often. Leaves are short-lived instead (cert-forge.c++).
constexpr time_t CA_VALIDITY_SECONDS = 3650 * 24 * 3600;
// A client whose clock is a little behind must not see a CA that is not valid yet.
constexpr time_t CLOCK_SKEW_SECONDS = 3600;

// Owners for the GnuTLS handles used while generating.
class Certificate {
public:
  Certificate() { KJ_ASSERT(gnutls_x509_crt_init(&crt) == 0); }
  ~Certificate() { gnutls_x509_crt_deinit(crt); }
  KJ_DISALLOW_COPY(Certificate);
  gnutls_x509_crt_t crt = nullptr;
};

kj::String hexWithColons(kj::ArrayPtr<const kj::byte> bytes) {
  static const char DIGITS[] = "0123456789ABCDEF";
  kj::Vector<char> text(bytes.size() * 3 + 1);
  for (size_t i = 0; i < bytes.size(); i++) {
    if (i > 0) text.add(':');
    text.add(DIGITS[bytes[i] >> 4]);
    text.add(DIGITS[bytes[i] & 15]);
  }
  text.add('\0');
  return kj::String(text.releaseAsArray());
}

kj::String commonNameOf(gnutls_x509_crt_t crt) {
  char buffer[256];
  size_t size = sizeof(buffer);
  if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buffer, &size) < 0) {
    return kj::str("");
  }
  return kj::heapString(buffer, strnlen(buffer, size));
}

void randomSerial(kj::byte (&serial)[16]) {
  int rc = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
  KJ_REQUIRE(rc == 0, "gnutls_rnd", gnutls_strerror(rc));
  // A positive INTEGER with no leading zero byte: strict parsers refuse anything else.
  serial[0] = (serial[0] & 0x7f) | 0x40;
}

#define GNUTLS_CHECK(call)                                                   \
  do {                                                                       \
    int rc_ = (call);                                                        \
    if (rc_ < 0) return kj::str(#call, ": ", gnutls_strerror(rc_));          \
  } while (false)

// The PEM text of a new self-signed CA (certificate, then its PKCS#8 key) in `out`.
kj::Maybe<kj::String> generateCa(kj::StringPtr commonName, SecretString& out) {
  PrivateKey key;
  GNUTLS_CHECK(gnutls_x509_privkey_init(&key.key));
  GNUTLS_CHECK(gnutls_x509_privkey_generate(
      key.key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0));
  Certificate ca;
  GNUTLS_CHECK(gnutls_x509_crt_set_version(ca.crt, 3));
  kj::byte serial[16];
  randomSerial(serial);
  GNUTLS_CHECK(gnutls_x509_crt_set_serial(ca.crt, serial, sizeof(serial)));
  GNUTLS_CHECK(gnutls_x509_crt_set_dn_by_oid(ca.crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                             commonName.begin(), commonName.size()));
  time_t now = time(nullptr);
  GNUTLS_CHECK(gnutls_x509_crt_set_activation_time(ca.crt, now - CLOCK_SKEW_SECONDS));
  GNUTLS_CHECK(gnutls_x509_crt_set_expiration_time(ca.crt, now + CA_VALIDITY_SECONDS));
  GNUTLS_CHECK(gnutls_x509_crt_set_key(ca.crt, key.key));
  // Path length 0: this CA signs leaves only, never another CA.
  GNUTLS_CHECK(gnutls_x509_crt_set_basic_constraints(ca.crt, 1, 0));
  GNUTLS_CHECK(gnutls_x509_crt_set_key_usage(ca.crt, GNUTLS_KEY_KEY_CERT_SIGN |
                                                         GNUTLS_KEY_CRL_SIGN));
  kj::byte keyId[64];
  size_t keyIdSize = sizeof(keyId);
  GNUTLS_CHECK(gnutls_x509_crt_get_key_id(ca.crt, GNUTLS_KEYID_USE_SHA1, keyId, &keyIdSize));
  GNUTLS_CHECK(gnutls_x509_crt_set_subject_key_id(ca.crt, keyId, keyIdSize));
  GNUTLS_CHECK(gnutls_x509_crt_sign2(ca.crt, ca.crt, key.key, GNUTLS_DIG_SHA256, 0));

  SecretDatum certPem, keyPem;
  GNUTLS_CHECK(gnutls_x509_crt_export2(ca.crt, GNUTLS_X509_FMT_PEM, &certPem.datum));
  GNUTLS_CHECK(gnutls_x509_privkey_export2_pkcs8(key.key, GNUTLS_X509_FMT_PEM, nullptr,
                                                 GNUTLS_PKCS_PLAIN, &keyPem.datum));
  size_t total = certPem.datum.size + keyPem.datum.size;
  auto joined = kj::heapArray<char>(total);
  memcpy(joined.begin(), certPem.datum.data, certPem.datum.size);
  memcpy(joined.begin() + certPem.datum.size, keyPem.datum.data, keyPem.datum.size);
  out.assign(joined);
  wipe(joined.begin(), joined.size());
  return nullptr;
}

#undef GNUTLS_CHECK

bool writeAll(int fd, kj::ArrayPtr<const kj::byte> bytes) {
  while (bytes.size() > 0) {
    ssize_t n = ::write(fd, bytes.begin(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes = bytes.slice(n, bytes.size());
  }
  return true;
}

// Creates DIR and any missing parents with mode 0700 (the XDG base directories want 0700 too).
kj::Maybe<kj::String> makeDirectory(kj::StringPtr dir) {
  for (size_t i = 1; i <= dir.size(); i++) {
    if (i < dir.size() && dir[i] != '/') continue;
    auto prefix = kj::heapString(dir.slice(0, i));
    if (mkdir(prefix.cStr(), 0700) != 0 && errno != EEXIST) {
      return kj::str("'", prefix, "': cannot create the directory: ", strerror(errno));
    }
  }
  struct stat info;
  if (stat(dir.cStr(), &info) != 0) return kj::str("'", dir, "': ", strerror(errno));
  if (!S_ISDIR(info.st_mode)) return kj::str("'", dir, "': not a directory");
  return nullptr;
}

// Stores a new CA's PEM at `path`, atomically and without replacing a file that appeared
// meanwhile: the key is written 0600 into a temporary file in the same directory, synced, then
// linked into place. link() fails with EEXIST where rename() would silently replace a CA that
// another front started at the same moment has just stored (and maybe exported). `stored` is
// false in that case: the caller loads the other one.
kj::Maybe<kj::String> storeNoReplace(kj::StringPtr dir, kj::StringPtr path,
                                     const SecretString& pem, bool& stored) {
  auto tmpl = kj::str(dir, "/.", ROOT_CA_FILE_NAME, ".XXXXXX");
  int fd = mkostemp(tmpl.begin(), O_CLOEXEC);  // mode 0600
  if (fd < 0) return kj::str("'", dir, "': cannot create a file: ", strerror(errno));
  kj::AutoCloseFd owned(fd);
  KJ_DEFER(unlink(tmpl.cStr()));
  if (fchmod(fd, 0600) != 0 || !writeAll(fd, pem.asBytes()) || fsync(fd) != 0) {
    return kj::str("'", tmpl, "': cannot write: ", strerror(errno));
  }
  if (link(tmpl.cStr(), path.cStr()) != 0) {
    if (errno == EEXIST) {
      stored = false;
      return nullptr;
    }
    return kj::str("'", path, "': cannot create: ", strerror(errno));
  }
  stored = true;
  int dirFd = open(dir.cStr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirFd >= 0) {
    fsync(dirFd);  // best effort: the name survives a crash
    close(dirFd);
  }
  return nullptr;
}

// The key file of the generated CA must be readable by its owner only: a CA key others can read
// lets them forge certificates every client that installed the CA trusts.
kj::Maybe<kj::String> checkPrivate(kj::StringPtr path) {
  struct stat info;
  if (stat(path.cStr(), &info) != 0) return kj::str("'", path, "': ", strerror(errno));
  if ((info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    snprintf(mode, sizeof(mode), "%04o", unsigned(info.st_mode & 07777));
    return kj::str("'", path, "': other users can access the CA key (mode ", mode,
                   "); chmod 600 it");
  }
  return nullptr;
}

}  // namespace

RootCa::~RootCa() noexcept {
  if (key != nullptr) gnutls_privkey_deinit(key);
}

kj::Maybe<kj::String> RootCa::fromKeyAndChain(KeyAndChain& loaded, kj::StringPtr file,
                                              kj::Own<RootCa>& out) {
  auto crt = loaded.certs.certs[0];
  unsigned critical = 0, isCa = 0;
  int pathLength = -1;
  int rc = gnutls_x509_crt_get_basic_constraints(crt, &critical, &isCa, &pathLength);
  if (rc < 0 || isCa == 0) {
    return kj::str("'", file, "': not a CA certificate (no basicConstraints CA:TRUE)");
  }
  unsigned usage = 0;
  rc = gnutls_x509_crt_get_key_usage(crt, &usage, &critical);
  if (rc >= 0 && (usage & GNUTLS_KEY_KEY_CERT_SIGN) == 0) {
    return kj::str("'", file, "': the CA certificate's key usage does not allow signing "
                   "certificates (no keyCertSign)");
  }

  auto ca = kj::heap<RootCa>();
  rc = gnutls_privkey_init(&ca->key);
  if (rc >= 0) {
    rc = gnutls_privkey_import_x509(ca->key, loaded.key.key, GNUTLS_PRIVKEY_IMPORT_COPY);
  }
  if (rc < 0) return kj::str("'", file, "': unusable CA key (", gnutls_strerror(rc), ")");
  loaded.key.reset();
  ca->chain.certs = loaded.certs.certs;
  ca->chain.count = loaded.certs.count;
  loaded.certs.certs = nullptr;
  loaded.certs.count = 0;

  gnutls_datum_t der = {nullptr, 0};
  rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der);
  if (rc < 0) return kj::str("'", file, "': ", gnutls_strerror(rc));
  ca->derBytes = kj::heapArray<kj::byte>(der.data, der.size);
  gnutls_free(der.data);
  kj::byte digest[32];
  size_t digestSize = sizeof(digest);
  rc = gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, digest, &digestSize);
  if (rc < 0) return kj::str("'", file, "': ", gnutls_strerror(rc));
  ca->sha256 = hexWithColons(kj::arrayPtr(digest, digestSize));
  ca->cn = commonNameOf(crt);
  ca->notAfter = gnutls_x509_crt_get_expiration_time(crt);
  if (ca->notAfter != time_t(-1) && ca->notAfter < time(nullptr)) {
    logWarning("the root CA in '", file, "' has expired; clients will reject forged "
               "certificates");
  }
  out = kj::mv(ca);
  return nullptr;
}

kj::Maybe<kj::String> defaultCaDir(kj::String& out) {
  if (const char* state = getenv("STATE_DIRECTORY")) {
    // systemd lists the directories of StateDirectory= separated by ':'; ours is the first.
    auto text = kj::StringPtr(state);
    auto first = kj::heapString(text.slice(0, text.findFirst(':').orDefault(text.size())));
    if (first.startsWith("/")) {
      out = kj::mv(first);
      return nullptr;
    }
  }
  if (geteuid() == 0) {
    out = kj::str("/var/lib/tlstap");
    return nullptr;
  }
  const char* xdg = getenv("XDG_STATE_HOME");
  if (xdg != nullptr && xdg[0] == '/') {
    out = kj::str(xdg, "/tlstap");
    return nullptr;
  }
  const char* home = getenv("HOME");
  if (home != nullptr && home[0] == '/') {
    out = kj::str(home, "/.local/state/tlstap");
    return nullptr;
  }
  return kj::str("no default CA directory (HOME is not set); give --cadir DIR");
}

kj::Maybe<kj::String> loadOrCreateRootCa(kj::StringPtr dir, kj::StringPtr commonName,
                                         kj::Own<RootCa>& out, bool& created) {
  created = false;
  auto path = kj::str(dir, "/", ROOT_CA_FILE_NAME);
  if (access(path.cStr(), F_OK) != 0) {
    KJ_IF_MAYBE(error, makeDirectory(dir)) return kj::mv(*error);
    SecretString pem;
    KJ_IF_MAYBE(error, generateCa(commonName, pem)) {
      return kj::str("generating a root CA: ", *error);
    }
    bool stored = false;
    KJ_IF_MAYBE(error, storeNoReplace(dir, path, pem, stored)) return kj::mv(*error);
    created = stored;
  }
  // Load what is on disk even after generating it: what the front uses is what later starts
  // will use.
  KJ_IF_MAYBE(error, checkPrivate(path)) return kj::mv(*error);
  KeyAndChain loaded;
  KJ_IF_MAYBE(error, loadKeyAndChain(path, nullptr, SecretOrigin::CONFIG_FILE, "--cadir",
                                     loaded)) {
    return kj::mv(*error);
  }
  return RootCa::fromKeyAndChain(loaded, path, out);
}

kj::Maybe<kj::String> openRootCa(const RootCaSource& source, kj::Own<RootCa>& out,
                                 kj::String& description) {
  KJ_IF_MAYBE(spec, source.caCert) {
    // "load:FILE[:PASSWORD]": FILE ends at the first colon, as in --servercert, since the
    // password may itself hold colons ("file:/path").
    auto rest = spec->slice(5);
    kj::Maybe<kj::StringPtr> password;
    kj::String file;
    KJ_IF_MAYBE(colon, rest.findFirst(':')) {
      file = kj::heapString(rest.slice(0, *colon));
      password = rest.slice(*colon + 1);
    } else {
      file = kj::heapString(rest);
    }
    KeyAndChain loaded;
    KJ_IF_MAYBE(error, loadKeyAndChain(file, password, source.caCertOrigin, "--cacert",
                                       loaded)) {
      return kj::str("--cacert: ", *error);
    }
    KJ_IF_MAYBE(error, RootCa::fromKeyAndChain(loaded, file, out)) {
      return kj::str("--cacert: ", *error);
    }
    description = kj::str("root CA '", out->commonName(), "' from '", file, "' (SHA-256 ",
                          out->fingerprint(), ")");
    return nullptr;
  }

  kj::String dir;
  KJ_IF_MAYBE(given, source.caDir) {
    dir = kj::heapString(*given);
  } else KJ_IF_MAYBE(error, defaultCaDir(dir)) {
    return kj::str("--cadir: ", *error);
  }
  kj::StringPtr commonName = source.commonName.orDefault(DEFAULT_CA_COMMON_NAME);
  bool created = false;
  KJ_IF_MAYBE(error, loadOrCreateRootCa(dir, commonName, out, created)) {
    return kj::str("--cadir: ", *error);
  }
  description = kj::str(created ? "generated root CA '" : "root CA '", out->commonName(), "' ",
                        created ? "stored in '" : "from '", dir, "/", ROOT_CA_FILE_NAME,
                        "' (SHA-256 ", out->fingerprint(), ")");
  KJ_IF_MAYBE(wanted, source.commonName) {
    // Replacing the CA would break every client that installed it, and refusing to start would
    // stop the service over a name: keep the CA, say how to get a new one.
    if (out->commonName() != *wanted) {
      logWarning("--cn: the existing root CA in '", dir, "' is named '", out->commonName(),
                 "', not '", *wanted, "'; it stays in use (remove ", ROOT_CA_FILE_NAME,
                 " there to generate a new CA, which clients must then install again)");
    }
  }
  return nullptr;
}

kj::Maybe<kj::String> exportCaCertificate(const RootCa& ca, kj::StringPtr path) {
  int fd = ::open(path.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return kj::str("'", path, "': ", strerror(errno));
  kj::AutoCloseFd owned(fd);
  if (!writeAll(fd, ca.der())) return kj::str("'", path, "': ", strerror(errno));
  return nullptr;
}

}  // namespace tlstap
