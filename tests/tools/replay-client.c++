// replay-client: plays the front's side of proto/recorder.capnp against a running
// tlstap-recorder, so the integration tests and the benchmark can drive the recorder without TLS
// sessions of their own. With --link-psk (or --link-cert and --link-ca/--link-pin) it speaks the
// front's TLS link to a recorder listening on IP:PORT, as a front on another host would.
//
// Modes (combinable where it makes sense):
//   --flows N --max-bytes M --seed S --manifest FILE
//       N concurrent flows of pseudo-random binary data; writes what was sent (sizes and SHA-256
//       of each direction, addresses, close kind, times) so recorder_check.py can verify the pcap.
//   --http           one extra flow with a real HTTP/1.1 GET and its response, pcap port 80.
//   --violate KIND   one flow that breaks the contract while N good flows are half-way through.
//   --bench --chunk-size C --total-bytes T --flows K
//       pushes T bytes as fast as flow control allows and prints the payload rate.
//
// Size distribution (per direction of each flow, drawn from the seed), chosen so that 200 flows
// at --max-bytes 10 MiB total roughly 200 MiB while most flows stay small:
//   5%  empty;  7%  an edge size (1, MSS-1, MSS, MSS+1 for IPv4 and IPv6, 64 KiB +-1);
//   58% uniform in [0, 16 KiB];  23% log-uniform in [16 KiB, 1 MiB];  7% uniform in [M/4, M].
// Chunks are log-uniform in [1, 64 KiB); 1 to 16 chunks go into one Flow.data call.
// Close kinds: 45% Close.fin; 40% a fin chunk on each side's last chunk, then Close.fin;
// 5% reset by the client; 5% reset by the server; 5% never closed (capability dropped).

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/vector.h>

#include "common/address.h"
#include "common/options.h"
#include "common/tls-link.h"
#include "recorder.capnp.h"
#include "replay-flows.h"

namespace tlstap {
namespace replay {
namespace {

using proto::Direction;

// ---------------------------------------------------------------------------------------------
// Contract-violation probes: one flow that breaks a rule of proto/recorder.capnp. The recorder
// must refuse it (an exception on that flow), log an error, and carry on with every other flow.

const char* const VIOLATIONS[] = {
    "direction", "oversize", "backwards", "after-close", "after-fin", "too-many-chunks",
    "close-backwards", "meta-port", "meta-address", "meta-family", "meta-name"};

struct ProbeStep {
  Direction direction;
  int64_t timeOffsetUs;
  uint32_t size;
  bool fin;
  uint32_t count;  // chunks in the call, each `size` bytes
};

class ViolationProbe {
public:
  ViolationProbe(proto::Recorder::Client recorder, kj::StringPtr kind, uint16_t clientPort)
      : recorder(kj::mv(recorder)), kind(kind), plan(planProbeFlow(clientPort)) {}

  void writeManifest(kj::Vector<kj::String>& out) {
    out.add(manifestEntry(plan, "", "", startUs, 0, startUs));
  }

  // Resolves to the recorder's answer: the first exception, or nullptr if it took everything.
  kj::Promise<kj::Maybe<kj::String>> run() {
    startUs = wallClockUs();
    auto request = recorder.openFlowRequest();
    auto meta = request.initMeta();
    fillMeta(meta, plan, startUs);
    if (kind == "meta-port") meta.getClient().setPort(0);
    if (kind == "meta-address") meta.getClient().setAddress(kj::arrayPtr(plan.client, 5));
    if (kind == "meta-family") meta.getServer().setAddress(kj::arrayPtr(plan.server, 16));
    if (kind == "meta-name") meta.setSni(kj::str(kj::repeat('x', proto::MAX_NAME_BYTES + 1)));
    flow = request.send().getFlow();

    Direction bad = static_cast<Direction>(7);
    auto c2s = Direction::CLIENT_TO_SERVER;
    kj::Promise<void> steps = send({c2s, 10, 100, false, 1});
    if (kind == "direction") steps = then(kj::mv(steps), {bad, 20, 10, false, 1});
    if (kind == "oversize") {
      steps = then(kj::mv(steps), {c2s, 20, proto::MAX_CHUNK_BYTES + 1, false, 1});
    }
    if (kind == "backwards") steps = then(kj::mv(steps), {c2s, 5, 10, false, 1});
    if (kind == "after-fin") {
      steps = then(kj::mv(steps), {c2s, 20, 10, true, 1});
      steps = then(kj::mv(steps), {c2s, 30, 10, false, 1});
    }
    if (kind == "too-many-chunks") {
      steps = then(kj::mv(steps), {c2s, 20, 1, false, proto::MAX_CHUNKS_PER_BATCH + 1});
    }
    if (kind == "after-close") {
      // The first close is valid and must succeed; the data after it is the violation.
      steps = steps.then([this]() { return close(100); }).then([this, c2s]() {
        closedOnce = true;
        return send({c2s, 200, 10, false, 1});
      });
    }
    int64_t closeOffset = kind == "close-backwards" ? 1 : 1000;
    return steps.then([this, closeOffset]() { return close(closeOffset); })
        .then([]() -> kj::Maybe<kj::String> { return nullptr; },
              [this](kj::Exception&& e) -> kj::Maybe<kj::String> {
                if (kind == "after-close" && !closedOnce) {
                  return kj::str("REFUSED THE VALID CLOSE: ", e.getDescription());
                }
                return kj::str(e.getDescription());
              });
  }

private:
  proto::Recorder::Client recorder;
  kj::StringPtr kind;
  FlowPlan plan;
  kj::Maybe<proto::Flow::Client> flow;
  int64_t startUs = 0;
  bool closedOnce = false;

