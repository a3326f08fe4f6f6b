// tlstap-front: wires the parts together in the start-up order of DESIGN.md (options, keys and
// certificates, listening sockets, recorder, then the lock-down: user, no_new_privs, seccomp),
// then runs the event loop until SIGTERM/SIGINT.
// Any start-up failure is one line on stderr and exit status 2, with nothing started.

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <kj/debug.h>
#include <kj/exception.h>

#include "common/event-port.h"
#include "common/log.h"
#include "common/options.h"
#include "common/startup-signals.h"
#include "common/stats.h"
#include "front/backend-connector.h"
#include "front/backend-tls.h"
#include "front/ca-http.h"
#include "front/cert-forge.h"
#include "front/cert-store.h"
#include "front/dns-resolver.h"
#include "front/embedded-recorder.h"
#include "front/front-options.h"
#include "front/listener.h"
#include "front/recorder-client.h"
#include "front/root-ca.h"
#include "front/supervised-recorder-source.h"
#include "front/tls-link-source.h"
#include "front/unix-link-source.h"
#include "front/tls-session.h"
#include "front/worker.h"
#include "sandbox/lock-down.h"

namespace tlstap {
namespace {

constexpr const char* PROGRAM = "tlstap-front";
constexpr const char* SYNOPSIS =
    "[--terminate] [--connect HOST | --dns IP[:PORT]] -p [IP,]LISTEN,PCAPPORT[,FORWARD] "
    "--servercert NAME:FILE[:PASSWORD] (-o DIR | -w FILE | --pcapoverip PORT | --recorder ADDR)";

// One event_base, freed on exit.
class EventBase {
public:
  EventBase() : base(event_base_new()) { KJ_ASSERT(base != nullptr, "event_base_new failed"); }
  ~EventBase() noexcept { event_base_free(base); }
  KJ_DISALLOW_COPY(EventBase);
  event_base* get() const { return base; }

private:
  event_base* base;
};

// How long shutdown waits for the recording to drain before giving up on it.
constexpr auto DRAIN_TIMEOUT = 30 * kj::SECONDS;
// How long start-up waits for the recorder to answer.
constexpr auto RECORDER_READY_TIMEOUT = 10 * kj::SECONDS;

// SIGTERM/SIGINT: stop accepting, end the open connections (each recorded as closed), let the
// recording drain, then leave the loop. A second signal leaves at once.
class Shutdown {
public:
  Shutdown(KjOnLibevent& kj, Acceptor& acceptor, Worker& worker,
           kj::Maybe<RecorderClient&> recorder)
      : kj(kj), base(kj.base()), acceptor(acceptor), worker(worker), recorder(recorder),
        term(base, SIGTERM, EV_SIGNAL | EV_PERSIST, &Shutdown::onSignal, this),
        interrupt(base, SIGINT, EV_SIGNAL | EV_PERSIST, &Shutdown::onSignal, this) {
    term.add();
    interrupt.add();
  }

  // The process exit status once the loop has ended.
  int status() const { return exitStatus; }
  // After the loop: drops a drain still pending (after a second signal), before the recorder
  // client it waits on goes away.
  void abandonDrain() { drain = nullptr; }

private:
  KjOnLibevent& kj;
  event_base* base;
  Acceptor& acceptor;
  Worker& worker;
  kj::Maybe<RecorderClient&> recorder;
  EventHandle term;
  EventHandle interrupt;
  bool stopping = false;
  int exitStatus = 0;
  kj::Maybe<kj::Promise<void>> drain;

  static void onSignal(evutil_socket_t signal, short, void* arg) {
    auto& self = *reinterpret_cast<Shutdown*>(arg);
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { self.begin(int(signal)); })) {
      logError("shutting down: ", exception->getDescription());
      self.exitStatus = 1;
      event_base_loopexit(self.base, nullptr);
    }
  }

