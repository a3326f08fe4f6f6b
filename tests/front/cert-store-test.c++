#include "front/cert-store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include <gtest/gtest.h>
#include <kj/debug.h>

#include "common/password.h"

namespace tlstap {
namespace {

// Certificates and keys made by openssl for this run: a CA, an RSA and an ECDSA P-256 leaf it
// signed, and those in every file form --servercert takes.
class CertStoreTest : public testing::Test {
public:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/tlstap-cert-test-XXXXXX";
    KJ_ASSERT(mkdtemp(tmpl) != nullptr);
    dir = new kj::String(kj::heapString(tmpl));
    const char* script = R"(set -e
      exec 2>openssl.log
      openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -subj /CN=TestCA \
        -days 30 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign
      echo 'basicConstraints=critical,CA:TRUE' > int.ext
      echo 'subjectAltName=DNS:exact.example.com,DNS:*.example.com' > rsa.ext
      echo 'subjectAltName=DNS:ec.example.com,DNS:exact.example.com,DNS:*.ec.test' > ec.ext
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout int.key \
        -out int.csr -subj /CN=TestIntermediate
      openssl x509 -req -in int.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
        -extfile int.ext -out int.crt
      cat int.crt ca.crt > cas.pem
      openssl req -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.csr -subj /CN=exact.example.com
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key -out ec.csr \
        -subj /CN=ec.example.com
      for k in rsa ec; do
        openssl x509 -req -in $k.csr -CA int.crt -CAkey int.key -CAcreateserial -days 30 \
          -extfile $k.ext -out $k.crt
        openssl x509 -in $k.crt -outform DER -out $k.der
        cat $k.crt int.crt > $k-fullchain.pem
        cat $k.crt int.crt $k.key > $k-single.pem
      done
      cat rsa.key int.crt rsa.crt > rsa-keyfirst.pem
      openssl pkcs12 -export -in ec.crt -inkey ec.key -certfile cas.pem -out ec.p12 \
        -passout pass:secret
      openssl pkcs12 -export -legacy -in rsa.crt -inkey rsa.key -certfile cas.pem \
        -out rsa-legacy.p12 -passout pass:secret
      openssl pkcs12 -export -in rsa.crt -inkey rsa.key -out rsa-modern.pfx -passout pass:secret
      openssl pkcs12 -export -in ec.crt -inkey ec.key -out ec-nopass.p12 -passout pass:
      openssl pkcs12 -export -nokeys -in ec.crt -out ec-nokey.p12 -passout pass:secret
      openssl pkey -in ec.key -aes256 -passout pass:secret -out ec-encrypted.key
      openssl rsa -in rsa.key -aes256 -traditional -passout pass:secret -out rsa-encrypted.key
      cat ec.crt ec-encrypted.key > ec-encrypted-single.pem
      printf 'secret\n' > password.txt
      printf 'wrong\n' > wrong-password.txt
      chmod 600 *.key *.p12 *.pfx password.txt
      )";
    auto scriptPath = kj::str(*dir, "/make.sh");
    FILE* f = fopen(scriptPath.cStr(), "w");
    KJ_ASSERT(f != nullptr);
    fputs(script, f);
    fclose(f);
    auto run = kj::str("cd ", *dir, " && sh make.sh");
    int rc = system(run.cStr());
    if (rc != 0) {
      system(kj::str("cat ", *dir, "/openssl.log >&2").cStr());
      FAIL() << "making test certificates failed";
    }
  }

  static void TearDownTestSuite() {
    if (dir != nullptr) system(kj::str("rm -rf ", *dir).cStr());
    delete dir;
    dir = nullptr;
  }

  static kj::String path(kj::StringPtr name) { return kj::str(*dir, "/", name); }

  static kj::Array<kj::byte> fileBytes(kj::StringPtr name) {
    SecretString contents;
    KJ_IF_MAYBE(error, readSecretFile(path(name), contents)) KJ_FAIL_ASSERT(*error);
    return kj::heapArray(contents.asBytes());
  }