  static FlowPlan planProbeFlow(uint16_t clientPort) {
    FlowPlan plan;
    plan.index = clientPort;
    plan.label = "violation";
    plan.checked = false;
    plan.clientPort = clientPort;
    plan.pcapPort = 40009;
    plan.client[0] = 127;
    plan.client[3] = 66;
    plan.server[0] = 127;
    plan.server[3] = 1;
    return plan;
  }

  kj::Promise<void> then(kj::Promise<void> before, ProbeStep step) {
    return before.then([this, step]() { return send(step); });
  }

  kj::Promise<void> send(ProbeStep step) {
    auto request = KJ_ASSERT_NONNULL(flow).dataRequest();
    auto chunks = request.initChunks(step.count);
    for (auto chunk : chunks) {
      chunk.setDirection(step.direction);
      chunk.setTimeUs(startUs + step.timeOffsetUs);
      chunk.setFin(step.fin);
      memset(chunk.initBytes(step.size).begin(), 'v', step.size);
    }
    return request.send();
  }

  kj::Promise<void> close(int64_t timeOffsetUs) {
    auto request = KJ_ASSERT_NONNULL(flow).closeRequest();
    auto how = request.initHow();
    how.setTimeUs(startUs + timeOffsetUs);
    how.setFin();
    return request.send().ignoreResult();
  }
};

// ---------------------------------------------------------------------------------------------
// Benchmark: K flows push T bytes in fixed-size chunks as fast as flow control lets them.

class BenchFlow {
public:
  BenchFlow(uint32_t index, uint64_t bytes, uint64_t chunkSize, uint32_t chunksPerCall,
            kj::ArrayPtr<const kj::byte> pattern)
      : index(index), left(bytes), chunkSize(chunkSize), chunksPerCall(chunksPerCall),
        pattern(pattern) {}

  kj::Promise<void> run(proto::Recorder::Client& recorder) {
    auto request = recorder.openFlowRequest();
    FlowPlan plan;
    plan.clientPort = 30000 + index;
    plan.pcapPort = 40004;
    plan.client[0] = 127;
    plan.client[3] = 2;
    plan.server[0] = 127;
    plan.server[3] = 1;
    lastUs = wallClockUs();
    fillMeta(request.initMeta(), plan, lastUs);
    flow = request.send().getFlow();
    return sendLoop().then([this]() {
      auto request = flow.closeRequest();
      auto how = request.initHow();
      how.setTimeUs(kj::max(lastUs, wallClockUs()));
      how.setFin();
      return request.send().ignoreResult();
    });
  }

private:
  uint32_t index;
  uint64_t left;
  uint64_t chunkSize;
  uint32_t chunksPerCall;
  kj::ArrayPtr<const kj::byte> pattern;
  proto::Flow::Client flow = nullptr;
  int64_t lastUs = 0;
  uint64_t calls = 0;
  size_t offset = 0;

