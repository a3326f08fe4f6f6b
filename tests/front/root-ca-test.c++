#include "front/root-ca.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <kj/debug.h>

#include "common/password.h"

namespace tlstap {
namespace {

// CAs and a leaf made by openssl for this run, in the forms --cacert takes.
class RootCaTest : public testing::Test {
public:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/tlstap-root-ca-test-XXXXXX";
    KJ_ASSERT(mkdtemp(tmpl) != nullptr);
    dir = new kj::String(kj::heapString(tmpl));
    const char* script = R"(set -e
      exec 2>openssl.log
      openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa-ca.key -out rsa-ca.crt \
        -subj '/CN=Lab RSA CA' -days 30 -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign
      openssl pkcs12 -export -in rsa-ca.crt -inkey rsa-ca.key -out rsa-ca.p12 \
        -passout pass:secret
      cat rsa-ca.crt rsa-ca.key > rsa-ca.pem
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key \
        -out leaf.crt -subj /CN=leaf.example -days 30 -addext basicConstraints=CA:FALSE
      cat leaf.crt leaf.key > leaf.pem
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout nosign.key \
        -out nosign.crt -subj /CN=NoSign -days 30 -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,digitalSignature
      cat nosign.crt nosign.key > nosign.pem
      printf 'secret\n' > password.txt
      printf 'wrong\n' > wrong.txt
      )";
    auto scriptPath = kj::str(*dir, "/make.sh");
    FILE* f = fopen(scriptPath.cStr(), "w");
    KJ_ASSERT(f != nullptr);
    fputs(script, f);
    fclose(f);
    if (system(kj::str("cd ", *dir, " && sh make.sh").cStr()) != 0) {
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

  static kj::String* dir;
};

kj::String* RootCaTest::dir = nullptr;

mode_t modeOf(kj::StringPtr path) {
  struct stat info;
  KJ_SYSCALL(stat(path.cStr(), &info));
  return info.st_mode & 07777;
}

kj::String openError(const RootCaSource& source, kj::Own<RootCa>& out) {
  kj::String description;
  KJ_IF_MAYBE(error, openRootCa(source, out, description)) return kj::mv(*error);
  EXPECT_NE(strstr(description.cStr(), out->fingerprint().cStr()), nullptr);
  return kj::str();
}

kj::String loadCaCert(kj::StringPtr spec) {
  RootCaSource source;
  source.caCert = spec;
  source.caCertOrigin = SecretOrigin::CONFIG_FILE;
  kj::Own<RootCa> ca;
  return openError(source, ca);
}

TEST_F(RootCaTest, GenerateStoreLoadGivesTheSameCertificate) {
  auto caDir = path("state/deeper/tlstap");
  kj::Own<RootCa> first;
  bool created = false;
  KJ_IF_MAYBE(error, loadOrCreateRootCa(caDir, "Unit Test CA", first, created)) {
    FAIL() << error->cStr();
  }
  EXPECT_TRUE(created);
  EXPECT_EQ(modeOf(caDir), 0700u);
  EXPECT_EQ(modeOf(path("state")), 0700u);
  auto file = kj::str(caDir, "/", ROOT_CA_FILE_NAME);
  EXPECT_EQ(modeOf(file), 0600u);
  EXPECT_EQ(first->commonName(), "Unit Test CA");

  // What makes it a CA a client accepts: CA:TRUE, may sign certificates, ECDSA P-256, ~10 years.
  auto crt = first->certificate();
  unsigned critical = 0, isCa = 0;
  int pathLength = -1;
  ASSERT_GE(gnutls_x509_crt_get_basic_constraints(crt, &critical, &isCa, &pathLength), 0);
  EXPECT_EQ(isCa, 1u);
  unsigned usage = 0;
  ASSERT_GE(gnutls_x509_crt_get_key_usage(crt, &usage, &critical), 0);
  EXPECT_NE(usage & GNUTLS_KEY_KEY_CERT_SIGN, 0u);
  unsigned bits = 0;
  EXPECT_EQ(gnutls_x509_crt_get_pk_algorithm(crt, &bits), GNUTLS_PK_ECDSA);
  time_t years = (first->expiration() - time(nullptr)) / (365 * 24 * 3600);
  EXPECT_GE(years, 9);
  EXPECT_LE(years, 10);
  EXPECT_EQ(gnutls_x509_crt_check_issuer(crt, crt), 1);

  // A later start loads the same certificate, whatever --cn says now.
  kj::Own<RootCa> second;
  KJ_IF_MAYBE(error, loadOrCreateRootCa(caDir, "Another Name", second, created)) {
    FAIL() << error->cStr();
  }
  EXPECT_FALSE(created);
  EXPECT_TRUE(first->der() == second->der());
  EXPECT_EQ(second->commonName(), "Unit Test CA");
  EXPECT_EQ(first->fingerprint(), second->fingerprint());
  EXPECT_EQ(first->fingerprint().size(), 32u * 3 - 1);

  // No temporary file is left behind.
  EXPECT_EQ(system(kj::str("test $(ls -A ", caDir, " | wc -l) = 1").cStr()), 0);

  // -x writes exactly the DER.
  auto exported = path("exported.der");
  EXPECT_TRUE(exportCaCertificate(*second, exported) == nullptr);
  SecretString bytes;
  KJ_IF_MAYBE(error, readSecretFile(exported, bytes)) FAIL() << error->cStr();
  EXPECT_TRUE(bytes.asBytes() == first->der());
}

TEST_F(RootCaTest, TwoGeneratedCasDiffer) {
  kj::Own<RootCa> a, b;
  bool created;
  ASSERT_TRUE(loadOrCreateRootCa(path("two/a"), "Same", a, created) == nullptr);
  ASSERT_TRUE(loadOrCreateRootCa(path("two/b"), "Same", b, created) == nullptr);
  EXPECT_FALSE(a->der() == b->der());
}

TEST_F(RootCaTest, RefusesAKeyOthersCanRead) {
  auto caDir = path("readable");
  kj::Own<RootCa> ca;
  bool created;
  ASSERT_TRUE(loadOrCreateRootCa(caDir, "CA", ca, created) == nullptr);
  auto file = kj::str(caDir, "/", ROOT_CA_FILE_NAME);
  KJ_SYSCALL(chmod(file.cStr(), 0644));
  RootCaSource source;
  source.caDir = caDir.asPtr();
  auto error = openError(source, ca);
  EXPECT_EQ(error, kj::str("--cadir: '", file, "': other users can access the CA key (mode 0644);"
                           " chmod 600 it"));
}

TEST_F(RootCaTest, CadirThatIsAFileIsOneError) {
  auto file = path("password.txt");
  RootCaSource source;
  source.caDir = file.asPtr();
  kj::Own<RootCa> ca;
  auto error = openError(source, ca);
  EXPECT_TRUE(error.startsWith("--cadir: ")) << error.cStr();
  EXPECT_NE(strstr(error.cStr(), "password.txt"), nullptr) << error.cStr();
  EXPECT_EQ(strchr(error.cStr(), '\n'), nullptr);
}

TEST_F(RootCaTest, LoadsAPkcs12AndAPemCa) {
  kj::String specs[] = {kj::str("load:", path("rsa-ca.p12"), ":file:", path("password.txt")),
                        kj::str("load:", path("rsa-ca.pem"))};
  for (auto& spec : specs) {
    RootCaSource source;
    source.caCert = spec.asPtr();
    kj::Own<RootCa> ca;
    auto error = openError(source, ca);
    ASSERT_EQ(error, "") << spec.cStr();
    EXPECT_EQ(ca->commonName(), "Lab RSA CA");
    EXPECT_EQ(gnutls_privkey_get_pk_algorithm(ca->signingKey(), nullptr), GNUTLS_PK_RSA);
  }
}

TEST_F(RootCaTest, BadCacertIsOneClearError) {
  struct Case {
    kj::String spec;
    kj::String expected;
  } cases[] = {
      {kj::str("load:", path("missing.p12")),
       kj::str("--cacert: '", path("missing.p12"), "': not found")},
      {kj::str("load:", path("rsa-ca.p12"), ":file:", path("wrong.txt")),
       kj::str("--cacert: '", path("rsa-ca.p12"), "': wrong password for the PKCS#12 file")},
      {kj::str("load:", path("rsa-ca.p12")),
       kj::str("--cacert: '", path("rsa-ca.p12"), "': PKCS#12 file needs a password (none given)")},
      {kj::str("load:", path("leaf.pem")),
       kj::str("--cacert: '", path("leaf.pem"),
               "': not a CA certificate (no basicConstraints CA:TRUE)")},
      {kj::str("load:", path("nosign.pem")),
       kj::str("--cacert: '", path("nosign.pem"), "': the CA certificate's key usage does not "
               "allow signing certificates (no keyCertSign)")},
      {kj::str("load:", path("rsa-ca.crt")),
       kj::str("--cacert: '", path("rsa-ca.crt"), "': no private key")},
  };
  for (auto& c : cases) {
    EXPECT_EQ(loadCaCert(c.spec), c.expected);
  }
}

TEST_F(RootCaTest, EnvPasswordIsGoneFromTheEnvironmentOnceRead) {
  setenv("TLSTAP_TEST_CA_PW", "secret\n", 1);
  EXPECT_EQ(loadCaCert(kj::str("load:", path("rsa-ca.p12"), ":env:TLSTAP_TEST_CA_PW")), "");
  EXPECT_EQ(getenv("TLSTAP_TEST_CA_PW"), nullptr);

  // A wrong one is still one line naming the option, and is gone as well.
  setenv("TLSTAP_TEST_CA_PW", "wrong", 1);
  EXPECT_EQ(loadCaCert(kj::str("load:", path("rsa-ca.p12"), ":env:TLSTAP_TEST_CA_PW")),
            kj::str("--cacert: '", path("rsa-ca.p12"), "': wrong password for the PKCS#12 file"));
  EXPECT_EQ(getenv("TLSTAP_TEST_CA_PW"), nullptr);
}

class ScopedEnv {
public:
  ScopedEnv(const char* name, const char* value) : name(name) {
    if (const char* old = getenv(name)) saved = kj::str(old);
    if (value == nullptr) {
      unsetenv(name);
    } else {
      setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    KJ_IF_MAYBE(old, saved) {
      setenv(name, old->cStr(), 1);
    } else {
      unsetenv(name);
    }
  }

private:
  const char* name;
  kj::Maybe<kj::String> saved;
};

kj::String defaultDir() {
  kj::String dir;
  KJ_IF_MAYBE(error, defaultCaDir(dir)) return kj::str("ERROR ", *error);
  return dir;
}

TEST(RootCaDefaultDir, FollowsSystemdThenRootThenXdg) {
  {
    ScopedEnv state("STATE_DIRECTORY", "/var/lib/private/tlstap:/var/lib/other");
    EXPECT_EQ(defaultDir(), "/var/lib/private/tlstap");
  }
  ScopedEnv state("STATE_DIRECTORY", nullptr);
  ScopedEnv xdg("XDG_STATE_HOME", "/home/u/.state");
  ScopedEnv home("HOME", "/home/u");
  if (geteuid() == 0) {
    EXPECT_EQ(defaultDir(), "/var/lib/tlstap");
  } else {
    EXPECT_EQ(defaultDir(), "/home/u/.state/tlstap");
    ScopedEnv noXdg("XDG_STATE_HOME", nullptr);
    EXPECT_EQ(defaultDir(), "/home/u/.local/state/tlstap");
  }
}

}  // namespace
}  // namespace tlstap