  static kj::String* dir;
};

kj::String* CertStoreTest::dir = nullptr;

kj::String addError(CertStore& store, kj::StringPtr spec) {
  KJ_IF_MAYBE(error, store.addServerCert(spec)) return kj::mv(*error);
  return kj::str();
}

#define EXPECT_ADDS(store, spec)                            \
  do {                                                      \
    auto error_ = addError(store, spec);                    \
    EXPECT_EQ(error_.size(), 0u) << error_.cStr();          \
  } while (false)

#define EXPECT_ADD_FAILS(store, spec, part)                                              \
  do {                                                                                   \
    auto error_ = addError(store, spec);                                                 \
    EXPECT_NE(strstr(error_.cStr(), part), nullptr) << "error was: " << error_.cStr();   \
    EXPECT_EQ(strchr(error_.cStr(), '\n'), nullptr);                                     \
  } while (false)

// What a TLS client sees when it connects to a server session using `credentials`.
struct Seen {
  kj::String error;  // empty when the handshake worked
  kj::Array<kj::byte> leaf;
  unsigned chainLength = 0;
};

Seen handshake(gnutls_certificate_credentials_t credentials, kj::StringPtr priority) {
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  int serverResult = 0;
  std::thread server([&]() {
    gnutls_session_t session;
    KJ_ASSERT(gnutls_init(&session, GNUTLS_SERVER) == 0);
    gnutls_set_default_priority(session);
    gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, credentials);
    gnutls_transport_set_int(session, fds[0]);
    int rc;
    do {
      rc = gnutls_handshake(session);
    } while (rc < 0 && !gnutls_error_is_fatal(rc));
    serverResult = rc;
    if (rc == 0) gnutls_bye(session, GNUTLS_SHUT_WR);
    gnutls_deinit(session);
    close(fds[0]);
  });

  Seen seen;
  gnutls_session_t session;
  gnutls_certificate_credentials_t clientCredentials;
  KJ_ASSERT(gnutls_init(&session, GNUTLS_CLIENT) == 0);
  KJ_ASSERT(gnutls_certificate_allocate_credentials(&clientCredentials) == 0);
  KJ_ASSERT(gnutls_priority_set_direct(session, priority.cStr(), nullptr) == 0);
  gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, clientCredentials);
  gnutls_server_name_set(session, GNUTLS_NAME_DNS, "exact.example.com", 17);
  gnutls_transport_set_int(session, fds[1]);
  int rc;
  do {
    rc = gnutls_handshake(session);
  } while (rc < 0 && !gnutls_error_is_fatal(rc));
  if (rc < 0) {
    seen.error = kj::str("client: ", gnutls_strerror(rc));
    shutdown(fds[1], SHUT_RDWR);
  } else {
    const gnutls_datum_t* peers = gnutls_certificate_get_peers(session, &seen.chainLength);
    if (peers != nullptr && seen.chainLength > 0) {
      seen.leaf = kj::heapArray<kj::byte>(peers[0].data, peers[0].size);
    }
  }
  gnutls_deinit(session);
  gnutls_certificate_free_credentials(clientCredentials);
  server.join();
  close(fds[1]);
  if (seen.error.size() == 0 && serverResult < 0) {
    seen.error = kj::str("server: ", gnutls_strerror(serverResult));
  }
  return seen;
}

bool sameBytes(kj::ArrayPtr<const kj::byte> a, kj::ArrayPtr<const kj::byte> b) {
  return a.size() == b.size() && (a.size() == 0 || memcmp(a.begin(), b.begin(), a.size()) == 0);
}

constexpr kj::StringPtr TLS13 = "NORMAL"_kj;
constexpr kj::StringPtr TLS12 = "NORMAL:-VERS-ALL:+VERS-TLS1.2"_kj;

