#include "front/backend-session-cache.h"

#include <stdlib.h>
#include <sys/socket.h>

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <kj/vector.h>

#include "front/backend-tls.h"
#include "front/tls-session.h"

namespace tlstap {
namespace {

// A CA and a server certificate it signed for backend.example.com and 127.0.0.1, made by openssl
// for this run. The front's own server session plays the backend: it sends TLS 1.3 tickets.
class BackendSessionCacheTest : public testing::Test {
public:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/tlstap-session-cache-test-XXXXXX";
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
        -extfile leaf.ext -out leaf.pem)");
    if (system(run.cStr()) != 0) FAIL() << "making test certificates failed";
  }

  static void TearDownTestSuite() {
    if (dir != nullptr) system(kj::str("rm -rf ", *dir).cStr());
    delete dir;
    dir = nullptr;
  }

  void SetUp() override {
    auto ca = kj::str(*dir, "/ca.pem");
    ASSERT_EQ(clientConfig.init(kj::StringPtr(ca), false), nullptr);
    ASSERT_EQ(gnutls_certificate_allocate_credentials(&serverCredentials), 0);
    ASSERT_EQ(gnutls_certificate_set_x509_key_file(
                  serverCredentials, kj::str(*dir, "/leaf.pem").cStr(),
                  kj::str(*dir, "/leaf.key").cStr(), GNUTLS_X509_FMT_PEM),
              0);
  }

  void TearDown() override { gnutls_certificate_free_credentials(serverCredentials); }

  // One backend connection through `cache` to a server with `server`'s ticket key: runs both
  // handshakes, lets the client read the tickets the server sent, and says whether it resumed.
  bool connect(BackendSessionCache& cache, const TlsServerConfig& server, kj::StringPtr name) {
    int fds[2];
    KJ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    kj::AutoCloseFd clientFd(fds[0]), serverFd(fds[1]);
    BackendSessionCache::Slot slot(cache, name, "127.0.0.1:443");
    auto backend = newBackendSession(clientConfig, clientFd.get(), name, nullptr);
    slot.attach(backend->handle());
    auto front = newServerSession(server, serverCredentials, serverFd.get(), "");
    bool backendDone = false, serverDone = false;
    for (int round = 0; round < 100 && !(backendDone && serverDone); round++) {
      if (!backendDone) backendDone = backend->handshake().status == TlsStatus::DONE;
      if (!serverDone) serverDone = front->handshake().status == TlsStatus::DONE;
    }
    KJ_ASSERT(backendDone && serverDone, "handshake did not finish");
    slot.handshakeDone(backend->handle());
    // The tickets follow the handshake; the client reads them with the first data.
    kj::byte hello[] = {'h', 'i'};
    KJ_ASSERT(front->send(hello).status == TlsStatus::DONE);
    kj::byte buffer[16];
    size_t got = 0;
    for (int round = 0; round < 100 && got < sizeof(hello); round++) {
      auto result = backend->recv(buffer);
      if (result.status == TlsStatus::DONE) got += result.bytes;
    }
    KJ_ASSERT(got == sizeof(hello));
    return backend->resumed();
  }

  static kj::String* dir;
  BackendTlsConfig clientConfig;
  gnutls_certificate_credentials_t serverCredentials = nullptr;
};

kj::String* BackendSessionCacheTest::dir = nullptr;

TEST_F(BackendSessionCacheTest, TheNextConnectionToTheSameBackendResumes) {
  TlsServerConfig server;
  BackendSessionCache cache;
  EXPECT_FALSE(connect(cache, server, "backend.example.com"));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_TRUE(connect(cache, server, "backend.example.com"));
  // That connection brought a ticket of its own for the next one.
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_TRUE(connect(cache, server, "backend.example.com"));
}

TEST_F(BackendSessionCacheTest, ATicketIsUsedOnceAndOnlyForItsBackendName) {
  TlsServerConfig server;
  BackendSessionCache cache;
  EXPECT_FALSE(connect(cache, server, "backend.example.com"));
  size_t perConnection = cache.tickets();
  ASSERT_GE(perConnection, 1u);
  // Another name on the same address: its own full handshake (and certificate check).
  EXPECT_FALSE(connect(cache, server, "127.0.0.1"));
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.tickets(), 2 * perConnection);
  // Connections opened at once take one ticket each, until there is none left for the name.
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  kj::AutoCloseFd a(fds[0]), b(fds[1]);
  kj::Vector<kj::Own<BackendSessionCache::Slot>> slots;
  kj::Vector<kj::Own<TlsSession>> sessions;
  for (size_t i = 0; i <= perConnection; i++) {
    slots.add(kj::heap<BackendSessionCache::Slot>(cache, "backend.example.com", "127.0.0.1:443"));
    sessions.add(newBackendSession(clientConfig, a.get(), "backend.example.com", nullptr));
    slots.back()->attach(sessions.back()->handle());
    EXPECT_EQ(cache.tickets(), 2 * perConnection - kj::min(i + 1, perConnection));
  }
  EXPECT_EQ(cache.size(), 1u);  // only the other name's tickets are left
  sessions.clear();
}

TEST_F(BackendSessionCacheTest, KeepsTheNewestFewTicketsOfABackend) {
  TlsServerConfig server;
  BackendSessionCache cache;
  EXPECT_FALSE(connect(cache, server, "backend.example.com"));
  for (int i = 0; i < 12; i++) EXPECT_TRUE(connect(cache, server, "backend.example.com"));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_LE(cache.tickets(), BackendSessionCache::TICKETS_PER_BACKEND);
}

TEST_F(BackendSessionCacheTest, ARestartedBackendGetsAFullHandshake) {
  BackendSessionCache cache;
  {
    TlsServerConfig before;
    EXPECT_FALSE(connect(cache, before, "backend.example.com"));
  }
  // A new ticket key: the old ticket is refused, the handshake is a full one and succeeds.
  TlsServerConfig after;
  EXPECT_FALSE(connect(cache, after, "backend.example.com"));
  EXPECT_TRUE(connect(cache, after, "backend.example.com"));
}

TEST_F(BackendSessionCacheTest, RemembersAtMostItsCapacityOfBackends) {
  TlsServerConfig server;
  BackendSessionCache cache(1);
  EXPECT_FALSE(connect(cache, server, "backend.example.com"));
  EXPECT_FALSE(connect(cache, server, "127.0.0.1"));
  EXPECT_EQ(cache.size(), 1u);
  // The backend it has room for still resumes, and keeps its place.
  EXPECT_TRUE(connect(cache, server, "backend.example.com"));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_FALSE(connect(cache, server, "127.0.0.1"));
}

}  // namespace
}  // namespace tlstap
