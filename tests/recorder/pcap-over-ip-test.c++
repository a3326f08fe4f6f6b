// PCAP-over-IP against real loopback sockets: what a consumer reads is a valid pcap stream with
// exactly the packets written while it was connected; a slow consumer is cut off without costing
// the others anything; garbage and disconnects are handled; connect-out reconnects; drain()
// delivers what was queued.
#include "recorder/pcap-over-ip.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <string>
#include <vector>

#include "common/address.h"

namespace tlstap {
namespace {

constexpr int64_t START_US = 1795000000LL * 1000000 + 123456;  // late 2026, odd microseconds

// What libpcap writes at the start of a classic microsecond pcap, field by field.
kj::Array<kj::byte> expectedGlobalHeader() {
  auto out = kj::heapArray<kj::byte>(24);
  uint32_t magic = 0xa1b2c3d4, snaplen = 65535, linktype = 1, zero = 0;
  uint16_t major = 2, minor = 4;
  memcpy(out.begin(), &magic, 4);
  memcpy(out.begin() + 4, &major, 2);
  memcpy(out.begin() + 6, &minor, 2);
  memcpy(out.begin() + 8, &zero, 4);
  memcpy(out.begin() + 12, &zero, 4);
  memcpy(out.begin() + 16, &snaplen, 4);
  memcpy(out.begin() + 20, &linktype, 4);
  return out;
}

kj::Array<kj::byte> makeFrame(size_t size, uint32_t seed) {
  auto frame = kj::heapArray<kj::byte>(size);
  for (size_t i = 0; i < size; i++) frame[i] = kj::byte((i * 131 + seed * 7919) >> 3);
  return frame;
}

// One pcap record exactly as a reader expects it after writePacket(timeUs, frame).
void appendRecord(std::string& out, int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) {
  uint32_t captured = kj::min(frame.size(), size_t(65535));
  uint32_t fields[4] = {uint32_t(timeUs / 1000000), uint32_t(timeUs % 1000000), captured,
                        uint32_t(frame.size())};
  out.append(reinterpret_cast<const char*>(fields), sizeof(fields));
  out.append(reinterpret_cast<const char*>(frame.begin()), captured);
}

std::string toString(kj::ArrayPtr<const kj::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

// Sends stderr to a temporary file so a test can check the log lines.
class StderrCapture {
public:
  StderrCapture() : file(tmpfile()) {
    KJ_ASSERT(file != nullptr);
    saved = dup(STDERR_FILENO);
    dup2(fileno(file), STDERR_FILENO);
  }
  ~StderrCapture() {
    if (saved >= 0) finish();
    fclose(file);
  }
  std::string finish() {
    dup2(saved, STDERR_FILENO);
    close(saved);
    saved = -1;
    std::string text;
    char buffer[4096];
    rewind(file);
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
    return text;
  }

private:
  FILE* file;
  int saved = -1;
};

size_t countLines(const std::string& text, const std::string& needle) {
  size_t count = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (text.substr(start, end - start).find(needle) != std::string::npos) ++count;
    start = end + 1;
  }
  return count;
}

// A consumer that never reads, with a receive buffer as small as the kernel allows so its
// backlog lands in our queue quickly. Connected with plain blocking calls: the kernel completes
// the handshake from the listen backlog.
kj::AutoCloseFd connectNonReader(uint port) {
  int fd;
  KJ_SYSCALL(fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  kj::AutoCloseFd result(fd);
  int size = 4096;
  KJ_SYSCALL(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)));
  struct sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  KJ_SYSCALL(connect(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof(address)));
  return result;
}

kj::String localName(int fd) {
  struct sockaddr_storage storage;
  socklen_t length = sizeof(storage);
  KJ_SYSCALL(getsockname(fd, reinterpret_cast<struct sockaddr*>(&storage), &length));
  return SocketAddress::fromSockaddr(reinterpret_cast<struct sockaddr*>(&storage), length)
      .toString();
}

class PcapOverIpTest : public testing::Test {
protected:
  // KJ destructors may throw; gtest's may not.
  ~PcapOverIpTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::WaitScope& waitScope = io.waitScope;
  kj::Timer& timer = io.provider->getTimer();
  kj::Network& network = io.provider->getNetwork();

  kj::Own<kj::ConnectionReceiver> listen() {
    return network.parseAddress("127.0.0.1", 0).wait(waitScope)->listen();
  }

  kj::Own<kj::AsyncIoStream> connect(uint port) {
    return network.parseAddress("127.0.0.1", port).wait(waitScope)->connect().wait(waitScope);
  }