// Loads `spec` alone and checks a client gets `leafDer` and a chain of `chainLength`.
void expectServes(kj::StringPtr spec, kj::StringPtr name, kj::ArrayPtr<const kj::byte> leafDer,
                  unsigned chainLength) {
  SCOPED_TRACE(spec.cStr());
  CertStore store;
  auto error = addError(store, spec);
  ASSERT_EQ(error.size(), 0u) << error.cStr();
  auto credentials = KJ_ASSERT_NONNULL(store.find(name));
  for (auto priority : {TLS13, TLS12}) {
    auto seen = handshake(credentials, priority);
    ASSERT_EQ(seen.error.size(), 0u) << priority.cStr() << ": " << seen.error.cStr();
    EXPECT_TRUE(sameBytes(seen.leaf, leafDer)) << priority.cStr();
    EXPECT_EQ(seen.chainLength, chainLength) << priority.cStr();
  }
}

TEST_F(CertStoreTest, Pkcs12Modern) {
  // OpenSSL 3 default: PBES2, PBKDF2, AES-256-CBC, HMAC-SHA256 MAC. The file holds the leaf,
  // the intermediate and the root; a server sends the leaf and the intermediate.
  expectServes(kj::str("ec.example.com:", path("ec.p12"), ":secret"), "ec.example.com",
               fileBytes("ec.der"), 2);
  expectServes(kj::str("exact.example.com:", path("rsa-modern.pfx"), ":secret"),
               "exact.example.com", fileBytes("rsa.der"), 1);
}

TEST_F(CertStoreTest, Pkcs12Legacy) {
  // openssl pkcs12 -legacy: RC2-40 for certificates, 3DES for the key, SHA-1 MAC.
  expectServes(kj::str("exact.example.com:", path("rsa-legacy.p12"), ":secret"),
               "exact.example.com", fileBytes("rsa.der"), 2);
}

TEST_F(CertStoreTest, Pkcs12EmptyPassword) {
  auto der = fileBytes("ec.der");
  expectServes(kj::str("ec.example.com:", path("ec-nopass.p12")), "ec.example.com", der, 1);
  expectServes(kj::str("ec.example.com:", path("ec-nopass.p12"), ":"), "ec.example.com", der, 1);
}

TEST_F(CertStoreTest, PemSingleFile) {
  expectServes(kj::str("exact.example.com:", path("rsa-single.pem")), "exact.example.com",
               fileBytes("rsa.der"), 2);
  expectServes(kj::str("ec.example.com:", path("ec-single.pem")), "ec.example.com",
               fileBytes("ec.der"), 2);
  // Key first and the CA before the leaf: the leaf is still sent first.
  expectServes(kj::str("exact.example.com:", path("rsa-keyfirst.pem")), "exact.example.com",
               fileBytes("rsa.der"), 2);
}

TEST_F(CertStoreTest, FullchainPlusPrivkey) {
  expectServes(kj::str("exact.example.com:", path("rsa-fullchain.pem"), "+", path("rsa.key")),
               "exact.example.com", fileBytes("rsa.der"), 2);
  expectServes(kj::str("ec.example.com:", path("ec-fullchain.pem"), "+", path("ec.key")),
               "ec.example.com", fileBytes("ec.der"), 2);
}

TEST_F(CertStoreTest, EncryptedPemKey) {
  // PKCS#8 encrypted (openssl pkey -aes256) and OpenSSL's traditional format (Proc-Type).
  expectServes(kj::str("ec.example.com:", path("ec-fullchain.pem"), "+",
                       path("ec-encrypted.key"), ":file:", path("password.txt")),
               "ec.example.com", fileBytes("ec.der"), 2);
  expectServes(kj::str("exact.example.com:", path("rsa-fullchain.pem"), "+",
                       path("rsa-encrypted.key"), ":file:", path("password.txt")),
               "exact.example.com", fileBytes("rsa.der"), 2);
  expectServes(kj::str("ec.example.com:", path("ec-encrypted-single.pem"), ":file:",
                       path("password.txt")),
               "ec.example.com", fileBytes("ec.der"), 1);

  CertStore store;
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("ec-fullchain.pem"), "+",
                                  path("ec-encrypted.key"), ":file:", path("wrong-password.txt")),
                   "wrong password");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("rsa-fullchain.pem"), "+",
                                  path("rsa-encrypted.key"), ":file:",
                                  path("wrong-password.txt")),
                   "password");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("ec-encrypted-single.pem")),
                   "encrypted and no password");
  EXPECT_TRUE(store.empty());
}

