#include "recorder/pcap-over-ip.h"

#include <string.h>
#include <sys/socket.h>
#include <deque>
#include <kj/debug.h>

#include "common/address.h"
#include "common/log.h"

namespace tlstap {

namespace {

// Classic pcap, written in host byte order as libpcap itself writes files: a reader tells the
// byte order from the magic number.
constexpr uint32_t PCAP_MAGIC_MICROSECONDS = 0xa1b2c3d4;
constexpr uint32_t SNAPLEN = 65535;
constexpr uint32_t LINKTYPE_ETHERNET = 1;

struct PcapGlobalHeader {
  uint32_t magic = PCAP_MAGIC_MICROSECONDS;
  uint16_t versionMajor = 2;
  uint16_t versionMinor = 4;
  int32_t thisZone = 0;
  uint32_t sigFigs = 0;
  uint32_t snapLen = SNAPLEN;
  uint32_t linkType = LINKTYPE_ETHERNET;
};
static_assert(sizeof(PcapGlobalHeader) == 24, "pcap global header is 24 bytes");

struct PcapRecordHeader {
  uint32_t seconds;
  uint32_t microseconds;
  uint32_t capturedLength;
  uint32_t originalLength;
};
static_assert(sizeof(PcapRecordHeader) == 16, "pcap record header is 16 bytes");

template <typename T>
kj::ArrayPtr<const kj::byte> bytesOf(const T& value) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(&value), sizeof(value));
}

// A FIFO of bytes kept in large fixed-size blocks: appending a packet is a memcpy (plus an
// allocation every BLOCK_SIZE bytes, usually avoided by reusing a spare), and the writer sends
// many blocks with one writev. Bytes handed out by gather() stay in place until consume(), so a
// write in flight is never disturbed by appends.
class BlockQueue {
public:
  static constexpr size_t BLOCK_SIZE = 256u << 10;

  size_t size() const { return total; }

  void append(kj::ArrayPtr<const kj::byte> bytes) {
    while (bytes.size() > 0) {
      if (blocks.empty() || tailFill == BLOCK_SIZE) {
        blocks.push_back(newBlock());
        tailFill = 0;
      }
      size_t n = kj::min(bytes.size(), BLOCK_SIZE - tailFill);
      memcpy(blocks.back().begin() + tailFill, bytes.begin(), n);
      tailFill += n;
      total += n;
      bytes = bytes.slice(n, bytes.size());
    }
  }

  // Points `pieces` at the oldest queued bytes; returns how many pieces were filled.
  size_t gather(kj::ArrayPtr<kj::ArrayPtr<const kj::byte>> pieces) const {
    size_t count = 0;
    for (size_t i = 0; i < blocks.size() && count < pieces.size(); i++) {
      size_t begin = i == 0 ? headOffset : 0;
      size_t end = i + 1 == blocks.size() ? tailFill : BLOCK_SIZE;
      if (end > begin) pieces[count++] = blocks[i].slice(begin, end);
    }
    return count;
  }

  // Drops the oldest n bytes. Only called when no write is in flight.
  void consume(size_t n) {
    KJ_REQUIRE(n <= total);
    total -= n;
    while (n > 0) {
      size_t end = blocks.size() == 1 ? tailFill : BLOCK_SIZE;
      size_t available = end - headOffset;
      if (n < available) {
        headOffset += n;
        return;
      }
      n -= available;
      if (blocks.size() == 1) break;
      spare = kj::mv(blocks.front());
      blocks.pop_front();
      headOffset = 0;
    }
    if (total == 0 && blocks.size() == 1) headOffset = tailFill = 0;
  }

private:
  std::deque<kj::Array<kj::byte>> blocks;
  size_t headOffset = 0;  // first unsent byte in blocks.front()
  size_t tailFill = 0;    // bytes used in blocks.back()
  size_t total = 0;
  kj::Array<kj::byte> spare;

  kj::Array<kj::byte> newBlock() {
    if (spare.size() > 0) return kj::mv(spare);
    return kj::heapArray<kj::byte>(BLOCK_SIZE);
  }
};

