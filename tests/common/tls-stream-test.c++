// The TLS link (common/tls-stream.h, common/tls-link.h) with both ends in one process over a
// socket pair, as Cap'n Proto's rpc-twoparty-test does: data both ways, large transfers,
// close_notify, and every way a peer is authenticated or refused.
#include "common/tls-link.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/time.h>

#include "common/event-port.h"
#include "common/fd-stream.h"
#include "common/tls-stream.h"

namespace tlstap {
namespace {

// Keys and certificates made by openssl for this run: a link CA with a front and a recorder
// certificate, a second ("rogue") CA with a front certificate of its own, and PSK files.
class TlsLinkTest : public testing::Test {
public:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/tlstap-tls-link-test-XXXXXX";
    KJ_ASSERT(mkdtemp(tmpl) != nullptr);
    dir = new kj::String(kj::heapString(tmpl));
    const char* script = R"(set -e
      exec 2>openssl.log
      ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
      for ca in ca rogue; do
        openssl req -x509 $ec -keyout $ca.key -out $ca.pem -subj /CN=$ca -days 30 \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign
      done
      echo 'subjectAltName=DNS:recorder.test,IP:127.0.0.1' > recorder.ext
      echo 'subjectAltName=DNS:front.test' > front.ext
      for pair in ca:front ca:recorder rogue:front; do
        ca=${pair%%:*} name=${pair#*:} out=${pair%%:*}-${pair#*:}
        openssl req $ec -keyout $out.key -out $out.csr -subj /CN=$name
        openssl x509 -req -in $out.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -days 30 \
          -extfile $name.ext -out $out.crt
        cat $out.crt $out.key > $out.pem
      done
      openssl pkey -in ca-front.key -aes256 -passout pass:secret -out front-encrypted.key
      openssl pkcs12 -export -in ca-front.crt -inkey ca-front.key -out front.p12 \
        -passout pass:secret
      printf 'secret\n' > password.txt
      openssl rand -hex 32 > psk.txt
      openssl rand -hex 32 > other-psk.txt
      printf 'short\n' > short-psk.txt
      for n in ca-front ca-recorder rogue-front; do
        openssl x509 -in $n.crt -noout -fingerprint -sha256 | sed 's/.*=/sha256:/' > $n.pin
      done
      )";
    auto scriptPath = kj::str(*dir, "/make.sh");
    FILE* f = fopen(scriptPath.cStr(), "w");
    KJ_ASSERT(f != nullptr);
    fputs(script, f);
    fclose(f);
    int rc = system(kj::str("cd ", *dir, " && sh make.sh").cStr());
    if (rc != 0) system(kj::str("cat ", *dir, "/openssl.log >&2").cStr());
    KJ_ASSERT(rc == 0, "openssl failed to make the test certificates");
  }
  static void TearDownTestSuite() {
    if (dir != nullptr) system(kj::str("rm -rf ", *dir).cStr());
    delete dir;
    dir = nullptr;
  }

protected:
  static kj::String* dir;

  static kj::String path(kj::StringPtr name) { return kj::str(*dir, "/", name); }
  static kj::String pin(kj::StringPtr name) {
    auto file = path(kj::str(name, ".pin"));
    FILE* f = fopen(file.cStr(), "r");
    KJ_ASSERT(f != nullptr);
    char line[256] = {};
    KJ_ASSERT(fgets(line, sizeof(line), f) != nullptr);
    fclose(f);
    auto text = kj::heapString(line);
    return kj::heapString(text.slice(0, text.size() - 1));  // without the newline
  }

  static TlsLinkOptions psk(kj::StringPtr file) {
    TlsLinkOptions options;
    options.psk = kj::str("file:", path(file));
    return options;
  }
  static TlsLinkOptions certWithCa(kj::StringPtr cert, kj::StringPtr ca) {
    TlsLinkOptions options;
    options.cert = path(cert);
    options.ca = path(ca);
    return options;
  }
  static TlsLinkOptions certWithPin(kj::StringPtr cert, kj::StringPtr pinOf) {
    TlsLinkOptions options;
    options.cert = path(cert);
    kj::String parsed;
    KJ_ASSERT(parsePin(pin(pinOf), parsed) == nullptr);
    options.pins.add(kj::mv(parsed));
    return options;
  }