  void begin(int signal) {
    if (stopping) {
      logWarning("second signal: exiting without waiting for the recording");
      exitStatus = 1;
      event_base_loopbreak(base);
      return;
    }
    stopping = true;
    logInfo(signal == SIGTERM ? "SIGTERM" : "SIGINT", ": stopping (", worker.size(),
            " connections open)");
    acceptor.close();
    worker.closeAll();
    KJ_IF_MAYBE(client, recorder) {
      auto timeout = kj.timer().afterDelay(DRAIN_TIMEOUT).then([this]() {
        logError("the recording did not drain within ", DRAIN_TIMEOUT / kj::SECONDS,
                 " s; exiting anyway");
        exitStatus = 1;
      });
      drain = client->drainAndClose()
                  .then([]() {}, [this](kj::Exception&& exception) {
                    logError("draining the recording: ", exception.getDescription());
                    exitStatus = 1;
                  })
                  .exclusiveJoin(kj::mv(timeout))
                  .then([this]() { event_base_loopexit(base, nullptr); })
                  .eagerlyEvaluate(nullptr);
    } else {
      event_base_loopexit(base, nullptr);
    }
  }
};

// The counters line (common/stats.h), every --stats-interval seconds and on SIGUSR1. The embedded
// recorder logs its own line at the same interval (and on a SIGUSR1 of its own): it runs under
// its supervisor, which a signal from here must not reach.
class CountersLog {
public:
  CountersLog(KjOnLibevent& kj, Worker& worker, kj::Maybe<RecorderClient&> recorder,
              uint32_t seconds)
      : worker(worker), recorder(recorder),
        usr1(kj.base(), SIGUSR1, EV_SIGNAL | EV_PERSIST, &CountersLog::onSignal, this),
        periodic(reportPeriodically(kj.timer(), seconds, report).eagerlyEvaluate(nullptr)) {
    usr1.add();
  }

  void log() {
    auto connections = worker.liveCounters();
    RecorderClientCounters recording;
    KJ_IF_MAYBE(client, recorder) recording = client->counters();
    uint64_t forged = 0;
    KJ_IF_MAYBE(cache, worker.forgedCerts()) forged = cache->forgedCount();
    StatsField fields[] = {
        {"connections_accepted", connections.accepted},
        {"connections_open", worker.size()},
        {"connections_refused", connections.refused},
        {"flows_open", connections.relaying},
        {"bytes_client_to_server", connections.bytesFromClient},
        {"bytes_server_to_client", connections.bytesFromServer},
        {"bytes_recorded", recording.bytesRecorded},
        {"bytes_waiting", recording.bytesWaiting},
        {"bytes_lost", recording.bytesLost},
        {"certificates_forged", forged},
    };
    logInfo(formatStats(fields));
  }

private:
  Worker& worker;
  kj::Maybe<RecorderClient&> recorder;
  EventHandle usr1;
  kj::Function<void()> report = [this]() { log(); };
  kj::Promise<void> periodic;

  static void onSignal(evutil_socket_t, short, void* arg) {
    auto& self = *reinterpret_cast<CountersLog*>(arg);
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { self.log(); })) {
      logError("counters: ", exception->getDescription());
    }
  }
};

// Where the links to an external recorder (--recorder) come from: a unix socket, or a recorder
// on another host over TLS. Exits 2 for an address or link option it cannot use.
kj::Own<RecorderLinkSource> externalRecorder(KjOnLibevent& kj, const FrontOptions& options) {
  auto& address = KJ_ASSERT_NONNULL(options.recorderAddress);
  if (!address.startsWith("unix:")) {
    kj::Own<TlsLinkSource> tcp;
    KJ_IF_MAYBE(error, TlsLinkSource::create(kj.base(), kj.timer(), address, options.link,
                                             options.linkTimeoutSeconds * kj::SECONDS, tcp)) {
      exitWithUsageError(PROGRAM, *error);
    }
    return kj::mv(tcp);
  }
  SocketAddress target;
  KJ_IF_MAYBE(error, parseListenAddress(address, target)) {
    exitWithUsageError(PROGRAM, kj::str("--recorder: ", *error));
  }
  return kj::heap<UnixLinkSource>(kj.base(), target, kj::str(address));
}