TEST_F(CertStoreTest, PasswordForms) {
  auto p12 = path("ec.p12");
  {
    CertStore store;
    EXPECT_ADDS(store, kj::str("ec.example.com:", p12, ":file:", path("password.txt")));
    EXPECT_FALSE(store.empty());
  }
  {
    setenv("TLSTAP_TEST_PASSWORD", "secret", 1);
    CertStore store;
    EXPECT_ADDS(store, kj::str("ec.example.com:", p12, ":env:TLSTAP_TEST_PASSWORD"));
    // Read once and gone: neither a child process nor a later bug finds it in the environment.
    EXPECT_EQ(getenv("TLSTAP_TEST_PASSWORD"), nullptr);
    // Another certificate with the same password variable: one password for both files.
    EXPECT_ADDS(store, kj::str("other.test:", p12, ":env:TLSTAP_TEST_PASSWORD"));
    // Once start-up is over, the kept copy is gone too.
    forgetEnvPasswords();
    EXPECT_ADD_FAILS(store, kj::str("third.test:", p12, ":env:TLSTAP_TEST_PASSWORD"),
                     "TLSTAP_TEST_PASSWORD is not set");
    // A wrong password is one line naming the file, and is gone as well.
    setenv("TLSTAP_TEST_PASSWORD", "wrong", 1);
    EXPECT_ADD_FAILS(store, kj::str("third.test:", p12, ":env:TLSTAP_TEST_PASSWORD"),
                     kj::str("'", p12, "': wrong password").cStr());
    EXPECT_EQ(getenv("TLSTAP_TEST_PASSWORD"), nullptr);
  }
  {
    int pipeFds[2];
    ASSERT_EQ(pipe(pipeFds), 0);
    ASSERT_EQ(write(pipeFds[1], "secret\n", 7), 7);
    close(pipeFds[1]);
    CertStore store;
    EXPECT_ADDS(store, kj::str("ec.example.com:", p12, ":fd:", pipeFds[0]));
    // Read once and closed: the descriptor is not left open in the sandboxed process.
    EXPECT_EQ(fcntl(pipeFds[0], F_GETFD), -1);
  }
  {
    testing::internal::CaptureStderr();
    CertStore store;
    auto error = addError(store, kj::str("ec.example.com:", p12, ":secret"));
    auto logged = testing::internal::GetCapturedStderr();
    EXPECT_EQ(error.size(), 0u) << error.cStr();
    EXPECT_NE(logged.find("command line"), std::string::npos) << logged;
    EXPECT_EQ(logged.find("secret"), std::string::npos) << "password leaked to the log";
  }
  {
    // No warning when the password did not come from the command line.
    testing::internal::CaptureStderr();
    CertStore store;
    EXPECT_ADDS(store, kj::str("ec.example.com:", p12, ":file:", path("password.txt")));
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  }
}

TEST_F(CertStoreTest, WrongPasswordAndBadFiles) {
  CertStore store;
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("ec.p12"), ":nope"), "wrong password");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("rsa-legacy.p12"), ":nope"),
                   "wrong password");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("ec.p12")), "needs a password");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("missing.p12"), ":x"), "not found");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("missing.p12")), "missing.p12");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("ec-fullchain.pem"), "+", path("nokey.pem")),
                   "not found");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("ec-fullchain.pem")), "no private key");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("ec-nokey.p12"), ":secret"),
                   "no private key");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("rsa-fullchain.pem"), "+", path("ec.key")),
                   "does not match");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("ec.key")), "no certificate");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("ec.der")), "neither PEM nor PKCS#12");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("password.txt")), "neither PEM nor PKCS#12");
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("ec.p12"), ":fd:999"), "fd:999");
  // The error names the file.
  EXPECT_ADD_FAILS(store, kj::str("a.test:", path("ec.p12"), ":nope"), "ec.p12");
  EXPECT_TRUE(store.empty());
}