  static kj::Own<TlsLink> load(const TlsLinkOptions& options, TlsLink::Role role) {
    kj::Own<TlsLink> link;
    KJ_IF_MAYBE(error, TlsLink::load(options, role, link)) KJ_FAIL_ASSERT(*error);
    return link;
  }
  static kj::String loadError(const TlsLinkOptions& options, TlsLink::Role role) {
    kj::Own<TlsLink> link;
    KJ_IF_MAYBE(error, TlsLink::load(options, role, link)) return kj::mv(*error);
    return kj::str("loaded");
  }
};

kj::String* TlsLinkTest::dir = nullptr;

struct Handshaken {
  kj::Maybe<kj::Own<kj::AsyncIoStream>> client, server;
  kj::String clientError, serverError;
};

// Runs both handshakes over a socket pair until each has succeeded or failed.
Handshaken connectPair(kj::AsyncIoContext& io, TlsLink& client, TlsLink& server,
                       kj::StringPtr serverName = "recorder.test") {
  auto pipe = io.provider->newTwoWayPipe();
  Handshaken result;
  auto clientSide = client.wrap(kj::mv(pipe.ends[0]), serverName)
                        .then([&](kj::Own<kj::AsyncIoStream> s) { result.client = kj::mv(s); },
                              [&](kj::Exception&& e) {
                                result.clientError = kj::str(e.getDescription());
                              })
                        .eagerlyEvaluate(nullptr);
  auto serverSide = server.wrap(kj::mv(pipe.ends[1]))
                        .then([&](kj::Own<kj::AsyncIoStream> s) { result.server = kj::mv(s); },
                              [&](kj::Exception&& e) {
                                result.serverError = kj::str(e.getDescription());
                              })
                        .eagerlyEvaluate(nullptr);
  // A refused client has finished its half of the handshake and learns of the refusal on its
  // first read: read one byte, as a front's first RPC answer would.
  auto clientRead = clientSide.then([&]() -> kj::Promise<void> {
    KJ_IF_MAYBE(stream, result.client) {
      static kj::byte byte;
      return (*stream)->tryRead(&byte, 1, 1).then([](size_t) {}, [&](kj::Exception&& e) {
        result.clientError = kj::str(e.getDescription());
        result.client = nullptr;
      });
    }
    return kj::READY_NOW;
  });
  serverSide.wait(io.waitScope);
  if (result.server != nullptr) {
    // Accepted: let the client's probe read finish by sending it one byte.
    KJ_ASSERT_NONNULL(result.server)->write("!", 1).wait(io.waitScope);
  }
  clientRead.wait(io.waitScope);
  return result;
}

kj::Array<kj::byte> pattern(size_t size, uint8_t seed) {
  auto bytes = kj::heapArray<kj::byte>(size);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : bytes) {
    x = x * 1103515245u + 12345u;
    b = kj::byte(x >> 24);
  }
  return bytes;
}

kj::Promise<kj::Array<kj::byte>> readAll(kj::AsyncIoStream& stream) {
  return stream.readAllBytes();
}

