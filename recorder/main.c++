// tlstap-recorder: receives decrypted flows from tlstap-front over Cap'n Proto RPC and writes
// them as TCP/IP packets into pcap files and to PCAP-over-IP consumers. It never sees a key.
// Start-up order: options, sockets, outputs, privilege drop, first hourly file, lock-down.
#include <fcntl.h>
#include <signal.h>
#include <sys/un.h>
#include <unistd.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include "common/listen-socket.h"
#include "common/log.h"
#include "common/startup-signals.h"
#include "common/stats.h"
#include "common/supervisor-protocol.h"
#include "recorder/link-server.h"
#include "recorder/pcap-over-ip.h"
#include "recorder/pcap-writer.h"
#include "recorder/recorder-identity.h"
#include "recorder/recorder-options.h"
#include "recorder/supervisor.h"
#include "sandbox/lock-down.h"

namespace tlstap {
namespace {

constexpr const char* PROGRAM = "tlstap-recorder";
// At shutdown, how long connected fronts get to deliver and close what they still send.
constexpr auto FRONT_GRACE = 5 * kj::SECONDS;
// At shutdown, how long PCAP-over-IP consumers get to take what is queued for them.
constexpr auto CONSUMER_GRACE = 2 * kj::SECONDS;

class TaskErrorLogger final : public kj::TaskSet::ErrorHandler {
public:
  void taskFailed(kj::Exception&& exception) override {
    logError(exception.getDescription());
  }
};

// The outputs chosen on the command line, behind one PacketSink.
struct Outputs {
  kj::Maybe<kj::Own<PcapWriter>> file;  // -o DIR or -w FILE
  int outputDirFd = -1;                   // -o DIR, open: where the sandbox lets files be made
  kj::Maybe<kj::Own<PcapOverIp>> pcapOverIp;
  FanOutSink fanOut;

  void flush() {
    KJ_IF_MAYBE(writer, file) (*writer)->flush();
  }
  void tick() {
    KJ_IF_MAYBE(writer, file) (*writer)->tick();
  }
  void close() {
    KJ_IF_MAYBE(writer, file) (*writer)->close();
  }
};

// The counters line (common/stats.h).
void logCounters(const FlowCounters& counters, const Outputs& outputs) {
  PcapWriterCounters files;
  KJ_IF_MAYBE(writer, outputs.file) files = (*writer)->counters();
  uint64_t consumers = 0, dropped = 0;
  KJ_IF_MAYBE(hub, outputs.pcapOverIp) {
    consumers = (*hub)->consumerCount();
    dropped = (*hub)->droppedCount();
  }
  StatsField fields[] = {
      {"flows_open", counters.flowsOpen},
      {"flows_total", counters.flowsTotal},
      {"flows_broken", counters.flowsBroken},
      {"payload_bytes_closed_flows", counters.payloadBytes},
      // Not "bytes_recorded" or "bytes_lost": the front's line has those for payload bytes, and
      // these count file and frame bytes, headers included.
      {"file_bytes_written", files.bytesWritten},
      {"packets_written", files.packetsWritten},
      {"packets_lost", files.packetsLost},
      {"frame_bytes_lost", files.bytesLost},
      {"pcapoverip_consumers", consumers},
      {"pcapoverip_dropped", dropped},
      {"files_written", files.filesWritten},
      {"files_deleted", files.filesDeleted},
  };
  logInfo(formatStats(fields));
}

kj::AutoCloseFd bindOrExit(kj::StringPtr option, const SocketAddress& address) {
  kj::AutoCloseFd fd;
  KJ_IF_MAYBE(error, openListenSocket(address, fd)) {
    exitWithUsageError(PROGRAM, kj::str(option, ": ", address.toString(), ": ", *error));
  }
  return fd;
}

kj::Own<kj::ConnectionReceiver> wrapListener(kj::AsyncIoContext& io, kj::AutoCloseFd fd) {
  return io.lowLevelProvider->wrapListenSocketFd(
      kj::mv(fd), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
}

// Before the privilege drop: opens -o DIR (creating it, then giving it to the recorder's user)
// and creates -w FILE (then gives it to that user); their parents may be closed to that user.
// Returns the first output that cannot be opened, as "-o: cause", or nullptr.
kj::Maybe<kj::String> openFileOutputs(const RecorderOptions& options,
                                      const RecorderIdentity& identity, Clock& clock,
                                      Outputs& outputs, kj::AutoCloseFd& outputDir) {
  KJ_IF_MAYBE(dir, options.outputDir) {
    bool created = false;
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      outputDir = RotatingPcapWriter::openDirectory(*dir, created);
    })) {
      return kj::str("-o: ", exception->getDescription());
    }
    if (created) {
      KJ_IF_MAYBE(error, giveToRecorderUser(outputDir, "", identity)) {
        return kj::str("-o: ", *dir, ": ", *error);
      }
    }
  }
  KJ_IF_MAYBE(given, options.writeFile) {
    // A recorder started again after one died never touches its predecessor's file, which
    // holds what was recorded before (and may end in a torn record).
    auto path = options.restarted ? restartedWriteFile(*given) : kj::str(*given);
    if (options.restarted) logInfo("-w ", *given, ": started again; writing ", path);
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      auto writer = kj::heap<SinglePcapWriter>(path, clock);
      outputs.fanOut.add(*writer);
      outputs.file = kj::mv(writer);
    })) {
      return kj::str("-w: ", exception->getDescription());
    }
    KJ_IF_MAYBE(error, giveToRecorderUser(AT_FDCWD, path, identity)) {
      return kj::str("-w: ", *error);
    }
  }
  return nullptr;
}

