#include "front/backend-tls.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/io.h>

namespace tlstap {
namespace {

kj::Array<kj::String> strings(std::initializer_list<const char*> list) {
  auto builder = kj::heapArrayBuilder<kj::String>(list.size());
  for (auto s : list) builder.add(kj::heapString(s));
  return builder.finish();
}

kj::String joined(const kj::Vector<kj::StringPtr>& list) { return kj::strArray(list, ","); }

TEST(ForwardableAlpn, KeepsTheClientsListAndOrder) {
  EXPECT_EQ(joined(forwardableAlpn(strings({"h2", "http/1.1"}))), "h2,http/1.1");
  EXPECT_EQ(joined(forwardableAlpn(strings({"http/1.1", "h2"}))), "http/1.1,h2");
  EXPECT_EQ(forwardableAlpn(strings({})).size(), 0u);
}

TEST(ForwardableAlpn, DropsWhatGnuTlsCannotOffer) {
  // 31 bytes is the longest name GnuTLS takes; empty names are not protocols.
  auto longest = kj::str("abcdefghijklmnopqrstuvwxyz01234");
  ASSERT_EQ(longest.size(), 31u);
  auto offered = strings({"h2", "", "abcdefghijklmnopqrstuvwxyz012345", longest.cStr(), "imap"});
  EXPECT_EQ(joined(forwardableAlpn(offered)), kj::str("h2,", longest, ",imap"));
  // At most 8, the client's first ones.
  auto many = strings({"p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10"});
  EXPECT_EQ(joined(forwardableAlpn(many)), "p1,p2,p3,p4,p5,p6,p7,p8");
}

// A CA and a server certificate it signed for backend.example.com, made by openssl for this run.
class BackendTlsTest : public testing::Test {
public:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/tlstap-backend-tls-test-XXXXXX";
    KJ_ASSERT(mkdtemp(tmpl) != nullptr);
    dir = new kj::String(kj::heapString(tmpl));
    auto run = kj::str("cd ", *dir, R"( && exec 2>openssl.log && set -e
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.pem -subj /CN=TestBackendCA -days 30 \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign
      echo 'subjectAltName=DNS:backend.example.com,IP:127.0.0.1' > leaf.ext
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key \
        -out leaf.csr -subj /CN=backend.example.com
      openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
        -extfile leaf.ext -out leaf.pem
      echo junk > junk.pem)");
    if (system(run.cStr()) != 0) {
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

kj::String* BackendTlsTest::dir = nullptr;

TEST_F(BackendTlsTest, InitReadsTheCaFile) {
  BackendTlsConfig config;
  auto ca = path("ca.pem");
  EXPECT_EQ(config.init(kj::StringPtr(ca), false), nullptr);
  EXPECT_TRUE(config.verifies());
  EXPECT_NE(config.credentials(), nullptr);
  EXPECT_NE(config.priority(), nullptr);
  // The backend is offered AES-GCM first where this CPU encrypts it in hardware, as clients are
  // (a backend that follows the client's order then picks it).
  const unsigned* ciphers = nullptr;
  ASSERT_GE(gnutls_priority_cipher_list(config.priority(), &ciphers), 3);
  if (cpuHasAesInstructions()) {
    EXPECT_EQ(ciphers[0], GNUTLS_CIPHER_AES_128_GCM);
    EXPECT_EQ(ciphers[1], GNUTLS_CIPHER_AES_256_GCM);
    EXPECT_EQ(ciphers[2], GNUTLS_CIPHER_CHACHA20_POLY1305);
  } else {
    EXPECT_EQ(ciphers[0], GNUTLS_CIPHER_CHACHA20_POLY1305);
  }
}

TEST_F(BackendTlsTest, InitRefusesBadCaFiles) {
  auto missing = path("missing.pem");
  auto junk = path("junk.pem");
  auto key = path("leaf.key");
  {
    BackendTlsConfig config;
    EXPECT_EQ(KJ_ASSERT_NONNULL(config.init(kj::StringPtr(missing), false)),
              kj::str("--backend-ca: '", missing, "': not found"));
  }
  {
    BackendTlsConfig config;
    EXPECT_EQ(KJ_ASSERT_NONNULL(config.init(kj::StringPtr(junk), false)),
              kj::str("--backend-ca: '", junk, "': no PEM certificate in it"));
  }
  {
    BackendTlsConfig config;
    EXPECT_EQ(KJ_ASSERT_NONNULL(config.init(kj::StringPtr(key), false)),
              kj::str("--backend-ca: '", key, "': no PEM certificate in it"));
  }
}

TEST_F(BackendTlsTest, InsecureVerifiesNothing) {
  BackendTlsConfig config;
  EXPECT_EQ(config.init(nullptr, true), nullptr);
  EXPECT_FALSE(config.verifies());
}

// The front's two sessions face each other over a socket pair: a backend session (what the front
// opens towards a backend) and a server session with the leaf certificate playing the backend.
class Handshake {
public:
  Handshake(const BackendTlsConfig& config, kj::StringPtr name,
            kj::ArrayPtr<const kj::String> clientAlpn, kj::StringPtr serverAlpn) {
    int fds[2];
    KJ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    clientFd = kj::AutoCloseFd(fds[0]);
    serverFd = kj::AutoCloseFd(fds[1]);
    KJ_ASSERT(gnutls_certificate_allocate_credentials(&serverCredentials) == 0);
    KJ_ASSERT(gnutls_certificate_set_x509_key_file(
                  serverCredentials, BackendTlsTest::path("leaf.pem").cStr(),
                  BackendTlsTest::path("leaf.key").cStr(), GNUTLS_X509_FMT_PEM) == 0);
    server = newServerSession(serverConfig, serverCredentials, serverFd.get(), serverAlpn);
    backend = newBackendSession(config, clientFd.get(), name, clientAlpn);
  }
  ~Handshake() {
    server = nullptr;  // before the credentials it uses
    gnutls_certificate_free_credentials(serverCredentials);
  }

  // Runs both handshakes to the end; the backend side's failure, if any.
  kj::Maybe<kj::String> run() {
    bool backendDone = false, serverDone = false;
    for (int round = 0; round < 100 && !(backendDone && serverDone); round++) {
      if (!backendDone) {
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
          backendDone = backend->handshake().status == TlsStatus::DONE;
        })) {
          return kj::str(e->getDescription());
        }
      }
      if (!serverDone) {
        kj::runCatchingExceptions([&]() {
          serverDone = server->handshake().status == TlsStatus::DONE;
        });
      }
    }
    KJ_ASSERT(backendDone && serverDone, "handshake did not finish");
    return nullptr;
  }