TEST_F(TlsLinkTest, PskCarriesDataBothWaysAndEndsWithCloseNotify) {
  auto io = kj::setupAsyncIo();
  auto client = load(psk("psk.txt"), TlsLink::Role::CLIENT);
  auto server = load(psk("psk.txt"), TlsLink::Role::SERVER);
  auto pair = connectPair(io, *client, *server);
  ASSERT_EQ(pair.clientError, "");
  ASSERT_EQ(pair.serverError, "");
  auto& c = *KJ_ASSERT_NONNULL(pair.client);
  auto& s = *KJ_ASSERT_NONNULL(pair.server);

  // Both directions at once, larger than any buffer on the way, written in uneven pieces.
  auto up = pattern(5 * 1000 * 1000 + 17, 1);
  auto down = pattern(3 * 1000 * 1000 + 5, 2);
  kj::ArrayPtr<const kj::byte> upPieces[] = {up.slice(0, 3), up.slice(3, 70000),
                                             up.slice(70000, up.size())};
  auto writeUp = c.write(kj::arrayPtr(upPieces, 3)).then([&]() { c.shutdownWrite(); });
  auto writeDown = s.write(down.begin(), down.size()).then([&]() { s.shutdownWrite(); });
  auto receivedUp = readAll(s);
  auto receivedDown = readAll(c);
  writeUp.wait(io.waitScope);
  writeDown.wait(io.waitScope);
  auto gotUp = receivedUp.wait(io.waitScope);
  auto gotDown = receivedDown.wait(io.waitScope);
  // readAllBytes() ends only at EOF: close_notify arrived in both directions.
  EXPECT_TRUE(gotUp == up.asPtr());
  EXPECT_TRUE(gotDown == down.asPtr());
  EXPECT_EQ(gotUp.size(), up.size());
  EXPECT_EQ(gotDown.size(), down.size());
}

TEST_F(TlsLinkTest, EofWithoutCloseNotifyIsADisconnect) {
  auto io = kj::setupAsyncIo();
  auto client = load(psk("psk.txt"), TlsLink::Role::CLIENT);
  auto server = load(psk("psk.txt"), TlsLink::Role::SERVER);
  auto pair = connectPair(io, *client, *server);
  ASSERT_EQ(pair.serverError, "");
  auto& s = *KJ_ASSERT_NONNULL(pair.server);
  pair.client = nullptr;  // the socket closes without close_notify (a front killed)
  kj::byte buffer[16];
  auto exception =
      kj::runCatchingExceptions([&]() { s.tryRead(buffer, 1, 16).wait(io.waitScope); });
  auto& e = KJ_ASSERT_NONNULL(exception);
  EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED);
  EXPECT_TRUE(strstr(e.getDescription().cStr(), "without close_notify"))
      << e.getDescription().cStr();
}

TEST_F(TlsLinkTest, PskMismatchIsRefusedOnBothSides) {
  auto io = kj::setupAsyncIo();
  auto client = load(psk("other-psk.txt"), TlsLink::Role::CLIENT);
  auto server = load(psk("psk.txt"), TlsLink::Role::SERVER);
  auto pair = connectPair(io, *client, *server);
  EXPECT_EQ(pair.server, nullptr);
  EXPECT_EQ(pair.client, nullptr);
  EXPECT_TRUE(strstr(pair.serverError.cStr(), "--link-psk differs")) << pair.serverError.cStr();
  EXPECT_TRUE(strstr(pair.clientError.cStr(), "the peer refused")) << pair.clientError.cStr();
}

TEST_F(TlsLinkTest, CertificatesFromTheLinkCaAreAccepted) {
  auto io = kj::setupAsyncIo();
  auto client = load(certWithCa("ca-front.pem", "ca.pem"), TlsLink::Role::CLIENT);
  auto server = load(certWithCa("ca-recorder.pem", "ca.pem"), TlsLink::Role::SERVER);
  for (auto name : {"recorder.test", "127.0.0.1"}) {
    auto pair = connectPair(io, *client, *server, name);
    EXPECT_EQ(pair.serverError, "") << name;
    EXPECT_EQ(pair.clientError, "") << name;
    ASSERT_NE(pair.client, nullptr) << name;
    auto& c = *KJ_ASSERT_NONNULL(pair.client);
    auto& s = *KJ_ASSERT_NONNULL(pair.server);
    c.write("hello", 5).wait(io.waitScope);
    char buffer[5];
    EXPECT_EQ(s.tryRead(buffer, 5, 5).wait(io.waitScope), 5u);
    EXPECT_EQ(kj::StringPtr(buffer, 5), "hello");
  }
}