// After the privilege drop: the first hourly file is created as the user that creates the
// later ones, so a directory that user cannot write is found now, not at the next hour.
kj::Maybe<kj::String> startRotatingOutput(const RecorderOptions& options,
                                          const RecorderIdentity& identity, Clock& clock,
                                          kj::AutoCloseFd outputDir, Outputs& outputs) {
  KJ_IF_MAYBE(dir, options.outputDir) {
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      RetentionPolicy retention{options.retainHours, options.maxBytes};
      auto writer = kj::heap<RotatingPcapWriter>(kj::mv(outputDir), *dir, clock, retention);
      outputs.fanOut.add(*writer);
      outputs.outputDirFd = writer->directoryFd();
      outputs.file = kj::mv(writer);
    })) {
      KJ_IF_MAYBE(user, identity.runAs) {
        return kj::str("-o: ", exception->getDescription(), " (as user ", user->name,
                       ", who must be able to write there)");
      }
      return kj::str("-o: ", exception->getDescription());
    }
  }
  return nullptr;
}

void removeUnixSockets(const RecorderOptions& options) {
  for (auto& address : options.listen) {
    if (address.family() == AF_UNIX) {
      unlink(reinterpret_cast<const sockaddr_un*>(&address.storage)->sun_path);
    }
  }
}

kj::Promise<void> flushPeriodically(kj::Timer& timer, Outputs& outputs, uint32_t seconds) {
  return timer.afterDelay(seconds * kj::SECONDS).then([&timer, &outputs, seconds]() {
    outputs.flush();
    return flushPeriodically(timer, outputs, seconds);
  });
}

// Every second: rotation on the hour, the retry after a write error, retention.
kj::Promise<void> tickEverySecond(kj::Timer& timer, Outputs& outputs) {
  return timer.afterDelay(1 * kj::SECONDS).then([&timer, &outputs]() {
    outputs.tick();
    return tickEverySecond(timer, outputs);
  });
}

kj::Promise<void> reportOnSignal(kj::UnixEventPort& port, kj::Function<void()>& report) {
  return port.onSignal(SIGUSR1).then([&port, &report](siginfo_t) {
    report();
    return reportOnSignal(port, report);
  });
}