TEST_F(CertStoreTest, BadSpecs) {
  CertStore store;
  auto file = path("ec-single.pem");
  EXPECT_ADD_FAILS(store, file, "expected NAME");
  EXPECT_ADD_FAILS(store, kj::str(":", file), "name ''");
  EXPECT_ADD_FAILS(store, kj::str("a.test,:", file), "name ''");
  EXPECT_ADD_FAILS(store, kj::str("bad name:", file), "'bad name'");
  EXPECT_ADD_FAILS(store, kj::str("a.*.test:", file), "wildcard");
  EXPECT_ADD_FAILS(store, kj::str("*:", file), "wildcard");
  EXPECT_ADD_FAILS(store, "a.test:", "FILE is empty");
  EXPECT_ADD_FAILS(store, kj::str("a.test,A.test:", file), "given twice");
  EXPECT_TRUE(store.empty());
}

TEST_F(CertStoreTest, WildcardAndExactMatching) {
  CertStore store;
  EXPECT_TRUE(store.empty());
  EXPECT_ADDS(store, kj::str("*.Example.com:", path("rsa-single.pem")));
  EXPECT_ADDS(store, kj::str("exact.example.com,ec.example.com:", path("ec-single.pem")));
  EXPECT_FALSE(store.empty());
  auto wildcard = KJ_ASSERT_NONNULL(store.find("a.example.com"));
  auto exact = KJ_ASSERT_NONNULL(store.find("exact.example.com"));
  EXPECT_NE(wildcard, exact);
  EXPECT_EQ(KJ_ASSERT_NONNULL(store.find("A.EXAMPLE.COM")), wildcard);
  EXPECT_EQ(KJ_ASSERT_NONNULL(store.find("EXACT.Example.com")), exact);
  EXPECT_EQ(KJ_ASSERT_NONNULL(store.find("ec.example.com")), exact);
  EXPECT_TRUE(store.find("b.a.example.com") == nullptr);
  EXPECT_TRUE(store.find("example.com") == nullptr);
  EXPECT_TRUE(store.find(".example.com") == nullptr);
  EXPECT_TRUE(store.find("other.test") == nullptr);
  EXPECT_TRUE(store.find("") == nullptr);

  // The exact certificate is what a client gets for that name.
  auto seen = handshake(exact, TLS13);
  ASSERT_EQ(seen.error.size(), 0u) << seen.error.cStr();
  EXPECT_TRUE(sameBytes(seen.leaf, fileBytes("ec.der")));

  // A name can only belong to one --servercert.
  EXPECT_ADD_FAILS(store, kj::str("*.example.com:", path("ec-single.pem")), "already");
  EXPECT_ADD_FAILS(store, kj::str("new.test,EXACT.example.com:", path("ec-single.pem")),
                   "already");
  EXPECT_TRUE(store.find("new.test") == nullptr);
}

TEST_F(CertStoreTest, WarnsWhenCertificateDoesNotCoverName) {
  testing::internal::CaptureStderr();
  CertStore store;
  EXPECT_ADDS(store, kj::str("other.test,*.ec.test,ec.example.com:", path("ec-single.pem")));
  auto logged = testing::internal::GetCapturedStderr();
  EXPECT_NE(logged.find("not valid for 'other.test'"), std::string::npos) << logged;
  EXPECT_EQ(logged.find("'*.ec.test'"), std::string::npos) << logged;
  EXPECT_EQ(logged.find("'ec.example.com'"), std::string::npos) << logged;
  // A warning, not an error: the name is still served.
  EXPECT_TRUE(store.find("other.test") != nullptr);
}

// --- Passwords -------------------------------------------------------------------------------