TEST_F(TlsLinkTest, RecorderCertificateForAnotherNameIsRefusedByTheFront) {
  auto io = kj::setupAsyncIo();
  auto client = load(certWithCa("ca-front.pem", "ca.pem"), TlsLink::Role::CLIENT);
  auto server = load(certWithCa("ca-recorder.pem", "ca.pem"), TlsLink::Role::SERVER);
  auto pair = connectPair(io, *client, *server, "elsewhere.test");
  EXPECT_EQ(pair.client, nullptr);
  EXPECT_TRUE(strstr(pair.clientError.cStr(), "not trusted")) << pair.clientError.cStr();
  EXPECT_NE(pair.serverError, "");  // the front's alert ends the recorder's handshake
}

TEST_F(TlsLinkTest, UntrustedFrontCertificateIsRefusedByTheRecorder) {
  auto io = kj::setupAsyncIo();
  auto client = load(certWithCa("rogue-front.pem", "ca.pem"), TlsLink::Role::CLIENT);
  auto server = load(certWithCa("ca-recorder.pem", "ca.pem"), TlsLink::Role::SERVER);
  auto pair = connectPair(io, *client, *server);
  EXPECT_EQ(pair.server, nullptr);
  EXPECT_TRUE(strstr(pair.serverError.cStr(), "not trusted by --link-ca"))
      << pair.serverError.cStr();
  // The front learns it was refused from the recorder's alert.
  EXPECT_TRUE(strstr(pair.clientError.cStr(), "refused")) << pair.clientError.cStr();
}

TEST_F(TlsLinkTest, PinnedCertificatesAreAcceptedAndOthersRefused) {
  auto io = kj::setupAsyncIo();
  auto server = load(certWithPin("ca-recorder.pem", "ca-front"), TlsLink::Role::SERVER);
  {
    auto client = load(certWithPin("ca-front.pem", "ca-recorder"), TlsLink::Role::CLIENT);
    auto pair = connectPair(io, *client, *server);
    EXPECT_EQ(pair.serverError, "");
    EXPECT_EQ(pair.clientError, "");
    EXPECT_NE(pair.server, nullptr);
  }
  {
    // Same subject, another key: the fingerprint differs.
    auto client = load(certWithPin("rogue-front.pem", "ca-recorder"), TlsLink::Role::CLIENT);
    auto pair = connectPair(io, *client, *server);
    EXPECT_EQ(pair.server, nullptr);
    EXPECT_TRUE(strstr(pair.serverError.cStr(), "is not pinned")) << pair.serverError.cStr();
    // The refusal names the fingerprint, so that a user can pin it if it is the right one.
    EXPECT_TRUE(strstr(pair.serverError.cStr(), "sha256:")) << pair.serverError.cStr();
  }
  {
    // The front pins another certificate than the recorder's.
    auto client = load(certWithPin("ca-front.pem", "rogue-front"), TlsLink::Role::CLIENT);
    auto pair = connectPair(io, *client, *server);
    EXPECT_EQ(pair.client, nullptr);
    EXPECT_TRUE(strstr(pair.clientError.cStr(), "is not pinned")) << pair.clientError.cStr();
  }
}