kj::String peerName(kj::AsyncIoStream& stream) {
  struct sockaddr_storage storage;
  kj::uint length = sizeof(storage);
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    stream.getpeername(reinterpret_cast<struct sockaddr*>(&storage), &length);
  })) {
    return kj::str("(unknown peer)");
  }
  return SocketAddress::fromSockaddr(reinterpret_cast<struct sockaddr*>(&storage), length)
      .toString();
}

}  // namespace

// One connected consumer: its socket, its queue, and the loops that write the queue out and read
// (and discard) whatever the consumer sends. Owned by PcapOverIp::tasks, attached to the promise
// returned by run(), so that promise (and any write in flight) is destroyed before the queue and
// the socket it refers to.
class PcapOverIp::Consumer {
public:
  Consumer(PcapOverIp& owner, kj::Own<kj::AsyncIoStream> stream, kj::String name, bool accepted)
      : owner(owner), stream(kj::mv(stream)), name(kj::mv(name)), accepted(accepted) {
    queue.append(bytesOf(PcapGlobalHeader()));
    owner.active.add(this);
    if (accepted) ++owner.acceptedCount;
  }

  ~Consumer() noexcept(false) {
    owner.deactivate(*this);
    if (accepted) --owner.acceptedCount;
    // Whoever waits for this consumer to drain or end must not wait forever.
    for (auto& waiter : drainWaiters) waiter->fulfill();
    KJ_IF_MAYBE(fulfiller, endFulfiller) (*fulfiller)->fulfill();
  }
  KJ_DISALLOW_COPY(Consumer);

  kj::StringPtr getName() const { return name; }
  size_t queued() const { return queue.size(); }

  // Ends when the consumer closes, fails or is cut off.
  kj::Promise<void> run() {
    auto cut = kj::newPromiseAndFulfiller<void>();
    cutOffFulfiller = kj::mv(cut.fulfiller);
    auto writing = writeLoop().catch_([this](kj::Exception&& e) {
      end(kj::str("write failed: ", e.getDescription()));
    });
    auto reading = readLoop().then([this]() { end(kj::str("closed the connection")); },
                                   [this](kj::Exception&& e) {
                                     end(kj::str("read failed: ", e.getDescription()));
                                   });
    return writing.exclusiveJoin(kj::mv(reading)).exclusiveJoin(kj::mv(cut.promise));
  }

  void append(kj::ArrayPtr<const kj::byte> header, kj::ArrayPtr<const kj::byte> frame) {
    queue.append(header);
    queue.append(frame);
    KJ_IF_MAYBE(wakeup, writerWakeup) {
      (*wakeup)->fulfill();
      writerWakeup = nullptr;
    }
  }

  // Called from writePacket(): must not throw and must not touch the socket, so the actual
  // close happens when the event loop runs run()'s promise to completion.
  void cutOff() {
    logWarning("pcap-over-ip: consumer ", name, " is too slow: ", queue.size(),
               " bytes queued, limit ", owner.bufferLimit, "; disconnected");
    owner.dropped++;
    owner.deactivate(*this);
    cutOffFulfiller->fulfill();
  }