  kj::AutoCloseFd clientFd;
  kj::AutoCloseFd serverFd;
  TlsServerConfig serverConfig;
  gnutls_certificate_credentials_t serverCredentials = nullptr;
  kj::Own<TlsSession> server;
  kj::Own<TlsSession> backend;
};

TEST_F(BackendTlsTest, ForwardsSniAndAlpnAndVerifiesTheBackend) {
  BackendTlsConfig config;
  auto ca = path("ca.pem");
  ASSERT_EQ(config.init(kj::StringPtr(ca), false), nullptr);
  auto alpn = strings({"h2", "http/1.1"});
  Handshake handshake(config, "backend.example.com", alpn, "http/1.1");
  EXPECT_EQ(handshake.run(), nullptr);
  // The backend chose http/1.1 from the client's list: that is what the client will be offered.
  EXPECT_EQ(handshake.backend->negotiatedAlpn(), "http/1.1");
  char name[256];
  size_t size = sizeof(name);
  unsigned type = 0;
  ASSERT_EQ(gnutls_server_name_get(handshake.server->handle(), name, &size, &type, 0), 0);
  EXPECT_EQ(kj::StringPtr(name), "backend.example.com");

  // Bulk data through the pair: a coalesced send of many records arrives whole.
  auto data = kj::heapArray<kj::byte>(60000);
  for (size_t i = 0; i < data.size(); i++) data[i] = kj::byte(i * 7);
  auto sent = handshake.backend->send(data);
  ASSERT_EQ(sent.status, TlsStatus::DONE);
  EXPECT_EQ(sent.bytes, data.size());
  auto received = kj::heapArray<kj::byte>(data.size());
  size_t got = 0;
  while (got < received.size()) {
    auto result = handshake.server->recv(received.slice(got, received.size()));
    ASSERT_EQ(result.status, TlsStatus::DONE);
    got += result.bytes;
  }
  EXPECT_EQ(memcmp(received.begin(), data.begin(), data.size()), 0);
}

TEST_F(BackendTlsTest, NoAlpnWhenTheBackendChoosesNone) {
  BackendTlsConfig config;
  auto ca = path("ca.pem");
  ASSERT_EQ(config.init(kj::StringPtr(ca), false), nullptr);
  auto alpn = strings({"imap"});
  Handshake handshake(config, "backend.example.com", alpn, "");
  EXPECT_EQ(handshake.run(), nullptr);
  EXPECT_EQ(handshake.backend->negotiatedAlpn(), "");
}

TEST_F(BackendTlsTest, AnIpAddressIsVerifiedButNotSentAsSni) {
  BackendTlsConfig config;
  auto ca = path("ca.pem");
  ASSERT_EQ(config.init(kj::StringPtr(ca), false), nullptr);
  Handshake handshake(config, "127.0.0.1", nullptr, "");
  EXPECT_EQ(handshake.run(), nullptr);
  char name[256];
  size_t size = sizeof(name);
  unsigned type = 0;
  EXPECT_LT(gnutls_server_name_get(handshake.server->handle(), name, &size, &type, 0), 0);
}

TEST_F(BackendTlsTest, RefusesAnUntrustedOrMisnamedBackend) {
  {
    // The system store does not know the test CA.
    BackendTlsConfig config;
    ASSERT_EQ(config.init(nullptr, false), nullptr);
    Handshake handshake(config, "backend.example.com", nullptr, "");
    auto failure = KJ_ASSERT_NONNULL(handshake.run());
    EXPECT_EQ(failure,
              "TLS handshake: certificate verification failed: The certificate is NOT trusted. "
              "The certificate issuer is unknown.");
  }
  {
    BackendTlsConfig config;
    auto ca = path("ca.pem");
    ASSERT_EQ(config.init(kj::StringPtr(ca), false), nullptr);
    Handshake handshake(config, "other.example.com", nullptr, "");
    auto failure = KJ_ASSERT_NONNULL(handshake.run());
    EXPECT_TRUE(failure.endsWith("The name in the certificate does not match the expected."))
        << failure.cStr();
  }
  {
    // --insecure: the same misnamed, untrusted backend is accepted.
    BackendTlsConfig config;
    ASSERT_EQ(config.init(nullptr, true), nullptr);
    Handshake handshake(config, "other.example.com", nullptr, "");
    EXPECT_EQ(handshake.run(), nullptr);
  }
}

}  // namespace
}  // namespace tlstap