TEST_F(TlsLinkTest, CaAndPinTogetherMustBothHold) {
  auto io = kj::setupAsyncIo();
  auto both = [&](kj::StringPtr cert, kj::StringPtr ca, kj::StringPtr pinOf) {
    auto options = certWithPin(cert, pinOf);
    options.ca = path(ca);
    return options;
  };
  auto client = load(both("ca-front.pem", "ca.pem", "ca-recorder"), TlsLink::Role::CLIENT);
  EXPECT_EQ(client->describe(),
            kj::str("certificates issued by ", path("ca.pem"), ", and pinned"));
  {
    auto server = load(both("ca-recorder.pem", "ca.pem", "ca-front"), TlsLink::Role::SERVER);
    auto pair = connectPair(io, *client, *server);
    EXPECT_EQ(pair.serverError, "");
    EXPECT_EQ(pair.clientError, "");
    EXPECT_NE(pair.server, nullptr);
    EXPECT_NE(pair.client, nullptr);
  }
  {
    // Issued by the CA, but not the pinned certificate.
    auto server = load(both("ca-recorder.pem", "ca.pem", "ca-recorder"), TlsLink::Role::SERVER);
    auto pair = connectPair(io, *client, *server);
    EXPECT_EQ(pair.server, nullptr);
    EXPECT_TRUE(strstr(pair.serverError.cStr(), "is not pinned")) << pair.serverError.cStr();
  }
  {
    // Pinned, but not issued by the CA.
    auto server = load(both("ca-recorder.pem", "ca.pem", "rogue-front"), TlsLink::Role::SERVER);
    auto rogue = load(both("rogue-front.pem", "ca.pem", "ca-recorder"), TlsLink::Role::CLIENT);
    auto pair = connectPair(io, *rogue, *server);
    EXPECT_EQ(pair.server, nullptr);
    EXPECT_TRUE(strstr(pair.serverError.cStr(), "not trusted by --link-ca"))
        << pair.serverError.cStr();
  }
  {
    // The front's side too: the recorder's certificate is pinned, but the CA is another one.
    auto server = load(both("ca-recorder.pem", "ca.pem", "ca-front"), TlsLink::Role::SERVER);
    auto wrongCa = load(both("ca-front.pem", "rogue.pem", "ca-recorder"), TlsLink::Role::CLIENT);
    auto pair = connectPair(io, *wrongCa, *server);
    EXPECT_EQ(pair.client, nullptr);
    EXPECT_TRUE(strstr(pair.clientError.cStr(), "not trusted by --link-ca"))
        << pair.clientError.cStr();
  }
}