  kj::Promise<void> whenDrained() {
    if (queue.size() == 0) return kj::READY_NOW;
    auto paf = kj::newPromiseAndFulfiller<void>();
    drainWaiters.add(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }

  kj::Promise<void> whenEnded() {
    auto paf = kj::newPromiseAndFulfiller<void>();
    endFulfiller = kj::mv(paf.fulfiller);
    return kj::mv(paf.promise);
  }

private:
  // Enough pieces for a whole 16 MiB of queue in one writev, well under IOV_MAX.
  static constexpr size_t MAX_PIECES = 64;

  PcapOverIp& owner;
  kj::Own<kj::AsyncIoStream> stream;
  kj::String name;
  bool accepted;
  BlockQueue queue;
  // What the write in flight refers to; left alone until it completes.
  kj::ArrayPtr<const kj::byte> pieces[MAX_PIECES];
  kj::byte readBuffer[4096];
  kj::Own<kj::PromiseFulfiller<void>> cutOffFulfiller;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> writerWakeup;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> drainWaiters;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> endFulfiller;

  kj::Promise<void> writeLoop() {
    if (queue.size() == 0) {
      for (auto& waiter : drainWaiters) waiter->fulfill();
      drainWaiters.clear();
      auto paf = kj::newPromiseAndFulfiller<void>();
      writerWakeup = kj::mv(paf.fulfiller);
      return paf.promise.then([this]() { return writeLoop(); });
    }
    size_t count = queue.gather(kj::arrayPtr(pieces, MAX_PIECES));
    size_t bytes = 0;
    for (size_t i = 0; i < count; i++) bytes += pieces[i].size();
    return stream->write(kj::arrayPtr(pieces, count)).then([this, bytes]() {
      queue.consume(bytes);
      return writeLoop();
    });
  }

  // Consumers have nothing to say to us; reading keeps a chatty or hostile one from filling our
  // receive buffer, and is how we notice that it went away.
  kj::Promise<void> readLoop() {
    return stream->tryRead(readBuffer, 1, sizeof(readBuffer))
        .then([this](size_t n) -> kj::Promise<void> {
          if (n == 0) return kj::READY_NOW;
          return readLoop();
        });
  }

  void end(kj::String why) {
    logInfo("pcap-over-ip: consumer ", name, " removed: ", why);
    owner.deactivate(*this);
  }
};

struct PcapOverIp::ConnectTarget {
  kj::Own<kj::NetworkAddress> address;
  kj::String hostPort;
  kj::Duration initialBackoff;
  kj::Duration maxBackoff;
  kj::Duration nextBackoff;
};

PcapOverIp::PcapOverIp(kj::Timer& timer, size_t consumerBufferLimit)
    : timer(timer), bufferLimit(consumerBufferLimit), initialBackoff(1 * kj::SECONDS),
      maxBackoff(30 * kj::SECONDS), tasks(*this) {}

PcapOverIp::~PcapOverIp() noexcept(false) {}

void PcapOverIp::setReconnectBackoff(kj::Duration initial, kj::Duration max) {
  initialBackoff = initial;
  maxBackoff = kj::max(initial, max);
}

size_t PcapOverIp::consumerCount() const { return active.size(); }

void PcapOverIp::writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) {
  if (active.empty()) return;

  if (timeUs < 0) timeUs = 0;
  uint32_t captured = kj::min(frame.size(), size_t(SNAPLEN));
  PcapRecordHeader header;
  header.seconds = uint32_t(timeUs / 1000000);
  header.microseconds = uint32_t(timeUs % 1000000);
  header.capturedLength = captured;
  header.originalLength = uint32_t(kj::min(frame.size(), size_t(UINT32_MAX)));
  auto data = frame.slice(0, captured);
  size_t recordSize = sizeof(header) + captured;

  for (size_t i = 0; i < active.size();) {
    Consumer& consumer = *active[i];
    if (consumer.queued() + recordSize > bufferLimit) {
      // Removes active[i]; the next consumer moves into its place.
      consumer.cutOff();
      continue;
    }
    consumer.append(bytesOf(header), data);
    ++i;
  }
}

void PcapOverIp::deactivate(Consumer& consumer) {
  for (size_t i = 0; i < active.size(); i++) {
    if (active[i] == &consumer) {
      active[i] = active.back();
      active.removeLast();
      return;
    }
  }
}

kj::Promise<void> PcapOverIp::addConsumer(kj::Own<kj::AsyncIoStream> stream, kj::String name,
                                          bool accepted) {
  logInfo("pcap-over-ip: consumer ", name, " connected");
  auto consumer = kj::heap<Consumer>(*this, kj::mv(stream), kj::mv(name), accepted);
  auto ended = consumer->whenEnded();
  auto running = consumer->run();
  tasks.add(running.attach(kj::mv(consumer)));
  return ended;
}