  kj::Promise<void> sendLoop() {
    if (left == 0) return kj::READY_NOW;
    uint64_t count = kj::min(uint64_t(chunksPerCall), (left + chunkSize - 1) / chunkSize);
    auto request = flow.dataRequest();
    auto chunks = request.initChunks(count);
    // Mostly server-to-client, as in a download; every eighth call goes the other way.
    auto direction = calls++ % 8 == 0 ? Direction::CLIENT_TO_SERVER : Direction::SERVER_TO_CLIENT;
    lastUs = kj::max(lastUs, wallClockUs());
    for (auto chunk : chunks) {
      uint64_t size = kj::min(left, chunkSize);
      chunk.setDirection(direction);
      chunk.setTimeUs(lastUs);
      // Copied into the message like the front copies what it read; the offset moves so that
      // consecutive chunks differ.
      offset = (offset + 4093) % (pattern.size() - chunkSize);
      chunk.setBytes(pattern.slice(offset, offset + size));
      left -= size;
    }
    return request.send().then([this]() { return sendLoop(); });
  }
};

// ---------------------------------------------------------------------------------------------

struct Config {
  kj::String connect;
  uint32_t flows = 0;
  uint64_t maxBytes = 1 << 20;
  uint64_t seed = 1;
  kj::Maybe<kj::String> manifest;
  bool http = false;
  kj::Maybe<kj::StringPtr> violate;
  bool bench = false;
  uint64_t chunkSize = 16384;
  uint64_t totalBytes = uint64_t(1) << 30;
  uint64_t batchBytes = 65536;
  uint16_t portBase = 20000;
  uint64_t sendBuffer = 0;  // 0: the system default
};

double secondsSince(const struct timespec& start) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return double(now.tv_sec - start.tv_sec) + double(now.tv_nsec - start.tv_nsec) / 1e9;
}

int runBench(const Config& config, proto::Recorder::Client& recorder, kj::WaitScope& waitScope) {
  uint32_t flowCount = kj::max(config.flows, 1u);
  auto pattern = kj::heapArray<kj::byte>((1 << 20) + config.chunkSize);
  Rng(config.seed, 0, 0).fill(pattern);
  uint32_t perCall = kj::max(uint64_t(1), kj::min(uint64_t(proto::MAX_CHUNKS_PER_BATCH),
                                                  config.batchBytes / config.chunkSize));
  kj::Vector<kj::Own<BenchFlow>> flows;
  kj::Vector<kj::Promise<void>> done;
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (uint32_t i = 0; i < flowCount; i++) {
    uint64_t share = config.totalBytes / flowCount + (i == 0 ? config.totalBytes % flowCount : 0);
    flows.add(kj::heap<BenchFlow>(i, share, config.chunkSize, perCall, pattern));
    done.add(flows.back()->run(recorder));
  }
  kj::joinPromises(done.releaseAsArray()).wait(waitScope);
  double seconds = secondsSince(start);
  printf("bench: chunk-size=%llu chunks-per-call=%u flows=%u bytes=%llu seconds=%.3f MB/s=%.1f\n",
         (unsigned long long)config.chunkSize, perCall, flowCount,
         (unsigned long long)config.totalBytes, seconds, double(config.totalBytes) / seconds / 1e6);
  return 0;
}

int runReplay(const Config& config, proto::Recorder::Client& recorder, kj::WaitScope& waitScope) {
  kj::Vector<kj::Own<ReplayFlow>> flows;
  Rng planRng(config.seed, 0xffffffffull, 0);
  for (uint32_t i = 0; i < config.flows; i++) {
    flows.add(kj::heap<ReplayFlow>(planRandomFlow(planRng, i, config.maxBytes, config.portBase),
                                   config.seed));
  }
  if (config.http) flows.add(kj::heap<ReplayFlow>(planHttpFlow(), config.seed));

  HalfwayGate gate;
  gate.expected = flows.size();
  auto arrived = kj::newPromiseAndFulfiller<void>();
  gate.allArrived = kj::mv(arrived.fulfiller);
  auto release = kj::newPromiseAndFulfiller<void>();
  gate.release = release.promise.fork();
  kj::Maybe<HalfwayGate&> maybeGate;
  if (config.violate != nullptr) maybeGate = gate;
  if (gate.expected == 0) gate.allArrived->fulfill();

  // KJ runs a then() or catch_() callback only when its result is pulled, and a join pulls only
  // once every branch is done. Callbacks that others wait for (a failed flow leaving the gate,
  // the probe releasing it) are therefore evaluated eagerly.
  kj::Vector<kj::String> failures;
  auto record = [&failures](ReplayFlow& flow) {
    return [&failures, &flow](kj::Exception&& e) {
      auto& plan = flow.getPlan();
      failures.add(kj::str(plan.label, " flow, client port ", plan.clientPort, ": ",
                           e.getDescription()));
      flow.leaveGate();
    };
  };

  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  kj::Vector<kj::Promise<void>> running;
  for (auto& flow : flows) {
    auto promise = flow->run(recorder, maybeGate);
    // The first flow is the barrier: closed only once every other flow is done (see planning).
    if (flow != flows[0]) promise = promise.then([&flow]() { return flow->finish(); });
    running.add(promise.eagerlyEvaluate(record(*flow)));
  }

  kj::Own<ViolationProbe> probe;
  kj::Maybe<kj::String> verdict;
  KJ_IF_MAYBE(kind, config.violate) {
    // The port just below the random flows' range.
    probe = kj::heap<ViolationProbe>(recorder, *kind, config.portBase - 1);
    auto& p = *probe;
    running.add(arrived.promise.then([&p]() { return p.run(); })
                    .then([&](kj::Maybe<kj::String> answer) {
                      verdict = kj::mv(answer);
                      release.fulfiller->fulfill();
                    })
                    .eagerlyEvaluate(nullptr));
  } else {
    release.fulfiller->fulfill();
  }

  auto all = kj::joinPromises(running.releaseAsArray());
  if (flows.size() > 0) {
    auto& barrier = *flows[0];
    all = all.then([&barrier]() { return barrier.finish(); }).catch_(record(barrier));
  }
  all.wait(waitScope);
  double seconds = secondsSince(start);

  uint64_t total = 0;
  for (auto& flow : flows) total += flow->getPlan().size[0] + flow->getPlan().size[1];
  printf("replay: flows=%zu bytes=%llu seconds=%.3f MB/s=%.1f\n", flows.size(),
         (unsigned long long)total, seconds, double(total) / seconds / 1e6);

  KJ_IF_MAYBE(path, config.manifest) {
    kj::Vector<kj::String> entries;
    for (auto& flow : flows) flow->writeManifest(entries);
    if (probe.get() != nullptr) probe->writeManifest(entries);
    auto text = kj::str("{\"seed\": ", config.seed, ", \"flows\": [\n  ",
                        kj::strArray(entries, ",\n  "), "\n]}\n");
    FILE* file = fopen(path->cStr(), "w");
    if (file == nullptr || fwrite(text.begin(), 1, text.size(), file) != text.size() ||
        fclose(file) != 0) {
      fprintf(stderr, "replay-client: cannot write %s: %s\n", path->cStr(), strerror(errno));
      return 1;
    }
  }

  int status = 0;
  for (auto& failure : failures) {
    fprintf(stderr, "replay-client: error: %s\n", failure.cStr());
    status = 1;
  }
  KJ_IF_MAYBE(kind, config.violate) {
    KJ_IF_MAYBE(answer, verdict) {
      printf("violation %s: rejected: %s\n", kind->cStr(), answer->cStr());
      if (answer->startsWith("REFUSED")) status = kj::max(status, 3);
    } else {
      printf("violation %s: accepted\n", kind->cStr());
      status = kj::max(status, 3);
    }
  }
  fflush(stdout);
  return status;
}

}  // namespace
}  // namespace replay
}  // namespace tlstap