TEST_F(TlsLinkTest, PlainTcpGarbageIsRefusedDuringTheHandshake) {
  auto io = kj::setupAsyncIo();
  auto server = load(psk("psk.txt"), TlsLink::Role::SERVER);
  auto pipe = io.provider->newTwoWayPipe();
  auto accepted = server->wrap(kj::mv(pipe.ends[1]));
  pipe.ends[0]->write("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27).wait(io.waitScope);
  auto exception = kj::runCatchingExceptions([&]() { accepted.wait(io.waitScope); });
  auto& e = KJ_ASSERT_NONNULL(exception);
  EXPECT_TRUE(strstr(e.getDescription().cStr(), "TLS handshake")) << e.getDescription().cStr();
}

TEST_F(TlsLinkTest, CertificateAndKeyFilesInEveryForm) {
  auto check = [&](TlsLinkOptions options) { return loadError(options, TlsLink::Role::CLIENT); };
  auto withCert = [&](kj::StringPtr spec) {
    auto options = certWithCa("ca-front.pem", "ca.pem");
    options.cert = kj::heapString(spec);
    return check(kj::mv(options));
  };
  EXPECT_EQ(withCert(path("ca-front.pem")), "loaded");
  EXPECT_EQ(withCert(kj::str(path("ca-front.crt"), "+", path("ca-front.key"))), "loaded");
  EXPECT_EQ(withCert(kj::str(path("ca-front.crt"), "+", path("front-encrypted.key"), ":file:",
                             path("password.txt"))),
            "loaded");
  EXPECT_EQ(withCert(kj::str(path("front.p12"), ":file:", path("password.txt"))), "loaded");
  EXPECT_TRUE(strstr(withCert(kj::str(path("front.p12"), ":file:", path("psk.txt"))).cStr(),
                     "wrong password"));
  EXPECT_TRUE(strstr(withCert(path("ca-front.crt")).cStr(), "no private key"));
  EXPECT_TRUE(strstr(withCert(path("missing.pem")).cStr(), "not found"));
  auto badCa = certWithCa("ca-front.pem", "psk.txt");
  EXPECT_TRUE(strstr(check(kj::mv(badCa)).cStr(), "--link-ca"));
  EXPECT_TRUE(strstr(check(psk("short-psk.txt")).cStr(), "at least 16"));
  EXPECT_TRUE(strstr(check(psk("missing-psk.txt")).cStr(), "--link-psk"));
}

TEST_F(TlsLinkTest, EnvSecretsAreGoneFromTheEnvironmentOnceRead) {
  // --link-psk env:NAME, on both sides.
  for (auto role : {TlsLink::Role::CLIENT, TlsLink::Role::SERVER}) {
    setenv("TLSTAP_TEST_LINK_PSK", "0123456789abcdef0123456789abcdef\n", 1);
    TlsLinkOptions options;
    options.psk = kj::str("env:TLSTAP_TEST_LINK_PSK");
    EXPECT_EQ(loadError(options, role), "loaded");
    EXPECT_EQ(getenv("TLSTAP_TEST_LINK_PSK"), nullptr);
  }
  setenv("TLSTAP_TEST_LINK_PSK", "short", 1);
  TlsLinkOptions shortKey;
  shortKey.psk = kj::str("env:TLSTAP_TEST_LINK_PSK");
  auto error = loadError(shortKey, TlsLink::Role::CLIENT);
  EXPECT_TRUE(error.startsWith("--link-psk: the key has 5 bytes")) << error.cStr();
  EXPECT_EQ(getenv("TLSTAP_TEST_LINK_PSK"), nullptr);

  // --link-cert FILE:env:NAME: right, then wrong.
  auto withPassword = [&](kj::StringPtr value) {
    setenv("TLSTAP_TEST_LINK_PW", value.cStr(), 1);
    auto options = certWithCa("ca-front.pem", "ca.pem");
    options.cert = kj::str(path("front.p12"), ":env:TLSTAP_TEST_LINK_PW");
    auto result = loadError(options, TlsLink::Role::CLIENT);
    EXPECT_EQ(getenv("TLSTAP_TEST_LINK_PW"), nullptr) << value.cStr();
    return result;
  };
  EXPECT_EQ(withPassword("secret"), "loaded");
  EXPECT_EQ(withPassword("wrong"),
            kj::str("--link-cert: '", path("front.p12"), "': wrong password"));
}

TEST_F(TlsLinkTest, WipeSecretsLeavesNoLiteralBehind) {
  TlsLinkOptions options;
  options.cert = kj::str(path("front.p12"), ":secret");
  options.psk = kj::str("0123456789abcdef0123456789abcdef");
  size_t certSize = KJ_ASSERT_NONNULL(options.cert).size();
  options.wipeSecrets();
  auto& cert = KJ_ASSERT_NONNULL(options.cert);
  auto& psk = KJ_ASSERT_NONNULL(options.psk);
  EXPECT_EQ(cert.size(), certSize);
  EXPECT_EQ(memchr(cert.begin(), 's', cert.size()), nullptr);
  EXPECT_EQ(memchr(psk.begin(), '0', psk.size()), nullptr);
}

TEST(TlsLinkOptions, Combinations) {
  kj::String parsed;
  EXPECT_EQ(parsePin("sha256:" + std::string(64, 'A'), parsed), nullptr);
  EXPECT_EQ(parsed, kj::StringPtr(std::string(64, 'a').c_str()));
  EXPECT_NE(parsePin("sha1:abcd", parsed), nullptr);
  EXPECT_NE(parsePin("sha256:abcd", parsed), nullptr);
  EXPECT_NE(parsePin("sha256:" + std::string(64, 'g'), parsed), nullptr);

  TlsLinkOptions options;
  options.psk = kj::str("env:X");
  EXPECT_EQ(checkTlsLinkOptions(options), nullptr);
  options.cert = kj::str("c.pem");
  EXPECT_TRUE(KJ_ASSERT_NONNULL(checkTlsLinkOptions(options)).startsWith("--link-psk"));
  options.psk = nullptr;
  EXPECT_TRUE(KJ_ASSERT_NONNULL(checkTlsLinkOptions(options)).startsWith("--link-cert: needs"));
  options.ca = kj::str("ca.pem");
  EXPECT_EQ(checkTlsLinkOptions(options), nullptr);
  options.pins.add(kj::heapString(std::string(64, 'a').c_str()));
  EXPECT_EQ(checkTlsLinkOptions(options), nullptr);  // both must hold
  options.cert = nullptr;
  EXPECT_TRUE(KJ_ASSERT_NONNULL(checkTlsLinkOptions(options)).startsWith("--link-ca: needs"));
}

TEST_F(TlsLinkTest, SocketOptionsAreTheSocketsOnTheLibeventLoop) {
  // The front's loop: KJ on libevent, the stream over a socket fd.
  event_base* base = event_base_new();
  KJ_DEFER(event_base_free(base));
  {
    KjOnLibevent kj(base);
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    auto client = load(psk("psk.txt"), TlsLink::Role::CLIENT);
    auto server = load(psk("psk.txt"), TlsLink::Role::SERVER);
    auto clientSide = client->wrap(wrapSocketFd(base, kj::AutoCloseFd(fds[0])), "recorder.test")
                          .eagerlyEvaluate(nullptr);
    auto serverSide = server->wrap(wrapSocketFd(base, kj::AutoCloseFd(fds[1])))
                          .eagerlyEvaluate(nullptr);
    auto c = clientSide.wait(kj.waitScope());
    auto s = serverSide.wait(kj.waitScope());

    int sndbuf = 0;
    uint length = sizeof(sndbuf);
    c->getsockopt(SOL_SOCKET, SO_SNDBUF, &sndbuf, &length);
    EXPECT_GT(sndbuf, 0);
    EXPECT_EQ(length, sizeof(sndbuf));

    auto data = pattern(1 << 20, 3);
    auto writing = c->write(data.begin(), data.size())
                       .then([&]() { c->shutdownWrite(); })
                       .eagerlyEvaluate(nullptr);
    auto got = s->readAllBytes().wait(kj.waitScope());
    writing.wait(kj.waitScope());
    EXPECT_TRUE(got == data.asPtr());
  }
}

TEST_F(TlsLinkTest, ThroughputOverASocketPair) {
  // Printed, not asserted: the machine is shared. The link carries every recorded byte.
  auto io = kj::setupAsyncIo();
  auto client = load(psk("psk.txt"), TlsLink::Role::CLIENT);
  auto server = load(psk("psk.txt"), TlsLink::Role::SERVER);
  auto pair = connectPair(io, *client, *server);
  auto& c = *KJ_ASSERT_NONNULL(pair.client);
  auto& s = *KJ_ASSERT_NONNULL(pair.server);
  constexpr size_t CHUNK = 64 << 10;
  constexpr size_t TOTAL = 256 << 20;
  auto chunk = pattern(CHUNK, 4);
  auto buffer = kj::heapArray<kj::byte>(CHUNK);
  size_t received = 0;
  auto start = kj::systemPreciseMonotonicClock().now();
  kj::Function<kj::Promise<void>(size_t)> writeMore = [&](size_t sent) -> kj::Promise<void> {
    if (sent == TOTAL) return kj::READY_NOW;
    return c.write(chunk.begin(), CHUNK).then([&, sent]() { return writeMore(sent + CHUNK); });
  };
  kj::Function<kj::Promise<void>()> readMore = [&]() -> kj::Promise<void> {
    if (received == TOTAL) return kj::READY_NOW;
    return s.tryRead(buffer.begin(), 1, CHUNK).then([&](size_t n) {
      KJ_ASSERT(n > 0);
      received += n;
      return readMore();
    });
  };
  auto writing = writeMore(0).eagerlyEvaluate(nullptr);
  readMore().wait(io.waitScope);
  writing.wait(io.waitScope);
  auto seconds = double((kj::systemPreciseMonotonicClock().now() - start) / kj::NANOSECONDS) / 1e9;
  EXPECT_EQ(received, TOTAL);
  auto session = static_cast<TlsStream&>(c).session();
  printf("TLS link throughput (one core, both ends, %s): %.0f MB/s over %zu MiB\n",
         gnutls_cipher_get_name(gnutls_cipher_get(session)), double(TOTAL) / seconds / 1e6,
         TOTAL >> 20);
  // The link must not fall back to a software cipher where AES-GCM is available.
  EXPECT_EQ(gnutls_cipher_get(session), GNUTLS_CIPHER_AES_128_GCM);
}

}  // namespace
}  // namespace tlstap