kj::Promise<void> PcapOverIp::acceptFrom(kj::Own<kj::ConnectionReceiver> listener) {
  auto loop = acceptLoop(*listener);
  return loop.attach(kj::mv(listener));
}

kj::Promise<void> PcapOverIp::acceptLoop(kj::ConnectionReceiver& listener) {
  return listener.accept()
      .then(
          [this](kj::Own<kj::AsyncIoStream> stream) -> kj::Promise<void> {
            auto name = peerName(*stream);
            if (acceptedCount >= MAX_ACCEPTED_CONSUMERS) {
              logWarning("pcap-over-ip: refused consumer ", name, ": already serving ",
                         acceptedCount, " consumers");
              return kj::READY_NOW;
            }
            // Only the consumer's lifetime matters here, not when it ends.
            addConsumer(kj::mv(stream), kj::mv(name), true);
            return kj::READY_NOW;
          },
          [this](kj::Exception&& e) -> kj::Promise<void> {
            // E.g. out of file descriptors: pause rather than spin, and keep the listener.
            logWarning("pcap-over-ip: accept failed: ", e.getDescription(), "; retrying in 1 s");
            return timer.afterDelay(1 * kj::SECONDS);
          })
      .then([this, &listener]() { return acceptLoop(listener); });
}

kj::Promise<void> PcapOverIp::connectTo(kj::Own<kj::NetworkAddress> address, kj::String name) {
  auto target = kj::heap<ConnectTarget>(
      ConnectTarget{kj::mv(address), kj::mv(name), initialBackoff, maxBackoff, initialBackoff});
  auto loop = connectLoop(*target);
  return loop.attach(kj::mv(target));
}

kj::Promise<void> PcapOverIp::connectLoop(ConnectTarget& target) {
  return target.address->connect()
      .then(
          [this, &target](kj::Own<kj::AsyncIoStream> stream) -> kj::Promise<void> {
            auto connectedAt = timer.now();
            auto ended = addConsumer(kj::mv(stream), kj::str(target.hostPort), false);
            return ended.then([this, &target, connectedAt]() {
              // A connection that held for a while starts the backoff over; one that a consumer
              // closes right away keeps doubling it, so it cannot make us reconnect in a loop.
              if (timer.now() - connectedAt >= target.maxBackoff) {
                target.nextBackoff = target.initialBackoff;
              }
              return retryLater(target);
            });
          },
          [this, &target](kj::Exception&& e) -> kj::Promise<void> {
            logWarning("pcap-over-ip: cannot connect to ", target.hostPort, ": ",
                       e.getDescription(), "; retrying in ", target.nextBackoff);
            return retryLater(target);
          })
      .then([this, &target]() { return connectLoop(target); });
}

kj::Promise<void> PcapOverIp::retryLater(ConnectTarget& target) {
  auto delay = target.nextBackoff;
  target.nextBackoff = kj::min(delay * 2, target.maxBackoff);
  return timer.afterDelay(delay);
}

kj::Promise<void> PcapOverIp::drain(kj::Duration timeout) {
  if (active.empty()) return kj::READY_NOW;
  auto waits = kj::heapArrayBuilder<kj::Promise<void>>(active.size());
  for (auto consumer : active) waits.add(consumer->whenDrained());
  auto timedOut = timer.afterDelay(timeout).then([this, timeout]() {
    size_t left = 0;
    for (auto consumer : active) left += consumer->queued();
    logWarning("pcap-over-ip: gave up draining after ", timeout, ": ", left,
               " bytes still queued for ", active.size(), " consumers");
  });
  return kj::joinPromises(waits.finish()).exclusiveJoin(kj::mv(timedOut));
}

void PcapOverIp::taskFailed(kj::Exception&& exception) {
  // Consumers catch their own errors; reaching this is a bug, but not one worth dying for.
  logError("pcap-over-ip: consumer task failed: ", exception.getDescription());
}

}  // namespace tlstap