int main(int argc, char** argv) {
  using namespace tlstap;
  using namespace tlstap::replay;
  Config config;
  OptionParser parser("replay-client", "--connect ADDR [--flows N ...] [--http] [--bench ...]");
  auto number = [](uint64_t& out, uint64_t min, uint64_t max) {
    return [&out, min, max](kj::StringPtr value) -> kj::Maybe<kj::String> {
      KJ_IF_MAYBE(n, parseUnsigned(value, min, max)) {
        out = *n;
        return nullptr;
      }
      return kj::str("'", value, "' is not a number in [", min, ", ", max, "]");
    };
  };
  uint64_t flows = 0;
  parser.addOption("connect", 'c', "ADDR", "the recorder: unix:/path or IP:PORT",
                   [&](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     config.connect = kj::heapString(value);
                     return nullptr;
                   });
  parser.addOption("flows", 'n', "N", "concurrent flows", number(flows, 0, 10000));
  parser.addOption("max-bytes", 0, "BYTES", "largest size of one direction of a flow",
                   number(config.maxBytes, 0, uint64_t(1) << 34));
  parser.addOption("seed", 0, "S", "seed of sizes, chunking and payloads",
                   number(config.seed, 0, UINT64_MAX >> 1));
  uint64_t portBase = config.portBase;
  parser.addOption("port-base", 0, "PORT", "client port of the first random flow (default 20000)",
                   number(portBase, 20000, 60000));
  parser.addOption("manifest", 0, "FILE", "write what was sent, as JSON",
                   [&](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     config.manifest = kj::heapString(value);
                     return nullptr;
                   });
  parser.addFlag("http", 0, "add one HTTP/1.1 GET flow on pcap port 80",
                 [&]() { config.http = true; });
  parser.addOption("violate", 0, "KIND",
                   "add one flow breaking the contract: direction, oversize, backwards, "
                   "after-close, after-fin, too-many-chunks, close-backwards, meta-port, "
                   "meta-address, meta-family or meta-name",
                   [&](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     for (auto kind : VIOLATIONS) {
                       if (value == kind) {
                         config.violate = kj::StringPtr(kind);
                         return nullptr;
                       }
                     }
                     return kj::str("unknown kind '", value, "'");
                   });
  parser.addFlag("bench", 0, "measure ingest throughput", [&]() { config.bench = true; });
  parser.addOption("chunk-size", 0, "BYTES", "bench: bytes per chunk",
                   number(config.chunkSize, 1, proto::MAX_CHUNK_BYTES));
  parser.addOption("total-bytes", 0, "BYTES", "bench: payload bytes in all",
                   number(config.totalBytes, 1, uint64_t(1) << 40));
  parser.addOption("batch-bytes", 0, "BYTES", "bench: payload bytes per Flow.data call",
                   number(config.batchBytes, 1, uint64_t(1) << 26));
  parser.addOption("sndbuf", 0, "BYTES", "SO_SNDBUF of the connection (capnp sizes its window "
                   "from it)", number(config.sendBuffer, 4096, uint64_t(1) << 28));
  TlsLinkOptions linkOptions;
  addTlsLinkOptions(parser, linkOptions);
  parser.parseOrExit(argc, argv);
  config.flows = flows;
  config.portBase = portBase;
  if (portBase + config.flows > 65535) {
    exitWithUsageError("replay-client", "--port-base: too high for that many --flows");
  }
  if (config.connect.size() == 0) exitWithUsageError("replay-client", "--connect is required");

  SocketAddress address;
  KJ_IF_MAYBE(error, parseListenAddress(config.connect, address)) {
    exitWithUsageError("replay-client", kj::str("--connect: ", *error));
  }

  kj::Maybe<kj::Own<TlsLink>> link;
  if (linkOptions.given()) {
    KJ_IF_MAYBE(error, checkTlsLinkOptions(linkOptions)) {
      exitWithUsageError("replay-client", *error);
    }
    kj::Own<TlsLink> loaded;
    KJ_IF_MAYBE(error, TlsLink::load(linkOptions, TlsLink::Role::CLIENT, loaded)) {
      exitWithUsageError("replay-client", *error);
    }
    link = kj::mv(loaded);
  }

  int status = 1;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    auto io = kj::setupAsyncIo();
    auto stream = io.provider->getNetwork()
                      .getSockaddr(address.get(), address.length)
                      ->connect()
                      .wait(io.waitScope);
    if (config.sendBuffer > 0) {
      int size = int(config.sendBuffer);
      stream->setsockopt(SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    }
    KJ_IF_MAYBE(tls, link) {
      // The host part of IP:PORT is what a --link-ca certificate must name, as for a front.
      kj::String host, port;
      KJ_IF_MAYBE(error, splitHostPort(config.connect, host, port)) {
        KJ_FAIL_REQUIRE("--connect: the TLS link needs IP:PORT", *error);
      }
      stream = (*tls)->wrap(kj::mv(stream), host).wait(io.waitScope);
    }
    capnp::TwoPartyClient client(*stream);
    auto recorder = client.bootstrap().castAs<proto::Recorder>();
    status = config.bench ? runBench(config, recorder, io.waitScope)
                          : runReplay(config, recorder, io.waitScope);
  })) {
    fprintf(stderr, "replay-client: error: %s\n", e->getDescription().cStr());
    return 1;
  }
  return status;
}
