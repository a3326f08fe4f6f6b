#include "front/client-hello.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>

#include <gtest/gtest.h>
#include <kj/debug.h>

namespace tlstap {
namespace {

using Bytes = kj::Vector<kj::byte>;

kj::ArrayPtr<const kj::byte> view(const Bytes& bytes) { return bytes.asPtr(); }

void put16(Bytes& out, size_t value) {
  out.add(kj::byte(value >> 8));
  out.add(kj::byte(value));
}

void append(Bytes& out, kj::ArrayPtr<const kj::byte> bytes) { out.addAll(bytes); }
void append(Bytes& out, kj::StringPtr text) { out.addAll(text.asBytes()); }

Bytes extension(uint16_t type, const Bytes& data) {
  Bytes out;
  put16(out, type);
  put16(out, data.size());
  append(out, view(data));
  return out;
}

Bytes sniExtension(kj::StringPtr name) {
  Bytes list;
  list.add(0);  // host_name
  put16(list, name.size());
  append(list, name);
  Bytes data;
  put16(data, list.size());
  append(data, view(list));
  return extension(0, data);
}

Bytes alpnExtension(kj::ArrayPtr<const kj::StringPtr> protocols) {
  Bytes list;
  for (auto p : protocols) {
    list.add(kj::byte(p.size()));
    append(list, p);
  }
  Bytes data;
  put16(data, list.size());
  append(data, view(list));
  return extension(16, data);
}

// A ClientHello handshake message (header included) with the given extensions block; without
// `extensions` the message ends after compression_methods, as TLS 1.0 allowed. `suites`: the
// cipher suites in the client's order.
Bytes clientHelloMessage(kj::Maybe<const Bytes&> extensions,
                         std::initializer_list<uint16_t> suites = {0x1301, 0xc02b}) {
  Bytes body;
  put16(body, 0x0303);
  for (int i = 0; i < 32; i++) body.add(kj::byte(i));
  body.add(0);        // session_id
  put16(body, 2 * suites.size());  // cipher_suites
  for (auto suite : suites) put16(body, suite);
  body.add(1);        // compression_methods
  body.add(0);
  KJ_IF_MAYBE(e, extensions) {
    put16(body, e->size());
    append(body, view(*e));
  }
  Bytes message;
  message.add(1);
  message.add(kj::byte(body.size() >> 16));
  put16(message, body.size() & 0xffff);
  append(message, view(body));
  return message;
}

Bytes helloWith(kj::Maybe<kj::StringPtr> sni, kj::ArrayPtr<const kj::StringPtr> alpn) {
  Bytes extensions;
  KJ_IF_MAYBE(name, sni) append(extensions, view(sniExtension(*name)));
  if (alpn.size() > 0) append(extensions, view(alpnExtension(alpn)));
  append(extensions, view(extension(43, Bytes())));  // an extension we skip
  return clientHelloMessage(extensions);
}

// Wraps a handshake message into handshake records of at most `fragment` bytes each.
Bytes inRecords(kj::ArrayPtr<const kj::byte> message, size_t fragment) {
  Bytes out;
  for (size_t pos = 0; pos < message.size(); pos += fragment) {
    size_t n = kj::min(fragment, message.size() - pos);
    out.add(22);
    put16(out, 0x0301);
    put16(out, n);
    out.addAll(message.slice(pos, pos + n));
  }
  return out;
}

HelloResult parse(const Bytes& bytes) { return parseClientHello(view(bytes)); }

void expectNeedMoreForEveryPrefix(const Bytes& bytes) {
  for (size_t length = 0; length < bytes.size(); length++) {
    auto result = parseClientHello(bytes.asPtr().slice(0, length));
    ASSERT_EQ(result.status, HelloStatus::NEED_MORE)
        << "prefix of " << length << " bytes: " << result.error.cStr();
  }
}

void expectInvalid(const Bytes& bytes, kj::StringPtr errorPart) {
  auto result = parse(bytes);
  ASSERT_EQ(result.status, HelloStatus::INVALID);
  EXPECT_NE(strstr(result.error.cStr(), errorPart.cStr()), nullptr)
      << "error '" << result.error.cStr() << "' does not mention '" << errorPart.cStr() << "'";
}

// --- ClientHellos from real clients, captured now -----------------------------------------------

// Runs `command` (with PORT replaced) against a loopback listener and returns the first bytes it
// sends: everything until it goes quiet waiting for a ServerHello.
Bytes captureHello(kj::StringPtr commandTemplate) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KJ_SYSCALL(listener);
  KJ_DEFER(close(listener));
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  KJ_SYSCALL(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  KJ_SYSCALL(listen(listener, 1));
  socklen_t length = sizeof(address);
  KJ_SYSCALL(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length));
  auto port = kj::str(ntohs(address.sin_port));