// Waits (at start-up, before the loop runs) until the recorder has answered. Exits 2 if it does
// not: a recorder that refused its own options has already said why on stderr.
void waitForRecorder(KjOnLibevent& kj, RecorderClient& client, kj::StringPtr what,
                     kj::Maybe<SupervisedRecorderSource&> embedded) {
  bool ready = false;
  kj::Maybe<kj::String> failure;
  client.whenReady()
      .then([&]() { ready = true; },
            [&](kj::Exception&& exception) { failure = kj::str(exception.getDescription()); })
      .exclusiveJoin(kj.timer().afterDelay(RECORDER_READY_TIMEOUT))
      .wait(kj.waitScope());
  KJ_IF_MAYBE(source, embedded) {
    if (!ready) {
      // Why did the link break? The supervisor answers the next request with a refusal if the
      // recorder refused its options; then it has printed the one line saying why, and the
      // user sees only that line.
      source->connect()
          .then([](kj::Own<kj::AsyncIoStream>) {}, [](kj::Exception&&) {})
          .exclusiveJoin(kj.timer().afterDelay(RECORDER_READY_TIMEOUT))
          .wait(kj.waitScope());
      if (source->refused()) exit(2);
    }
  }
  KJ_IF_MAYBE(cause, failure) {
    exitWithUsageError(PROGRAM, kj::str(what, ": the recorder is not available: ", *cause));
  }
  if (!ready) {
    exitWithUsageError(PROGRAM, kj::str(what, ": the recorder did not answer within ",
                                        RECORDER_READY_TIMEOUT / kj::SECONDS, " s"));
  }
}

// Started as root, the embedded recorder runs as a user of its own (--recorder-user, default
// tlstap-rec), never the front's: it must not share a uid with the process holding the keys.
kj::Maybe<kj::String> chooseEmbeddedRecorderUser(const FrontOptions& options,
                                                 const kj::Maybe<UserIdentity>& frontUser,
                                                 kj::Maybe<kj::String>& name) {
  kj::Maybe<UserIdentity> recorderUser;
  KJ_IF_MAYBE(error, chooseRunAsUser("--recorder-user", options.recorderUser, DEFAULT_RECORDER_USER,
                                     recorderUser)) {
    return kj::mv(*error);
  }
  KJ_IF_MAYBE(recorder, recorderUser) {
    KJ_IF_MAYBE(front, frontUser) {
      if (front->uid == recorder->uid) {
        return kj::str("--recorder-user: the recorder must not run as the front's user ",
                       front->name, " (uid ", front->uid, "): give each its own user");
      }
    }
    name = kj::str(recorder->name);
  }
  return nullptr;
}

