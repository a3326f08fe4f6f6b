// libFuzzer target: the recorder's side of the flow contract (recorder/flow-contract.h) driven by
// the Cap'n Proto messages a hostile front could send, in any order.
//
// Input: a sequence of records, each `op` (1 byte), `length` (2 bytes, little endian) and
// `length` bytes read as one single-segment Cap'n Proto message (the last record takes whatever
// is left). op % 3: 0 = openFlow, root proto::FlowMeta (a valid one replaces the current flow);
// 1 = Flow.data, root proto::Flow::DataParams; 2 = Flow.close, root proto::Close. A data or close
// before any valid openFlow goes to a flow with fixed IPv4 endpoints.
//
// A malformed message (a pointer out of bounds, the traversal limit) makes capnp throw while the
// contract reads a field; the RPC layer turns that into an error for the caller and the flow goes
// on, so the fuzzer catches exceptions raised by capnp and continues with the same flow. Any
// other exception, from the contract or the TCP synthesizer, is a bug and aborts.
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <capnp/message.h>
#include <kj/debug.h>
#include <kj/exception.h>

#include "recorder.capnp.h"
#include "recorder/flow-contract.h"

namespace {

// Discards every frame, after reading all of it (so ASan sees any frame the synthesizer built
// out of bounds) and checking it is a sane Ethernet frame.
class NullSink final : public tlstap::PacketSink {
public:
  void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) override {
    if (frame.size() < 14 + 20 + 20 || frame.size() > sizeof(scratch)) abort();
    if (timeUs < 0) abort();
    memcpy(scratch, frame.begin(), frame.size());
  }

private:
  kj::byte scratch[65536];
};

// Where an exception came from: capnp's own sources (malformed message) or ours (a bug).
bool fromCapnp(const kj::Exception& e) {
  return strstr(e.getFile(), "capnp/") != nullptr;
}

capnp::ReaderOptions readerOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 64 * 1024;
  options.nestingLimit = 16;
  return options;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  NullSink sink;
  tlstap::FlowEndpoints defaults;
  defaults.clientIp[0] = 10;
  defaults.clientIp[3] = 1;
  defaults.serverIp[0] = 10;
  defaults.serverIp[3] = 2;
  defaults.clientPort = 40000;
  defaults.serverPort = 80;
  kj::Own<tlstap::FlowContract> contract;

  size_t pos = 0;
  while (pos < size) {
    uint8_t op = data[pos++] % 3;
    size_t length = size - pos;
    if (length >= 2) {
      length = kj::min(size_t(data[pos] | (data[pos + 1] << 8)), length - 2);
      pos += 2;
    }
    // capnp reads words: copy into an aligned, zero-padded buffer of exactly the words needed.
    auto words = kj::heapArray<capnp::word>((length + 7) / 8);
    memset(words.begin(), 0, words.size() * sizeof(capnp::word));
    memcpy(words.begin(), data + pos, length);
    pos += length;
    if (words.size() == 0) continue;

    kj::ArrayPtr<const capnp::word> segments[1] = {words.asPtr()};
    try {
      capnp::SegmentArrayMessageReader message(segments, readerOptions());
      if (op == 0) {
        auto meta = message.getRoot<tlstap::proto::FlowMeta>();
        tlstap::FlowEndpoints endpoints;
        kj::Maybe<tlstap::FlowResume> resume;
        if (tlstap::checkFlowMeta(meta, endpoints, resume) == nullptr) {
          (void)tlstap::describeEndpoints(endpoints);
          contract = kj::heap<tlstap::FlowContract>(endpoints, meta.getStartTimeUs(), sink,
                                                    resume);
        }
        continue;
      }
      if (contract.get() == nullptr) {
        // 2026-01-01 00:00:00 UTC
        contract = kj::heap<tlstap::FlowContract>(defaults, 1767225600LL * 1000000, sink);
      }
      uint64_t before = contract->payloadBytes();
      bool endedBefore = contract->ended();
      kj::Maybe<kj::String> violation;
      if (op == 1) {
        violation = contract->data(message.getRoot<tlstap::proto::Flow::DataParams>().getChunks());
      } else {
        violation = contract->close(message.getRoot<tlstap::proto::Close>());
      }
      // An ended flow takes nothing more, and records nothing more.
      if (endedBefore && (violation == nullptr || contract->payloadBytes() != before)) abort();
      KJ_IF_MAYBE(reason, violation) {
        if (reason->size() == 0 || !contract->ended()) abort();
      }
    } catch (const kj::Exception& e) {
      if (!fromCapnp(e)) {
        fprintf(stderr, "exception from the contract, not from capnp: %s\n",
                kj::str(e).cStr());
        abort();
      }
    }
  }
  return 0;
}