kj::String resolved(kj::StringPtr spec, bool& wasLiteral) {
  SecretString out;
  KJ_IF_MAYBE(error, resolvePassword(spec, out, wasLiteral)) return kj::str("ERROR ", *error);
  return kj::heapString(out.asChars());
}

TEST_F(CertStoreTest, ResolvePassword) {
  bool literal = true;
  auto file = path("multi-line.txt");
  FILE* f = fopen(file.cStr(), "w");
  fputs("first line\r\nsecond\n", f);
  fclose(f);
  EXPECT_STREQ(resolved(kj::str("file:", file), literal).cStr(), "first line");
  EXPECT_FALSE(literal);
  EXPECT_STREQ(resolved(kj::str("file:", path("password.txt")), literal).cStr(), "secret");
  EXPECT_TRUE(resolved(kj::str("file:", path("none.txt")), literal).startsWith("ERROR"));
  EXPECT_TRUE(resolved("file:", literal).startsWith("ERROR"));

  setenv("TLSTAP_TEST_PW", "with:colon\n", 1);
  const char* inEnvironment = getenv("TLSTAP_TEST_PW");
  EXPECT_STREQ(resolved("env:TLSTAP_TEST_PW", literal).cStr(), "with:colon");
  EXPECT_FALSE(literal);
  // Removed from the environment, and the value it held overwritten (glibc never frees what
  // setenv() allocated, so the old pointer may still be read).
  EXPECT_EQ(getenv("TLSTAP_TEST_PW"), nullptr);
  EXPECT_EQ(kj::StringPtr(inEnvironment), "");
  // A second option naming the same variable gets the same password, until start-up is over.
  EXPECT_STREQ(resolved("env:TLSTAP_TEST_PW", literal).cStr(), "with:colon");
  forgetEnvPasswords();
  EXPECT_STREQ(resolved("env:TLSTAP_TEST_PW", literal).cStr(),
               "ERROR password environment variable TLSTAP_TEST_PW is not set");

  int pipeFds[2];
  ASSERT_EQ(pipe(pipeFds), 0);
  // More than one pipe read's worth, to exercise the buffer growing.
  auto longPassword = kj::str(kj::repeat('p', 3000));
  ASSERT_EQ(write(pipeFds[1], longPassword.begin(), longPassword.size()), 3000);
  close(pipeFds[1]);
  EXPECT_STREQ(resolved(kj::str("fd:", pipeFds[0]), literal).cStr(), longPassword.cStr());
  EXPECT_FALSE(literal);
  EXPECT_TRUE(resolved("fd:x", literal).startsWith("ERROR"));
  EXPECT_TRUE(resolved(kj::str("fd:", pipeFds[0]), literal).startsWith("ERROR"));

  // A password longer than any real one is a wrong file named.
  int bigFds[2];
  ASSERT_EQ(pipe(bigFds), 0);
  std::thread writer([&]() {
    auto big = kj::str(kj::repeat('p', 10000));
    ssize_t ignored = write(bigFds[1], big.begin(), big.size());
    (void)ignored;
    close(bigFds[1]);
  });
  EXPECT_TRUE(resolved(kj::str("fd:", bigFds[0]), literal).startsWith("ERROR"));
  writer.join();

  EXPECT_STREQ(resolved("plain:text", literal).cStr(), "plain:text");
  EXPECT_TRUE(literal);
}

TEST_F(CertStoreTest, SecretString) {
  SecretString secret(kj::StringPtr("password\r\n"));
  EXPECT_EQ(secret.size(), 10u);
  secret.truncate(2);
  EXPECT_STREQ(secret.cStr(), "password");
  EXPECT_EQ(secret.size(), 8u);
  SecretString moved = kj::mv(secret);
  EXPECT_STREQ(moved.cStr(), "password");
  EXPECT_EQ(secret.size(), 0u);
  EXPECT_STREQ(secret.cStr(), "");
  moved.clear();
  EXPECT_EQ(moved.size(), 0u);
}

}  // namespace
}  // namespace tlstap