int run(int argc, char** argv) {
  setLogProgram(PROGRAM);
  // Writes to a peer that has gone must fail with EPIPE, not kill the process.
  signal(SIGPIPE, SIG_IGN);

  FrontOptions options;
  OptionParser parser(PROGRAM, SYNOPSIS);
  addFrontOptions(parser, options);
  parser.parseOrExit(argc, argv);
  KJ_IF_MAYBE(error, checkFrontOptions(options)) exitWithUsageError(PROGRAM, *error);
  setLogVerbose(options.verbose);

  // Users are looked up now, while NSS may still read /etc/passwd.
  kj::Maybe<UserIdentity> frontUser;
  KJ_IF_MAYBE(error, chooseRunAsUser("--user", options.user, DEFAULT_FRONT_USER, frontUser)) {
    exitWithUsageError(PROGRAM, *error);
  }
  kj::Maybe<kj::String> recorderUserName;

  // The embedded recorder's supervisor starts first, before any key, password or certificate
  // file is read or open: exec leaves none of the front's memory behind anyway, and this way no
  // descriptor or later state of the front can reach it either. It starts the recorder only when
  // asked, below, once the front's own start-up has succeeded. It must start before lock-down,
  // after which the front cannot fork, execute or make socket pairs; from then on it restarts
  // the recorder and hands out links.
  EmbeddedRecorder embedded;
  RecordingOutputs outputs;
  if (options.recorderAddress == nullptr) {
    KJ_IF_MAYBE(error, chooseEmbeddedRecorderUser(options, frontUser, recorderUserName)) {
      exitWithUsageError(PROGRAM, *error);
    }
    KJ_IF_MAYBE(dir, options.outputDir) outputs.outputDir = kj::StringPtr(*dir);
    KJ_IF_MAYBE(file, options.writeFile) outputs.writeFile = kj::StringPtr(*file);
    outputs.pcapOverIp = options.pcapOverIp.asPtr();
    outputs.pcapOverIpConnect = options.pcapOverIpConnect.asPtr();
    outputs.autoflushSeconds = options.autoflushSeconds;
    outputs.retainHours = options.retainHours;
    outputs.maxBytes = options.maxBytes;
    outputs.statsIntervalSeconds = options.statsIntervalSeconds;
    outputs.verbose = options.verbose;
    // Started as root, each recorder the supervisor starts drops to its own user.
    KJ_IF_MAYBE(name, recorderUserName) outputs.user = kj::StringPtr(*name);
    KJ_IF_MAYBE(error, embedded.start(outputs)) exitWithUsageError(PROGRAM, *error);
  }

  CertStore certs;
  for (auto& cert : options.serverCerts) {
    KJ_IF_MAYBE(error, certs.addServerCert(cert.spec, cert.origin)) {
      exitWithUsageError(PROGRAM, kj::str("--servercert: ", *error));
    }
    // The spec may hold a literal password: no copy of it stays behind.
    wipe(cert.spec);
  }

  // The root CA is always there (PolarProxy's model): loaded with --cacert, or generated once
  // and kept in --cadir. Names no --servercert covers get a certificate it signs.
  kj::Own<RootCa> rootCa;
  RootCaSource caSource;
  KJ_IF_MAYBE(spec, options.caCert) caSource.caCert = kj::StringPtr(*spec);
  caSource.caCertOrigin = options.caCertOrigin;
  KJ_IF_MAYBE(dir, options.caDir) caSource.caDir = kj::StringPtr(*dir);
  KJ_IF_MAYBE(name, options.caCommonName) caSource.commonName = kj::StringPtr(*name);
  kj::String caDescription;
  KJ_IF_MAYBE(error, openRootCa(caSource, rootCa, caDescription)) {
    exitWithUsageError(PROGRAM, *error);
  }
  // Like a --servercert spec, it may hold a literal password.
  KJ_IF_MAYBE(spec, options.caCert) wipe(*spec);
  KJ_IF_MAYBE(path, options.exportCa) {
    KJ_IF_MAYBE(error, exportCaCertificate(*rootCa, *path)) {
      exitWithUsageError(PROGRAM, kj::str("-x: ", *error));
    }
  }
  kj::Maybe<kj::Own<CertForger>> forger;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    forger = kj::heap<CertForger>(*rootCa);
  })) {
    exitWithUsageError(PROGRAM, kj::str("root CA: ", exception->getDescription()));
  }

  kj::Maybe<SocketAddress> backendHost;
  kj::StringPtr connectHost;  // empty when routing by SNI
  KJ_IF_MAYBE(host, options.connectHost) {
    connectHost = *host;
    SocketAddress resolved;
    KJ_IF_MAYBE(error, resolveBackendHost(*host, resolved)) {
      exitWithUsageError(PROGRAM, kj::str("--connect: ", *error));
    }
    backendHost = resolved;
  }

  // Re-encrypting: the backend's trust anchors are read now, before the sandbox, once for every
  // connection.
  BackendTlsConfig backendTlsConfig;
  kj::Maybe<const BackendTlsConfig&> backendTls;
  if (!options.terminate) {
    kj::Maybe<kj::StringPtr> caFile;
    KJ_IF_MAYBE(file, options.backendCa) caFile = kj::StringPtr(*file);
    KJ_IF_MAYBE(error, backendTlsConfig.init(caFile, options.insecure)) {
      exitWithUsageError(PROGRAM, *error);
    }
    backendTls = backendTlsConfig;
  }

  kj::Maybe<kj::Own<TlsServerConfig>> tlsConfig;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    tlsConfig = kj::heap<TlsServerConfig>();
  })) {
    exitWithUsageError(PROGRAM, kj::str("TLS set-up: ", exception->getDescription()));
  }

  kj::Vector<BoundListener> listeners;
  KJ_IF_MAYBE(error, bindListeners(options.ports, listeners)) {
    exitWithUsageError(PROGRAM, *error);
  }

  kj::Vector<kj::AutoCloseFd> certHttpSockets;
  KJ_IF_MAYBE(port, options.certHttpPort) {
    KJ_IF_MAYBE(error, bindCaHttp(*port, certHttpSockets)) {
      exitWithUsageError(PROGRAM, kj::str("--certhttp: ", *error));
    }
  }

  EventBase base;
  KjOnLibevent kj(base.get());

  // SNI routing: the resolver reads its configuration and opens its sockets now, before the
  // sandbox. Declared before the worker, whose connections hold lookups, so it outlives them.
  kj::Maybe<kj::Own<DnsResolver>> resolver;
  if (backendHost == nullptr) {
    DnsSettings dns;
    dns.server = options.dns;
    // Half the handshake timeout (at most 5 s) leaves the connect and the handshake their share.
    dns.timeoutMs = kj::min(options.handshakeTimeoutSeconds * 500, 5000u);
    kj::Own<DnsResolver> opened;
    KJ_IF_MAYBE(error, DnsResolver::open(base.get(), dns, opened)) {
      exitWithUsageError(PROGRAM, kj::str(options.dns == nullptr ? "routing by SNI: " : "--dns: ",
                                          *error));
    }
    resolver = kj::mv(opened);
  }

  // The client owns its link source: destroying it closes the supervisor's control socket too.
  kj::Maybe<kj::Own<RecorderClient>> recorderClient;
  RecorderLimits limits;
  limits.whenDown = options.recorderDown;
  limits.linkTimeout = options.linkTimeoutSeconds * kj::SECONDS;
  if (options.recorderAddress != nullptr) {
    auto client = kj::heap<RecorderClient>(kj.timer(), externalRecorder(kj, options), limits);
    options.link.wipeSecrets();  // read by now
    waitForRecorder(kj, *client, "--recorder", nullptr);
    recorderClient = kj::mv(client);
  } else {
    auto source = kj::heap<SupervisedRecorderSource>(base.get(), embedded.takeControl());
    auto& sourceRef = *source;
    auto client = kj::heap<RecorderClient>(kj.timer(), kj::mv(source), limits);
    waitForRecorder(kj, *client, "tlstap-recorder", sourceRef);
    recorderClient = kj::mv(client);
  }

  // Everything that needs root or the file system is done: lock down (DESIGN.md "Security
  // model"). One event loop for now, so no thread is ever started (--threads is for later).
  FrontPolicyOptions policy;
  KJ_IF_MAYBE(address, options.recorderAddress) policy.unixRecorder = address->startsWith("unix:");
  forgetEnvPasswords();  // every key and link credential is loaded
  KJ_IF_MAYBE(error, lockDownFront(frontUser, policy)) {
    exitWithUsageError(PROGRAM, kj::str("sandbox: ", *error));
  }

  kj::Maybe<FlowRecorder&> recorder;
  kj::Maybe<RecorderClient&> recorderRef;
  KJ_IF_MAYBE(client, recorderClient) {
    recorder = **client;
    recorderRef = **client;
  }

  kj::Maybe<kj::StringPtr> noSni;
  KJ_IF_MAYBE(name, options.noSni) noSni = kj::StringPtr(*name);
  FrontContext context{certs, *KJ_ASSERT_NONNULL(tlsConfig), noSni, backendHost, connectHost,
                       backendTls, options.handshakeTimeoutSeconds, options.idleTimeoutSeconds,
                       *KJ_ASSERT_NONNULL(forger)};
  Worker worker(base.get(), context, recorder, options.maxConnections);
  KJ_IF_MAYBE(dns, resolver) worker.setResolver(**dns);
  Acceptor acceptor(worker, kj::mv(listeners));
  Shutdown shutdown(kj, acceptor, worker, recorderRef);
  CountersLog countersLog(kj, worker, recorderRef, options.statsIntervalSeconds);
  // The handlers are in place: a SIGTERM, SIGINT or SIGUSR1 held since main() began is
  // delivered now and handled by the loop like any later one.
  releaseStartupSignals();
  acceptor.start();
  kj::Maybe<kj::Own<CaHttpServer>> caHttp;
  if (options.certHttpPort != nullptr) {
    auto server = kj::heap<CaHttpServer>(base.get(), kj::mv(certHttpSockets), rootCa->der());
    server->start();
    caHttp = kj::mv(server);
  }
  // Said once start-up has worked, so that a failed start is one line.
  logInfo(caDescription);
  KJ_IF_MAYBE(path, options.exportCa) logInfo("root CA certificate exported to '", *path, "'");
  KJ_IF_MAYBE(port, options.certHttpPort) {
    logInfo("serving the root CA certificate over HTTP on port ", *port);
  }
  auto target = resolver == nullptr
      ? kj::str(connectHost)
      : kj::str("the host each SNI names (routing by SNI, DNS: ",
                KJ_ASSERT_NONNULL(resolver)->description(), ")");
  logInfo("terminating TLS on ", options.ports.size(), " port(s), ",
          options.terminate ? "forwarding plaintext to " : "re-encrypting to ", target);
  if (!options.terminate && options.insecure) {
    logWarning("--insecure: backend certificates are not verified; whoever sits between this "
               "host and the backend can read and change the traffic");
  }
  if (options.threads > 1) {
    // The connection path keeps its per-loop state in Worker, ready for one loop per thread.
    logDebug("--threads ", options.threads, ": one event loop for now");
  }

  if (event_base_dispatch(base.get()) < 0) {
    logError("event loop failed");
    return 1;
  }
  int status = shutdown.status();
  shutdown.abandonDrain();
  KJ_IF_MAYBE(client, recorderClient) {
    auto counters = (*client)->counters();
    logInfo("recording: ", counters.bytesQueued, " bytes relayed, ", counters.bytesRecorded,
            " acknowledged by the recorder, ", counters.bytesLost, " lost; ",
            counters.linksLost, " recorder link(s) lost, ", counters.flowsResumed,
            " flow(s) resumed");
  }
  countersLog.log();
  if (embedded.pid() > 0) {
    // The drained link and the control socket are closed: the recorder finishes its files and
    // exits, and then its supervisor, with the recorder's status.
    recorderClient = nullptr;
    int recorderStatus = embedded.wait();
    if (recorderStatus != 0) {
      logError("tlstap-recorder exited with status ", recorderStatus);
      status = 1;
    }
  }
  logInfo("stopped");
  return status;
}

}  // namespace
}  // namespace tlstap

int main(int argc, char** argv) {
  // Until the loop's handlers exist, a stop signal waits instead of killing the process.
  tlstap::holdStartupSignals();
  int status = 1;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { status = tlstap::run(argc, argv); })) {
    tlstap::logError(exception->getDescription());
    return 1;
  }
  return status;
}