  kj::String command;
  KJ_IF_MAYBE(at, commandTemplate.findFirst('@')) {
    command = kj::str(commandTemplate.slice(0, *at), port, commandTemplate.slice(*at + 1));
  }
  pid_t child = fork();
  KJ_SYSCALL(child);
  if (child == 0) {
    execl("/bin/sh", "sh", "-c", command.cStr(), (char*)nullptr);
    _exit(127);
  }
  KJ_DEFER({
    kill(child, SIGTERM);
    waitpid(child, nullptr, 0);
  });

  pollfd waitAccept = {listener, POLLIN, 0};
  KJ_ASSERT(poll(&waitAccept, 1, 20000) == 1, "client did not connect", command);
  int connection = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  KJ_SYSCALL(connection);
  KJ_DEFER(close(connection));
  Bytes captured;
  for (;;) {
    pollfd readable = {connection, POLLIN, 0};
    if (poll(&readable, 1, captured.size() == 0 ? 20000 : 500) != 1) break;
    kj::byte buffer[4096];
    ssize_t n = read(connection, buffer, sizeof(buffer));
    if (n <= 0) break;
    captured.addAll(buffer, buffer + n);
  }
  return captured;
}

void checkRealHello(const Bytes& captured) {
  ASSERT_GT(captured.size(), 100u);
  auto result = parse(captured);
  ASSERT_EQ(result.status, HelloStatus::COMPLETE) << result.error.cStr();
  KJ_IF_MAYBE(sni, result.info.sni) {
    EXPECT_STREQ(sni->cStr(), "x.example");
  } else {
    ADD_FAILURE() << "no SNI";
  }
  ASSERT_EQ(result.info.alpn.size(), 2u);
  EXPECT_STREQ(result.info.alpn[0].cStr(), "h2");
  EXPECT_STREQ(result.info.alpn[1].cStr(), "http/1.1");
  EXPECT_EQ(result.info.recordBytes, captured.size());
  // Both clients put AES-GCM first by default.
  EXPECT_FALSE(result.info.prefersChaCha20);
  expectNeedMoreForEveryPrefix(captured);

  // The same message split into 1-byte records, and records of 7 bytes, parses the same.
  auto message = captured.asPtr().slice(5, captured.size());
  for (size_t fragment : {size_t(1), size_t(7), size_t(300)}) {
    auto split = inRecords(message, fragment);
    auto again = parse(split);
    ASSERT_EQ(again.status, HelloStatus::COMPLETE) << fragment << ": " << again.error.cStr();
    EXPECT_EQ(again.info.recordBytes, split.size());
    EXPECT_STREQ(KJ_ASSERT_NONNULL(again.info.sni).cStr(), "x.example");
    EXPECT_EQ(again.info.alpn.size(), 2u);
    expectNeedMoreForEveryPrefix(split);
  }
}

TEST(ClientHello, OpensslClient) {
  auto captured = captureHello(
      "exec openssl s_client -connect 127.0.0.1:@ -servername x.example -alpn h2,http/1.1 "
      "</dev/null >/dev/null 2>&1");
  checkRealHello(captured);
}

TEST(ClientHello, OpensslClientTls12) {
  auto captured = captureHello(
      "exec openssl s_client -tls1_2 -connect 127.0.0.1:@ -servername X.Example "
      "-alpn h2,http/1.1 </dev/null >/dev/null 2>&1");
  checkRealHello(captured);  // also checks that the SNI comes out lower-cased
}

TEST(ClientHello, GnutlsClient) {
  auto captured = captureHello(
      "exec gnutls-cli --insecure -p @ --sni-hostname x.example --alpn h2 --alpn http/1.1 "
      "127.0.0.1 </dev/null >/dev/null 2>&1");
  checkRealHello(captured);
}

TEST(ClientHello, GnutlsClientWithoutSni) {
  auto captured = captureHello(
      "exec gnutls-cli --insecure -p @ --disable-sni 127.0.0.1 </dev/null >/dev/null 2>&1");
  auto result = parse(captured);
  ASSERT_EQ(result.status, HelloStatus::COMPLETE) << result.error.cStr();
  EXPECT_TRUE(result.info.sni == nullptr);
  EXPECT_EQ(result.info.alpn.size(), 0u);
}

TEST(ClientHello, OpensslClientPreferringChaCha20) {
  auto captured = captureHello(
      "exec openssl s_client -connect 127.0.0.1:@ -servername x.example "
      "-ciphersuites TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256 "
      "</dev/null >/dev/null 2>&1");
  auto result = parse(captured);
  ASSERT_EQ(result.status, HelloStatus::COMPLETE) << result.error.cStr();
  EXPECT_TRUE(result.info.prefersChaCha20);
}

// --- Hand-built ClientHellos -------------------------------------------------------------------

TEST(ClientHello, CipherPreferenceIsTheFirstRealSuite) {
  struct Case {
    std::initializer_list<uint16_t> suites;
    bool chacha;
  };
  Case cases[] = {
      {{0x1301, 0xc02b}, false},
      {{0x1303, 0x1301}, true},
      {{0xcca9, 0xc02b}, true},  // TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305
      {{0x1302, 0x1303}, false},
      // GREASE (RFC 8701) and signalling values are not preferences.
      {{0x0a0a, 0x00ff, 0x5600, 0xcca8, 0xc02b}, true},
      {{0xfafa, 0x1301, 0x1303}, false},
      {{0x00ff}, false},
  };
  for (auto& c : cases) {
    auto records = inRecords(view(clientHelloMessage(nullptr, c.suites)), 16384);
    auto result = parse(records);
    ASSERT_EQ(result.status, HelloStatus::COMPLETE) << result.error.cStr();
    EXPECT_EQ(result.info.prefersChaCha20, c.chacha) << "first suite 0x" << std::hex
                                                     << *c.suites.begin();
    expectNeedMoreForEveryPrefix(records);
  }
}

TEST(ClientHello, BytesAfterTheHelloRecordsAreNotCounted) {
  kj::StringPtr alpn[] = {"http/1.1"};
  auto records = inRecords(view(helloWith(kj::StringPtr("a.example.com"), alpn)), 16384);
  size_t helloBytes = records.size();
  // A TLS 1.3 client may send ChangeCipherSpec and early data right after the hello.
  kj::byte more[] = {20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 9, 9};
  records.addAll(more, more + sizeof(more));
  auto result = parse(records);
  ASSERT_EQ(result.status, HelloStatus::COMPLETE) << result.error.cStr();
  EXPECT_EQ(result.info.recordBytes, helloBytes);
  EXPECT_STREQ(KJ_ASSERT_NONNULL(result.info.sni).cStr(), "a.example.com");
  ASSERT_EQ(result.info.alpn.size(), 1u);
  EXPECT_STREQ(result.info.alpn[0].cStr(), "http/1.1");
}

TEST(ClientHello, NoExtensionsAtAll) {
  auto records = inRecords(view(clientHelloMessage(nullptr)), 16384);
  auto result = parse(records);
  ASSERT_EQ(result.status, HelloStatus::COMPLETE) << result.error.cStr();
  EXPECT_TRUE(result.info.sni == nullptr);
  EXPECT_EQ(result.info.alpn.size(), 0u);
  expectNeedMoreForEveryPrefix(records);
}

TEST(ClientHello, SniTrailingDotIsDropped) {
  auto result = parse(inRecords(view(helloWith(kj::StringPtr("WWW.Example.COM."), nullptr)), 99));
  ASSERT_EQ(result.status, HelloStatus::COMPLETE) << result.error.cStr();
  EXPECT_STREQ(KJ_ASSERT_NONNULL(result.info.sni).cStr(), "www.example.com");
}

TEST(ClientHello, InvalidHostNames) {
  for (kj::StringPtr name : {"bad name", "a..b", ".a", "a/b", "*.example.com", "x\xff"}) {
    SCOPED_TRACE(name.cStr());
    expectInvalid(inRecords(view(helloWith(name, nullptr)), 16384), "invalid server name");
  }
  auto longLabel = kj::str(kj::repeat('a', 64), ".com");
  expectInvalid(inRecords(view(helloWith(longLabel.asPtr(), nullptr)), 16384),
                "invalid server name");
}

TEST(ClientHello, LongSniIsInvalid) {
  auto name = kj::str(kj::repeat('a', 300));
  expectInvalid(inRecords(view(helloWith(name.asPtr(), nullptr)), 16384), "too long");
}

TEST(ClientHello, HugeSniIsTooLarge) {
  // 64 KiB of name: the message is over the cap, which is seen from the first record header.
  auto name = kj::str(kj::repeat('a', 65000));
  auto records = inRecords(view(helloWith(name.asPtr(), nullptr)), 16384);
  expectInvalid(records, "too large");
  // Already from the first record alone, without waiting for the rest.
  auto first = parseClientHello(records.asPtr().slice(0, 16389));
  EXPECT_EQ(first.status, HelloStatus::INVALID);
}

TEST(ClientHello, CapCountsRecordHeaders) {
  // A 6000-byte message is fine in one record, but in 1-byte records it needs 36000 bytes.
  Bytes padding;
  padding.resize(6000);
  Bytes extensions = extension(21, padding);
  auto message = clientHelloMessage(extensions);
  EXPECT_EQ(parse(inRecords(view(message), 16384)).status, HelloStatus::COMPLETE);
  expectInvalid(inRecords(view(message), 1), "too large");
}

TEST(ClientHello, Sslv2Hello) {
  // An SSLv2-compatible CLIENT-HELLO as old clients send it.
  Bytes hello;
  kj::byte header[] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
  hello.addAll(header, header + sizeof(header));
  for (int i = 0; i < 21 + 16; i++) hello.add(kj::byte(i));
  expectInvalid(hello, "SSLv2-style ClientHello not supported");
  // Even the first byte is enough to know.
  auto result = parseClientHello(hello.asPtr().slice(0, 1));
  EXPECT_EQ(result.status, HelloStatus::INVALID);
}

TEST(ClientHello, NotTls) {
  Bytes http;
  append(http, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  expectInvalid(http, "not a TLS handshake");
  Bytes ssh;
  append(ssh, "SSH-2.0-OpenSSH_9.2\r\n");
  expectInvalid(ssh, "not a TLS handshake");
  kj::byte applicationData[] = {23, 3, 3, 0, 5, 1, 2, 3, 4, 5};
  Bytes wrongType;
  wrongType.addAll(applicationData, applicationData + sizeof(applicationData));
  expectInvalid(wrongType, "not a TLS handshake");
  kj::byte wrongMajor[] = {22, 2, 0};
  Bytes major;
  major.addAll(wrongMajor, wrongMajor + sizeof(wrongMajor));
  expectInvalid(major, "version");
  kj::byte wrongMinor[] = {22, 3, 9};
  Bytes minor;
  minor.addAll(wrongMinor, wrongMinor + sizeof(wrongMinor));
  expectInvalid(minor, "version");
}

TEST(ClientHello, GarbageLengths) {
  kj::StringPtr alpn[] = {"h2"};
  auto good = inRecords(view(helloWith(kj::StringPtr("a.example"), alpn)), 16384);
  ASSERT_EQ(parse(good).status, HelloStatus::COMPLETE);

  auto patched = [&](size_t offset, kj::byte value) {
    Bytes copy;
    copy.addAll(good);
    copy[offset] = value;
    return copy;
  };
  // Record length 0, and over 2^14.
  Bytes empty;
  kj::byte emptyRecord[] = {22, 3, 1, 0, 0};
  empty.addAll(emptyRecord, emptyRecord + 5);
  expectInvalid(empty, "empty handshake record");
  auto tooLong = patched(3, 0x40);
  tooLong[4] = 0x01;
  expectInvalid(tooLong, "TLS record of 16385 bytes");
  // Handshake type ServerHello.
  expectInvalid(patched(5, 2), "expected a ClientHello");
  // Handshake length 2^24-1.
  auto huge = patched(6, 0xff);
  huge[7] = 0xff;
  huge[8] = 0xff;
  expectInvalid(huge, "too large");
  // Handshake length shorter than the record: data after the hello in the same record.
  size_t messageLength = (size_t(good[6]) << 16) | (size_t(good[7]) << 8) | good[8];
  auto shorter = patched(6, kj::byte((messageLength - 1) >> 16));
  shorter[7] = kj::byte((messageLength - 1) >> 8);
  shorter[8] = kj::byte(messageLength - 1);
  expectInvalid(shorter, "after the ClientHello");
  // Session id longer than 32.
  expectInvalid(patched(5 + 4 + 2 + 32, 33), "session_id");
  // Cipher suites length odd.
  expectInvalid(patched(5 + 4 + 2 + 32 + 1 + 1, 5), "cipher_suites");
  // Extensions block longer than the message.
  size_t extensionsLength = 5 + 4 + 2 + 32 + 1 + 2 + 4 + 2;
  expectInvalid(patched(extensionsLength, 0xff), "extensions");
  // Server name list longer than its extension.
  size_t sniList = extensionsLength + 2 + 4;
  expectInvalid(patched(sniList + 1, 0xff), "server_name list");
}

TEST(ClientHello, RepeatedExtensionsAreInvalid) {
  Bytes extensions;
  append(extensions, view(sniExtension("a.example")));
  append(extensions, view(sniExtension("b.example")));
  expectInvalid(inRecords(view(clientHelloMessage(extensions)), 16384), "repeats server_name");

  Bytes names;
  names.add(0);
  put16(names, 9);
  append(names, "a.example");
  names.add(0);
  put16(names, 9);
  append(names, "b.example");
  Bytes data;
  put16(data, names.size());
  append(data, view(names));
  expectInvalid(inRecords(view(clientHelloMessage(extension(0, data))), 16384),
                "two host names");
}

TEST(ClientHello, EmptyAlpnProtocolIsInvalid) {
  kj::StringPtr alpn[] = {"h2", ""};
  expectInvalid(inRecords(view(helloWith(nullptr, alpn)), 16384), "empty ALPN protocol");
}

// --- Hostile input: nothing may crash, assert or claim more bytes than it got ------------------

void checkSane(kj::ArrayPtr<const kj::byte> input) {
  auto result = parseClientHello(input);
  switch (result.status) {
    case HelloStatus::COMPLETE:
      ASSERT_LE(result.info.recordBytes, input.size());
      ASSERT_LE(result.info.recordBytes, MAX_CLIENT_HELLO_BYTES);
      KJ_IF_MAYBE(sni, result.info.sni) ASSERT_TRUE(isValidHostName(*sni));
      break;
    case HelloStatus::NEED_MORE:
      ASSERT_LT(input.size(), MAX_CLIENT_HELLO_BYTES);
      break;
    case HelloStatus::INVALID:
      ASSERT_GT(result.error.size(), 0u);
      break;
  }
}

TEST(ClientHello, RandomBytes) {
  std::mt19937 random(12345);
  Bytes input;
  for (int round = 0; round < 20000; round++) {
    input.clear();
    size_t length = random() % 600;
    for (size_t i = 0; i < length; i++) input.add(kj::byte(random()));
    // Half the time, a plausible record header so the parser gets past the first checks.
    if (round % 2 == 0 && length >= 9) {
      input[0] = 22;
      input[1] = 3;
      input[2] = 1;
      input[5] = 1;
    }
    checkSane(view(input));
  }
}

TEST(ClientHello, MutatedRealHello) {
  kj::StringPtr alpn[] = {"h2", "http/1.1"};
  auto good = inRecords(view(helloWith(kj::StringPtr("a.example.com"), alpn)), 40);
  std::mt19937 random(777);
  int complete = 0;
  for (int round = 0; round < 50000; round++) {
    Bytes copy;
    copy.addAll(good);
    int flips = 1 + random() % 3;
    for (int i = 0; i < flips; i++) copy[random() % copy.size()] = kj::byte(random());
    size_t cut = random() % (copy.size() + 1);
    checkSane(copy.asPtr().slice(0, cut));
    if (parseClientHello(view(copy)).status == HelloStatus::COMPLETE) complete++;
  }
  // Flips inside random or cipher suites still parse: the mutation reached the deep paths.
  EXPECT_GT(complete, 1000);
}

TEST(ClientHello, HostNames) {
  EXPECT_TRUE(isValidHostName("a"));
  EXPECT_TRUE(isValidHostName("xn--bcher-kva.example"));
  EXPECT_TRUE(isValidHostName("_dmarc.Example.com"));
  EXPECT_TRUE(isValidHostName(kj::str(kj::repeat('a', 63), ".b")));
  EXPECT_FALSE(isValidHostName(""));
  EXPECT_FALSE(isValidHostName("a."));
  EXPECT_FALSE(isValidHostName("a b"));
  EXPECT_FALSE(isValidHostName(kj::str(kj::repeat('a', 64))));
  kj::Vector<kj::StringPtr> labels;
  for (int i = 0; i < 64; i++) labels.add("abc");
  auto longName = kj::strArray(labels, ".");
  EXPECT_EQ(longName.size(), 255u);
  EXPECT_FALSE(isValidHostName(longName));
  EXPECT_STREQ(lowerCaseAscii("Hello.EXAMPLE-1").cStr(), "hello.example-1");
}

}  // namespace
}  // namespace tlstap