int run(int argc, char** argv) {
  setLogProgram(PROGRAM);
  RecorderOptions options;
  OptionParser parser(PROGRAM, "--listen ADDR [-o DIR | -w FILE] [--pcapoverip [IP:]PORT] ...");
  addRecorderOptions(parser, options);
  parser.parseOrExit(argc, argv);
  KJ_IF_MAYBE(error, checkRecorderOptions(options)) exitWithUsageError(PROGRAM, *error);
  setLogVerbose(options.verbose);

  // Keys and certificates are read before anything is bound or created: a bad one exits 2 with
  // nothing started.
  kj::Maybe<kj::Own<TlsLink>> tlsLink;
  if (options.link.given()) {
    kj::Own<TlsLink> link;
    KJ_IF_MAYBE(error, TlsLink::load(options.link, TlsLink::Role::SERVER, link)) {
      exitWithUsageError(PROGRAM, *error);
    }
    options.link.wipeSecrets();
    tlsLink = kj::mv(link);
  }

  // A consumer or front that goes away mid-write must give EPIPE, not kill the process.
  signal(SIGPIPE, SIG_IGN);
  // A file size limit (ulimit -f) must fail the write with EFBIG, which the writer handles like a
  // full disk, rather than kill the process.
  signal(SIGXFSZ, SIG_IGN);
  // KJ reserves SIGUSR1 for waking its loop from other threads (the recorder has none); SIGUSR1
  // asks for the counters line, as for tlstap-front.
  kj::UnixEventPort::setReservedSignal(SIGRTMIN);
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureSignal(SIGUSR1);
  auto io = kj::setupAsyncIo();
  auto& timer = io.provider->getTimer();
  TaskErrorLogger errorLogger;

  // Users are looked up now, while NSS may still read /etc/passwd.
  RecorderIdentity identity;
  KJ_IF_MAYBE(error, chooseRecorderIdentity(options, identity)) {
    exitWithUsageError(PROGRAM, *error);
  }

  // Bind every socket before creating any file: a port in use must leave nothing behind.
  kj::Vector<kj::AutoCloseFd> pcapOverIpSockets, listenSockets;
  for (auto& address : options.pcapOverIp) {
    pcapOverIpSockets.add(bindOrExit("--pcapoverip", address));
  }
  for (auto& address : options.listen) {
    listenSockets.add(bindOrExit("--listen", address));
    if (address.family() == AF_UNIX) {
      auto path = reinterpret_cast<const sockaddr_un*>(&address.storage)->sun_path;
      KJ_IF_MAYBE(error, secureUnixSocket(path, identity)) {
        removeUnixSockets(options);
        exitWithUsageError(PROGRAM, kj::str("--listen: ", *error));
      }
    }
  }

  SystemClock clock;
  Outputs outputs;
  kj::AutoCloseFd outputDir;
  KJ_IF_MAYBE(error, openFileOutputs(options, identity, clock, outputs, outputDir)) {
    removeUnixSockets(options);
    exitWithUsageError(PROGRAM, *error);
  }
  // --pcapoveripconnect names are resolved now: after lock-down the resolver cannot run.
  kj::Vector<kj::Own<kj::NetworkAddress>> pcapOverIpTargets;
  for (auto& target : options.pcapOverIpConnect) {
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      pcapOverIpTargets.add(io.provider->getNetwork().parseAddress(target).wait(io.waitScope));
    })) {
      removeUnixSockets(options);
      exitWithUsageError(PROGRAM, kj::str("--pcapoveripconnect: cannot resolve '", target, "': ",
                                          exception->getDescription()));
    }
  }
  // Everything that needs root is done: drop to the recorder's user for good.
  KJ_IF_MAYBE(user, identity.runAs) {
    KJ_IF_MAYBE(error, dropPrivileges(*user)) {
      exitWithUsageError(PROGRAM, kj::str("--user: ", *error));
    }
    logInfo("running as user ", user->name, " (uid ", user->uid, ")");
  }
  KJ_IF_MAYBE(error, startRotatingOutput(options, identity, clock, kj::mv(outputDir), outputs)) {
    removeUnixSockets(options);
    exitWithUsageError(PROGRAM, *error);
  }
  kj::TaskSet consumerTasks(errorLogger);
  if (options.pcapOverIp.size() > 0 || options.pcapOverIpConnect.size() > 0) {
    auto hub = kj::heap<PcapOverIp>(timer);
    for (auto i : kj::indices(options.pcapOverIp)) {
      consumerTasks.add(hub->acceptFrom(wrapListener(io, kj::mv(pcapOverIpSockets[i]))));
      logInfo("serving PCAP-over-IP on ", options.pcapOverIp[i].toString());
    }
    for (auto i : kj::indices(options.pcapOverIpConnect)) {
      consumerTasks.add(hub->connectTo(kj::mv(pcapOverIpTargets[i]),
                                       kj::heapString(options.pcapOverIpConnect[i])));
    }
    outputs.fanOut.add(*hub);
    outputs.pcapOverIp = kj::mv(hub);
  }

  FlowCounters counters;
  LinkServer links(outputs.fanOut, counters);
  links.allowPeers(kj::heapArray(identity.allowedPeers.asPtr()));
  links.setLinkTimeout(options.linkTimeoutSeconds * kj::SECONDS);
  auto listenTasks = kj::heap<kj::TaskSet>(errorLogger);
  for (auto i : kj::indices(options.listen)) {
    auto name = options.listen[i].toString();
    kj::Maybe<LinkServer::Tls> tls;
    KJ_IF_MAYBE(link, tlsLink) {
      // Unix sockets stay plain: the kernel says who is connecting, and only the recorder's user
      // may connect.
      if (options.listen[i].family() != AF_UNIX) tls = LinkServer::Tls{**link, timer};
    }
    if (tls != nullptr) {
      logInfo("listening on ", name, " (TLS, ", KJ_ASSERT_NONNULL(tlsLink)->describe(), ")");
    } else if (options.listen[i].family() != AF_UNIX) {
      logInfo("listening on ", name, " (plain TCP: loopback only, no TLS options given)");
    } else {
      logInfo("listening on ", name);
    }
    listenTasks->add(links.acceptFrom(wrapListener(io, kj::mv(listenSockets[i])), kj::mv(name),
                                      tls));
  }

  auto stop = io.unixEventPort.onSignal(SIGTERM)
                  .exclusiveJoin(io.unixEventPort.onSignal(SIGINT))
                  .then([](siginfo_t info) {
                    logInfo("signal ", info.si_signo, ": finishing what is queued");
                  });
  kj::Maybe<kj::ForkedPromise<void>> embeddedLink;
  KJ_IF_MAYBE(fd, options.connectionFd) {
    auto stream = io.lowLevelProvider->wrapSocketFd(
        *fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    // The embedded recorder lives as long as its front's link. Forked so that a signal ending
    // the wait below does not cancel the link: the front still drains into it.
    auto link = links.serve(kj::mv(stream), kj::str("fd ", *fd)).fork();
    stop = stop.exclusiveJoin(link.addBranch());
    embeddedLink = kj::mv(link);
  }

  // Lock-down (DESIGN.md "Security model"): from here on files only in the output directory.
  RecorderPolicyOptions policy;
  if (outputs.outputDirFd >= 0) policy.outputDirFd = outputs.outputDirFd;
  forgetEnvPasswords();  // the link credentials are loaded
  KJ_IF_MAYBE(error, lockDownRecorder(policy)) {
    exitWithUsageError(PROGRAM, kj::str("sandbox: ", *error));
  }

  kj::Function<void()> report = [&counters, &outputs]() { logCounters(counters, outputs); };
  auto reporting = reportOnSignal(io.unixEventPort, report)
                       .exclusiveJoin(reportPeriodically(timer, options.statsIntervalSeconds,
                                                         report))
                       .eagerlyEvaluate(nullptr);
  // Runs through the shutdown below too: a full disk may free up while fronts drain.
  auto ticking = tickEverySecond(timer, outputs).eagerlyEvaluate(nullptr);
  stop.exclusiveJoin(flushPeriodically(timer, outputs, options.autoflushSeconds))
      .wait(io.waitScope);

  // Orderly shutdown: no new fronts; connected ones get a grace period to deliver and close.
  listenTasks = nullptr;
  removeUnixSockets(options);
  links.whenAllDisconnected()
      .exclusiveJoin(timer.afterDelay(FRONT_GRACE).then([&links]() {
        logWarning(links.connectionCount(), " front(s) still connected; closing anyway");
      }))
      .wait(io.waitScope);
  KJ_IF_MAYBE(hub, outputs.pcapOverIp) (*hub)->drain(CONSUMER_GRACE).wait(io.waitScope);
  outputs.close();
  report();
  logInfo(counters.flowsTotal, " flows recorded (", counters.flowsResumed, " resumed after a lost "
          "link), ", counters.flowsBroken, " refused or ended for breaking the contract");
  return 0;
}

}  // namespace
}  // namespace tlstap

int main(int argc, char** argv) {
  // A stop signal during start-up waits for the event loop (KJ reads it from a signalfd) instead
  // of killing the process; the supervisor reads SIGUSR1 from its own signalfd.
  tlstap::holdStartupSignals();
  // The supervisor mode is chosen by the first argument only, before any option parsing: it
  // passes the rest to each recorder it starts.
  if (argc >= 2 && kj::StringPtr(argv[1]) == tlstap::supervisor::MODE_OPTION) {
    return tlstap::runSupervisor(argc, argv);
  }
  return tlstap::run(argc, argv);
}