  // Runs the event loop until `done` holds; false after two seconds.
  template <typename Predicate>
  bool runUntil(Predicate done) {
    auto deadline = kj::systemPreciseMonotonicClock().now() + 2 * kj::SECONDS;
    while (!done()) {
      if (kj::systemPreciseMonotonicClock().now() > deadline) return false;
      timer.afterDelay(1 * kj::MILLISECONDS).wait(waitScope);
    }
    return true;
  }

  std::string readExactly(kj::AsyncIoStream& stream, size_t size) {
    std::string out(size, '\0');
    timer.timeoutAfter(2 * kj::SECONDS, stream.read(&out[0], size)).wait(waitScope);
    return out;
  }

  // Reads until EOF.
  kj::Promise<void> readAll(kj::AsyncIoStream& stream, std::string& out) {
    auto buffer = kj::heapArray<char>(1 << 16);
    auto promise = stream.tryRead(buffer.begin(), 1, buffer.size());
    return promise.then([this, &stream, &out, buffer = kj::mv(buffer)](size_t n) mutable
                        -> kj::Promise<void> {
      if (n == 0) return kj::READY_NOW;
      out.append(buffer.begin(), n);
      return readAll(stream, out);
    });
  }
};

TEST_F(PcapOverIpTest, ConsumerGetsGlobalHeaderThenExactRecordsFromConnectOn) {
  PcapOverIp pcap(timer);
  auto listener = listen();
  uint port = listener->getPort();
  auto serving = pcap.acceptFrom(kj::mv(listener));

  // Written before anyone listens: must not show up.
  auto early = makeFrame(60, 99);
  pcap.writePacket(START_US, early);

  auto client = connect(port);
  ASSERT_TRUE(runUntil([&]() { return pcap.consumerCount() == 1; }));

  // A minimum frame, a full-size Ethernet frame, and one past the snap length (truncated to
  // 65535 captured bytes, original length kept).
  size_t sizes[] = {60, 1514, 70000};
  std::string expected = toString(expectedGlobalHeader());
  for (uint i = 0; i < 3; i++) {
    auto frame = makeFrame(sizes[i], i);
    int64_t timeUs = START_US + i * 1000001;
    pcap.writePacket(timeUs, frame);
    appendRecord(expected, timeUs, frame);
  }

  std::string got = readExactly(*client, expected.size());
  ASSERT_EQ(got.substr(0, 24), expected.substr(0, 24));
  // Parse the records back rather than trusting the byte comparison alone.
  size_t offset = 24;
  for (uint i = 0; i < 3; i++) {
    uint32_t fields[4];
    memcpy(fields, got.data() + offset, 16);
    int64_t timeUs = START_US + i * 1000001;
    EXPECT_EQ(fields[0], uint32_t(timeUs / 1000000));
    EXPECT_EQ(fields[1], uint32_t(timeUs % 1000000));
    EXPECT_EQ(fields[2], kj::min(sizes[i], size_t(65535)));
    EXPECT_EQ(fields[3], sizes[i]);
    offset += 16 + fields[2];
  }
  EXPECT_EQ(offset, got.size());
  EXPECT_EQ(got, expected);
}

TEST_F(PcapOverIpTest, SlowConsumerIsCutOffWhileTheOtherGetsEverything) {
  constexpr size_t LIMIT = 256u << 10;
  PcapOverIp pcap(timer, LIMIT);
  auto listener = listen();
  uint port = listener->getPort();
  auto serving = pcap.acceptFrom(kj::mv(listener));

  StderrCapture capture;
  auto slow = connectNonReader(port);
  auto slowName = localName(slow);
  auto fast = connect(port);
  ASSERT_TRUE(runUntil([&]() { return pcap.consumerCount() == 2; }));
  ASSERT_EQ(readExactly(*fast, 24), toString(expectedGlobalHeader()));

  // Batches well under the limit, each read in full by the fast consumer before the next, so
  // only the one that never reads can fall behind.
  uint32_t seed = 0;
  size_t written = 0;
  size_t afterCutOff = 0;
  while (afterCutOff < (1u << 20)) {
    ASSERT_LT(written, 64u << 20) << "the consumer that never reads was not cut off";
    std::string expected;
    for (int i = 0; i < 48; i++) {
      auto frame = makeFrame(1514, seed++);
      pcap.writePacket(START_US + seed, frame);
      appendRecord(expected, START_US + seed, frame);
    }
    written += expected.size();
    if (pcap.consumerCount() == 1) afterCutOff += expected.size();
    ASSERT_EQ(readExactly(*fast, expected.size()), expected);
  }
  EXPECT_EQ(pcap.consumerCount(), 1u);

  auto log = capture.finish();
  EXPECT_EQ(countLines(log, "too slow"), 1u) << log;
  EXPECT_EQ(countLines(log, kj::str(slowName, " is too slow").cStr()), 1u) << log;
  EXPECT_EQ(countLines(log, "bytes queued"), 1u) << log;
}

TEST_F(PcapOverIpTest, ConsumerSendingGarbageStaysServed) {
  PcapOverIp pcap(timer);
  auto listener = listen();
  uint port = listener->getPort();
  auto serving = pcap.acceptFrom(kj::mv(listener));
  auto client = connect(port);
  ASSERT_TRUE(runUntil([&]() { return pcap.consumerCount() == 1; }));

  // Far more than the socket buffers hold: the write only completes if the other side reads.
  auto garbage = makeFrame(16u << 20, 7);
  timer.timeoutAfter(2 * kj::SECONDS, client->write(garbage.begin(), garbage.size()))
      .wait(waitScope);

  std::string expected = toString(expectedGlobalHeader());
  for (uint i = 0; i < 10; i++) {
    auto frame = makeFrame(100 + i, i);
    pcap.writePacket(START_US + i, frame);
    appendRecord(expected, START_US + i, frame);
  }
  EXPECT_EQ(readExactly(*client, expected.size()), expected);
  EXPECT_EQ(pcap.consumerCount(), 1u);
}

TEST_F(PcapOverIpTest, DisconnectedConsumerIsRemoved) {
  PcapOverIp pcap(timer);
  auto listener = listen();
  uint port = listener->getPort();
  auto serving = pcap.acceptFrom(kj::mv(listener));
  auto staying = connect(port);
  auto leaving = connect(port);
  ASSERT_TRUE(runUntil([&]() { return pcap.consumerCount() == 2; }));

  StderrCapture capture;
  leaving = nullptr;
  // Keep writing while the close is noticed: writing to a closed socket must not hurt either.
  auto frame = makeFrame(1514, 1);
  uint written = 0;
  ASSERT_TRUE(runUntil([&]() {
    pcap.writePacket(START_US, frame);
    ++written;
    return pcap.consumerCount() == 1;
  }));
  auto log = capture.finish();
  EXPECT_EQ(countLines(log, "removed"), 1u) << log;

  // The one that stayed got every packet.
  std::string expected = toString(expectedGlobalHeader());
  for (uint i = 0; i < written; i++) appendRecord(expected, START_US, frame);
  EXPECT_EQ(readExactly(*staying, expected.size()), expected);
}

TEST_F(PcapOverIpTest, RefusesConsumersPastTheLimit) {
  PcapOverIp pcap(timer);
  auto listener = listen();
  uint port = listener->getPort();
  auto serving = pcap.acceptFrom(kj::mv(listener));
  kj::Vector<kj::Own<kj::AsyncIoStream>> clients;
  for (size_t i = 0; i < PcapOverIp::MAX_ACCEPTED_CONSUMERS; i++) clients.add(connect(port));
  ASSERT_TRUE(runUntil([&]() {
    return pcap.consumerCount() == PcapOverIp::MAX_ACCEPTED_CONSUMERS;
  }));

  StderrCapture capture;
  auto extra = connect(port);
  char byte;
  EXPECT_EQ(timer.timeoutAfter(2 * kj::SECONDS, extra->tryRead(&byte, 1, 1)).wait(waitScope), 0u);
  EXPECT_EQ(pcap.consumerCount(), PcapOverIp::MAX_ACCEPTED_CONSUMERS);
  EXPECT_EQ(countLines(capture.finish(), "refused consumer"), 1u);

  // A slot that frees up can be used again.
  clients.removeLast();
  ASSERT_TRUE(runUntil([&]() {
    return pcap.consumerCount() == PcapOverIp::MAX_ACCEPTED_CONSUMERS - 1;
  }));
  auto another = connect(port);
  EXPECT_EQ(readExactly(*another, 24), toString(expectedGlobalHeader()));
}

TEST_F(PcapOverIpTest, ConnectToDeliversAndReconnectsAfterClose) {
  auto listener = listen();
  PcapOverIp pcap(timer);
  pcap.setReconnectBackoff(10 * kj::MILLISECONDS, 50 * kj::MILLISECONDS);
  auto name = kj::str("127.0.0.1:", listener->getPort());
  auto address = network.parseAddress(name).wait(waitScope);
  auto connecting = pcap.connectTo(kj::mv(address), kj::mv(name));

  for (uint round = 0; round < 2; round++) {
    auto consumer = timer.timeoutAfter(2 * kj::SECONDS, listener->accept()).wait(waitScope);
    ASSERT_TRUE(runUntil([&]() { return pcap.consumerCount() == 1; }));
    std::string expected = toString(expectedGlobalHeader());
    auto frame = makeFrame(200, round);
    pcap.writePacket(START_US + round, frame);
    appendRecord(expected, START_US + round, frame);
    EXPECT_EQ(readExactly(*consumer, expected.size()), expected) << "round " << round;
    // Closing the consumer's end must make the recorder notice and connect again.
    consumer = nullptr;
    ASSERT_TRUE(runUntil([&]() { return pcap.consumerCount() == 0; }));
  }
}

TEST_F(PcapOverIpTest, ConnectToRetriesUntilTheConsumerListens) {
  uint port;
  {
    auto probe = listen();
    port = probe->getPort();
  }
  PcapOverIp pcap(timer);
  pcap.setReconnectBackoff(5 * kj::MILLISECONDS, 40 * kj::MILLISECONDS);
  StderrCapture capture;
  auto name = kj::str("127.0.0.1:", port);
  auto address = network.parseAddress(name).wait(waitScope);
  auto connecting = pcap.connectTo(kj::mv(address), kj::mv(name));
  timer.afterDelay(150 * kj::MILLISECONDS).wait(waitScope);
  auto failures = countLines(capture.finish(), "cannot connect to 127.0.0.1:");
  // 5+10+20+40+40 ms fit in 150 ms: a handful of attempts, one line each, not a flood.
  EXPECT_GE(failures, 2u);
  EXPECT_LE(failures, 7u);

  auto listener = network.parseAddress("127.0.0.1", port).wait(waitScope)->listen();
  auto consumer = timer.timeoutAfter(2 * kj::SECONDS, listener->accept()).wait(waitScope);
  EXPECT_EQ(readExactly(*consumer, 24), toString(expectedGlobalHeader()));
  EXPECT_EQ(pcap.consumerCount(), 1u);
}

TEST_F(PcapOverIpTest, DrainDeliversEverythingQueued) {
  auto pcap = kj::heap<PcapOverIp>(timer, 64u << 20);
  auto listener = listen();
  uint port = listener->getPort();
  auto serving = pcap->acceptFrom(kj::mv(listener));
  auto client = connect(port);
  ASSERT_TRUE(runUntil([&]() { return pcap->consumerCount() == 1; }));

  // Queued without running the loop: far more than the socket buffers hold.
  std::string expected = toString(expectedGlobalHeader());
  for (uint32_t i = 0; i < 10000; i++) {
    auto frame = makeFrame(1514, i);
    pcap->writePacket(START_US + i, frame);
    appendRecord(expected, START_US + i, frame);
  }

  std::string got;
  auto reading = readAll(*client, got);
  auto started = kj::systemPreciseMonotonicClock().now();
  pcap->drain(10 * kj::SECONDS).wait(waitScope);
  EXPECT_LT(kj::systemPreciseMonotonicClock().now() - started, 5 * kj::SECONDS);

  // Shut down right after drain(), as main() does: nothing may be lost.
  serving = nullptr;
  pcap = nullptr;
  timer.timeoutAfter(2 * kj::SECONDS, kj::mv(reading)).wait(waitScope);
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected);
}

TEST_F(PcapOverIpTest, DrainGivesUpAfterTimeoutAndDestructionMidWriteIsSafe) {
  auto pcap = kj::heap<PcapOverIp>(timer, 64u << 20);
  auto listener = listen();
  uint port = listener->getPort();
  auto serving = pcap->acceptFrom(kj::mv(listener));
  auto stuck = connectNonReader(port);
  ASSERT_TRUE(runUntil([&]() { return pcap->consumerCount() == 1; }));

  auto frame = makeFrame(1514, 3);
  for (uint32_t i = 0; i < 8000; i++) pcap->writePacket(START_US + i, frame);

  StderrCapture capture;
  // The loop's clock, which the drain's timeout counts on.
  auto started = timer.now();
  auto drained = pcap->drain(100 * kj::MILLISECONDS);
  drained.wait(waitScope);
  // Nothing the consumer leaves unread counts as delivered: the drain waited for its timeout
  // (and not for ever), and says what it left behind.
  auto elapsed = timer.now() - started;
  EXPECT_GE(elapsed, 100 * kj::MILLISECONDS);
  EXPECT_LT(elapsed, 5 * kj::SECONDS);
  EXPECT_EQ(countLines(capture.finish(), "gave up draining"), 1u);
  EXPECT_EQ(pcap->consumerCount(), 1u);

  // A write is in flight to the consumer that never reads; destroying now must cancel it
  // cleanly, and the loop must keep working afterwards.
  serving = nullptr;
  pcap = nullptr;
  timer.afterDelay(10 * kj::MILLISECONDS).wait(waitScope);
}

TEST_F(PcapOverIpTest, DrainWithNoConsumersResolvesAtOnce) {
  PcapOverIp pcap(timer);
  auto frame = makeFrame(60, 1);
  pcap.writePacket(START_US, frame);
  auto drained = pcap.drain(10 * kj::SECONDS);
  EXPECT_TRUE(drained.poll(waitScope));
  drained.wait(waitScope);
}

}  // namespace
}  // namespace tlstap
