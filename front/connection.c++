#include "connection.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <kj/debug.h>

#include "common/clock.h"
#include "common/log.h"
#include "front/backend-connector.h"
#include "front/backend-tls.h"
#include "front/cert-store.h"

namespace tlstap {

namespace {

// Per direction: enough for a few TLS records in flight, small enough for many connections.
constexpr size_t RELAY_BUFFER_BYTES = 64 * 1024;
// Bytes one connection may move per callback before letting the others run.
constexpr size_t PUMP_BUDGET_BYTES = 256 * 1024;

int64_t monotonicUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

}  // namespace

Connection::Connection(Worker& worker, kj::AutoCloseFd client, const SocketAddress& peer,
                       Route route)
    : worker(worker), context(worker.context()), peer(peer), route(route),
      acceptedUs(wallClockUs()), clientFd(kj::mv(client)) {}

Connection::~Connection() noexcept(false) {}

kj::String Connection::who() const { return kj::str("client ", peer.toString()); }

kj::String Connection::backendWho() const {
  return kj::str("backend ", backendAddress.toString(), " (", backendName(), ")");
}

kj::StringPtr Connection::backendName() const {
  KJ_IF_MAYBE(sni, hello.sni) return *sni;
  KJ_IF_MAYBE(fallback, context.noSni) return *fallback;
  return context.backendHostName;
}

template <void (Connection::*method)()>
void Connection::boundary(evutil_socket_t, short, void* arg) {
  auto& self = *reinterpret_cast<Connection*>(arg);
  if (self.stage == Stage::DONE) return;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { (self.*method)(); })) {
    self.fail(kj::mv(*exception));
  }
}

void Connection::start() {
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    auto base = worker.base();
    int fd = clientFd.get();
    setNoDelay(fd);
    clientReadable = EventHandle(base, fd, EV_READ | EV_PERSIST,
                                 &boundary<&Connection::onSocketReady>, this);
    clientWritable = EventHandle(base, fd, EV_WRITE | EV_PERSIST,
                                 &boundary<&Connection::onSocketReady>, this);
    timer = EventHandle(base, -1, 0, &boundary<&Connection::onTimer>, this);
    wake = EventHandle(base, -1, 0, &boundary<&Connection::onSocketReady>, this);
    if (context.handshakeTimeoutSeconds > 0) timer.addSeconds(context.handshakeTimeoutSeconds);
    clientReadable.want(true);
    logDebug(who(), ": accepted");
  })) {
    fail(kj::mv(*exception));
  }
}

void Connection::onSocketReady() {
  // Each stage retries its own step; a readiness meant for an earlier stage is harmless.
  switch (stage) {
    case Stage::PEEKING: peekHello(); break;
    case Stage::RESOLVING: break;
    case Stage::CONNECTING: backendConnected(); break;
    case Stage::BACKEND_HANDSHAKING: continueBackendHandshake(); break;
    case Stage::HANDSHAKING: continueHandshake(); break;
    case Stage::RELAYING: pumpRelay(); break;
    case Stage::DONE: break;
  }
}

void Connection::onTimer() {
  if (stage != Stage::RELAYING) {
    static const char* const STAGES[] = {"waiting for the ClientHello",
                                         "resolving the backend's name",
                                         "connecting to the backend",
                                         "in the TLS handshake with the backend",
                                         "in the TLS handshake"};
    auto why = kj::str("handshake timeout after ", context.handshakeTimeoutSeconds, " s (",
                       STAGES[int(stage)], ")");
    if (stage == Stage::RESOLVING || stage == Stage::CONNECTING ||
        stage == Stage::BACKEND_HANDSHAKING) {
      // The client is still waiting for our answer to its ClientHello: tell it why it ends.
      refuse(TLS_ALERT_INTERNAL_ERROR, why);
    } else {
      logInfo(who(), ": ", why);
      close(false, nullptr);
    }
    return;
  }
  int64_t idleUs = monotonicUs() - lastActivityUs;
  int64_t limitUs = int64_t(context.idleTimeoutSeconds) * 1000000;
  if (idleUs + 1000 >= limitUs) {
    logInfo(who(), ": idle for ", context.idleTimeoutSeconds, " s, closing");
    close(false, nullptr);
    return;
  }
  int64_t leftUs = limitUs - idleUs;
  struct timeval timeout = {static_cast<time_t>(leftUs / 1000000),
                            static_cast<suseconds_t>(leftUs % 1000000)};
  timer.add(&timeout);
}

void Connection::setClientLowWater(int bytes) {
  setsockopt(clientFd.get(), SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes));
}

void Connection::peekHello() {
  auto buffer = worker.scratch().slice(0, MAX_CLIENT_HELLO_BYTES);
  ssize_t n = ::recv(clientFd.get(), buffer.begin(), buffer.size(), MSG_PEEK);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    logInfo(who(), ": reading the ClientHello: ", strerror(errno));
    close(false, nullptr);
    return;
  }
  if (n == 0) {
    // Port probes and health checks connect and close without a byte: not worth a log line.
    logDebug(who(), ": closed before sending anything");
    close(false, nullptr);
    return;
  }
  auto result = parseClientHello(buffer.slice(0, n).asConst());
  switch (result.status) {
    case HelloStatus::INVALID:
      logInfo(who(), ": ", result.error);
      close(false, nullptr);
      return;
    case HelloStatus::NEED_MORE:
      if (size_t(n) == peekedBytes) {
        // The low-water mark only wakes us for more bytes or for EOF: no new bytes is an EOF.
        logInfo(who(), ": closed the connection within its ClientHello (", n, " bytes)");
        close(false, nullptr);
        return;
      }
      // Wake up again only when more than we have arrived, not for the bytes we leave in place.
      peekedBytes = n;
      setClientLowWater(n + 1);
      return;
    case HelloStatus::COMPLETE:
      break;
  }
  if (peekedBytes > 0) setClientLowWater(1);
  hello = kj::mv(result.info);
  clientReadable.want(false);
  chooseCertificate();
}

void Connection::chooseCertificate() {
  kj::StringPtr name;
  KJ_IF_MAYBE(sni, hello.sni) {
    name = *sni;
  } else KJ_IF_MAYBE(fallback, context.noSni) {
    name = *fallback;
  } else {
    refuse(TLS_ALERT_UNRECOGNIZED_NAME, "ClientHello without SNI, and no --nosni name is set");
    return;
  }
  KJ_IF_MAYBE(found, context.certs.find(name)) {
    credentials = *found;
  } else if (worker.forgedCerts() != nullptr) {
    // Forged in startHandshake(), once the backend has been reached: a name that is refused
    // (an IP literal, NXDOMAIN) or whose backend cannot be reached costs no signature.
  } else {
    refuse(TLS_ALERT_UNRECOGNIZED_NAME, kj::str("no --servercert covers '", name, "'"));
    return;
  }
  // --terminate: the backend speaks plaintext HTTP/1.1, so that is the only protocol to agree
  // to; a client offering only h2 gets no ALPN and falls back to HTTP/1.1 by itself.
  for (auto& protocol : hello.alpn) {
    if (protocol == "http/1.1") alpnOffer = "http/1.1";
  }
  logDebug(who(), ": ClientHello for '", name, "'", hello.sni == nullptr ? " (no SNI)" : "",
           ", ALPN offered: ", kj::strArray(hello.alpn, ","));
  connectBackend();
}

void Connection::connectBackend() {
  // Where this connection goes: --connect HOST on the route's FORWARD port, or, routing by SNI,
  // the next address its name resolved to.
  KJ_IF_MAYBE(host, context.backendHost) {
    backendAddress = withPort(*host, route.forwardPort);
  } else if (nextRouteAddress < routeAddresses.size()) {
    backendAddress = withPort(routeAddresses[nextRouteAddress++], route.forwardPort);
  } else {
    resolveBackend();
    return;
  }
  startBackendConnect();
}

void Connection::startBackendConnect() {
  int error = startConnect(backendAddress, backendFd);
  if (error != 0) {
    if (connectNextAddress(error)) return;
    refuse(TLS_ALERT_INTERNAL_ERROR,
           kj::str("cannot connect to backend ", backendAddress.toString(), ": ", strerror(error)));
    return;
  }
  auto base = worker.base();
  int fd = backendFd.get();
  backendReadable = EventHandle(base, fd, EV_READ | EV_PERSIST,
                                &boundary<&Connection::onSocketReady>, this);
  backendWritable = EventHandle(base, fd, EV_WRITE | EV_PERSIST,
                                &boundary<&Connection::onSocketReady>, this);
  stage = Stage::CONNECTING;
  backendWritable.want(true);
}

kj::StringPtr Connection::routeName() const {
  KJ_IF_MAYBE(sni, hello.sni) return *sni;
  return KJ_ASSERT_NONNULL(context.noSni);
}

void Connection::resolveBackend() {
  auto name = routeName();
  KJ_IF_MAYBE(why, routableNameError(name)) {
    refuse(TLS_ALERT_UNRECOGNIZED_NAME, kj::str("not routing '", name, "': ", *why));
    return;
  }
  stage = Stage::RESOLVING;
  lookup = KJ_ASSERT_NONNULL(worker.resolver()).lookUp(name, [this](DnsAnswer&& answer) {
    dnsAnswer = kj::mv(answer);
    boundary<&Connection::onResolved>(-1, 0, this);
  });
}

void Connection::onResolved() {
  auto answer = kj::mv(KJ_ASSERT_NONNULL(dnsAnswer));
  dnsAnswer = nullptr;
  auto name = routeName();
  if (answer.addresses.size() == 0) {
    refuse(answer.nameUnknown ? TLS_ALERT_UNRECOGNIZED_NAME : TLS_ALERT_INTERNAL_ERROR,
           kj::str("cannot resolve '", name, "': ", answer.error));
    return;
  }
  SocketAddress front;
  front.length = sizeof(front.storage);
  getsockname(clientFd.get(), reinterpret_cast<sockaddr*>(&front.storage), &front.length);
  routeAddresses = routableAddresses(answer.addresses, front, route.forwardPort);
  auto found = KJ_MAP(address, answer.addresses) {
    return withPort(address, route.forwardPort).toString();
  };
  if (routeAddresses.size() == 0) {
    refuse(TLS_ALERT_INTERNAL_ERROR,
           kj::str("not routing '", name, "': it resolves only to this front itself or to an "
                   "unspecified address (", kj::strArray(found, ", "), ")"));
    return;
  }
  logDebug(who(), ": '", name, "' resolves to ", kj::strArray(found, ", "));
  connectBackend();
}

// SNI routing: when one address of the name cannot be connected to, the next one is tried.
bool Connection::connectNextAddress(int error) {
  if (nextRouteAddress >= routeAddresses.size()) return false;
  logDebug(who(), ": cannot connect to backend ", backendAddress.toString(), ": ",
           strerror(error), "; trying the next address");
  backendReadable = EventHandle();
  backendWritable = EventHandle();
  backendFd = nullptr;
  connectBackend();
  return true;
}

void Connection::backendConnected() {
  int error = connectResult(backendFd.get());
  if (error == EINPROGRESS || error == EALREADY) return;
  if (error != 0) {
    if (connectNextAddress(error)) return;
    refuse(TLS_ALERT_INTERNAL_ERROR,
           kj::str("cannot connect to backend ", backendAddress.toString(), ": ", strerror(error)));
    return;
  }
  backendWritable.want(false);
  logDebug(who(), ": connected to backend ", backendAddress.toString());
  if (context.backendTls == nullptr) {
    startHandshake();
  } else {
    startBackendHandshake();
  }
}

void Connection::startBackendHandshake() {
  auto& config = KJ_ASSERT_NONNULL(context.backendTls);
  backendTls = newBackendSession(config, backendFd.get(), backendName(), hello.alpn);
  stage = Stage::BACKEND_HANDSHAKING;
  continueBackendHandshake();
}

void Connection::continueBackendHandshake() {
  auto& session = *KJ_ASSERT_NONNULL(backendTls);
  TlsResult result = {TlsStatus::AGAIN, 0};
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { result = session.handshake(); })) {
    session.sendAlertForFailure();
    refuse(TLS_ALERT_HANDSHAKE_FAILURE,
           kj::str(backendWho(), ": ", exception->getDescription()));
    return;
  }
  switch (result.status) {
    case TlsStatus::DONE:
      backendReadable.want(false);
      backendWritable.want(false);
      // The client is offered exactly what the backend chose, or no ALPN if it chose none.
      backendAlpn = session.negotiatedAlpn();
      alpnOffer = backendAlpn;
      logDebug(who(), ": ", backendWho(), ": ", session.version(), " ", session.cipher(),
               backendAlpn.size() > 0 ? kj::str(" ALPN ", backendAlpn) : kj::str(""));
      startHandshake();
      return;
    case TlsStatus::AGAIN:
      backendReadable.want(!session.wantsWrite());
      backendWritable.want(session.wantsWrite());
      return;
    case TlsStatus::END:
      refuse(TLS_ALERT_HANDSHAKE_FAILURE,
             kj::str(backendWho(), ": closed the connection during the TLS handshake"));
      return;
  }
}

bool Connection::forgeCertificate() {
  auto name = routeName();
  auto& cache = KJ_ASSERT_NONNULL(worker.forgedCerts());
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    auto forged = cache.get(name, time(nullptr));
    credentials = forged->get();
    forgedCredentials = kj::mv(forged);
  })) {
    refuse(TLS_ALERT_INTERNAL_ERROR, kj::str("forging a certificate for '", name, "': ",
                                             exception->getDescription()));
    return false;
  }
  return true;
}

void Connection::startHandshake() {
  if (credentials == nullptr && !forgeCertificate()) return;
  tls = newServerSession(context.tls, credentials, clientFd.get(), alpnOffer);
  stage = Stage::HANDSHAKING;
  continueHandshake();
}

void Connection::continueHandshake() {
  auto& session = *KJ_ASSERT_NONNULL(tls);
  TlsResult result = {TlsStatus::AGAIN, 0};
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { result = session.handshake(); })) {
    session.sendAlertForFailure();
    logInfo(who(), ": ", exception->getDescription());
    close(false, nullptr);
    return;
  }
  switch (result.status) {
    case TlsStatus::DONE:
      clientReadable.want(false);
      clientWritable.want(false);
      startRelay();
      return;
    case TlsStatus::AGAIN:
      clientReadable.want(!session.wantsWrite());
      clientWritable.want(session.wantsWrite());
      return;
    case TlsStatus::END:
      logInfo(who(), ": closed the connection during the TLS handshake");
      close(false, nullptr);
      return;
  }
}

void Connection::startRelay() {
  auto& session = *KJ_ASSERT_NONNULL(tls);
  stage = Stage::RELAYING;
  worker.counters().relaying++;
  FlowInfo info;
  info.client = peer;
  // DESIGN.md: with --connect the capture shows the address the client connected to as the
  // server (the backend is an implementation detail behind the front); SNI routing shows the
  // resolved upstream. The recorder writes PCAPPORT as the port either way.
  info.server = backendAddress;
  struct sockaddr_storage local;
  socklen_t length = sizeof(local);
  if (context.backendHost != nullptr &&
      getsockname(clientFd.get(), reinterpret_cast<sockaddr*>(&local), &length) == 0) {
    info.server = SocketAddress::fromSockaddr(reinterpret_cast<sockaddr*>(&local), length);
  }
  info.pcapPort = route.pcapPort;
  KJ_IF_MAYBE(sni, hello.sni) info.sni = kj::heapString(*sni);
  info.alpn = session.negotiatedAlpn();
  info.tlsVersion = session.version();
  info.cipher = session.cipher();
  info.startTimeUs = acceptedUs;
  logDebug(who(), ": ", info.tlsVersion, " ", info.cipher,
           info.alpn.size() > 0 ? kj::str(" ALPN ", info.alpn) : kj::str(""),
           session.resumed() ? " (resumed)" : "", ", relaying to ", backendAddress.toString());
  kj::Maybe<RecordedFlow&> recording;
  KJ_IF_MAYBE(recorder, worker.recorder()) {
    auto opened = recorder->openFlow(kj::mv(info));
    // Never pump from inside the recorder's callback: wake up from the event loop instead.
    opened->setOnDrain([this]() { wake.activate(); });
    recording = *opened;
    flow = kj::mv(opened);
  }
  RelayStream* backend;
  KJ_IF_MAYBE(backendSession, backendTls) {
    backend = backendSession->get();
  } else {
    auto plain = kj::heap<PlainStream>(backendFd.get(), "backend");
    backend = plain.get();
    backendPlain = kj::mv(plain);
  }
  relay = kj::heap<Relay>(session, *backend, recording, worker.scratch(), RELAY_BUFFER_BYTES);
  lastActivityUs = monotonicUs();
  timer.remove();
  if (context.idleTimeoutSeconds > 0) timer.addSeconds(context.idleTimeoutSeconds);
  pumpRelay();
}

void Connection::pumpRelay() {
  auto& r = *KJ_ASSERT_NONNULL(relay);
  bool more = r.pump(PUMP_BUDGET_BYTES);
  if (r.activity() != lastActivity) {
    lastActivity = r.activity();
    lastActivityUs = monotonicUs();
  }
  if (r.finished()) {
    endRelay();
    return;
  }
  auto wants = r.wants();
  clientReadable.want(wants.clientRead);
  clientWritable.want(wants.clientWrite);
  backendReadable.want(wants.backendRead);
  backendWritable.want(wants.backendWrite);
  if (more) wake.activate();
}

void Connection::endRelay() {
  auto& r = *KJ_ASSERT_NONNULL(relay);
  KJ_IF_MAYBE(side, r.abortedBy()) {
    logInfo(who(), ": ", r.abortReason(), " (", r.bytesFrom(Side::CLIENT), " bytes from client, ",
            r.bytesFrom(Side::SERVER), " from backend)");
    close(true, *side);
  } else {
    logDebug(who(), ": closed (", r.bytesFrom(Side::CLIENT), " bytes from client, ",
             r.bytesFrom(Side::SERVER), " from backend)");
    close(false, nullptr);
  }
}

void Connection::refuse(uint8_t alert, kj::StringPtr why) {
  logInfo(who(), ": ", why);
  // Take the ClientHello off the socket first: closing with unread bytes would send a RST that
  // can overtake the alert.
  size_t left = hello.recordBytes;
  auto scratch = worker.scratch();
  while (left > 0) {
    ssize_t n = ::recv(clientFd.get(), scratch.begin(), kj::min(left, scratch.size()), 0);
    if (n <= 0) break;
    left -= n;
  }
  auto record = makeFatalAlertRecord(alert);
  ssize_t sent = ::send(clientFd.get(), record.begin(), record.size(), MSG_NOSIGNAL);
  (void)sent;  // best effort: the connection closes either way
  ::shutdown(clientFd.get(), SHUT_WR);
  close(false, nullptr);
}

void Connection::fail(kj::Exception&& exception) noexcept {
  logError(who(), ": ", exception.getDescription());
  // The front itself broke this connection: the capture shows the server side resetting it.
  close(true, Side::SERVER);
}

void Connection::stop() {
  if (stage == Stage::DONE) return;
  logDebug(who(), ": closed at shutdown");
  close(false, nullptr);
}

void Connection::closeRecording(kj::Maybe<Side> resetBy) noexcept {
  KJ_IF_MAYBE(f, flow) {
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { (*f)->close(wallClockUs(), resetBy); })) {
      logError(who(), ": recording the close: ", exception->getDescription());
    }
  }
}

uint64_t Connection::bytesFrom(Side side) const {
  KJ_IF_MAYBE(r, relay) return (*r)->bytesFrom(side);
  return 0;
}

void Connection::close(bool reset, kj::Maybe<Side> resetBy) noexcept {
  if (stage == Stage::DONE) return;
  auto& counters = worker.counters();
  if (stage == Stage::RELAYING) {
    counters.relaying--;
    counters.bytesFromClient += bytesFrom(Side::CLIENT);
    counters.bytesFromServer += bytesFrom(Side::SERVER);
  } else {
    counters.refused++;
  }
  stage = Stage::DONE;
  closeRecording(resetBy);
  // Release everything now (this may run inside one of our own callbacks, which libevent
  // allows); the object itself is freed by the worker once the callback has returned.
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    relay = nullptr;
    flow = nullptr;
    tls = nullptr;
    lookup = nullptr;
    backendTls = nullptr;
    backendPlain = nullptr;
    clientReadable = EventHandle();
    clientWritable = EventHandle();
    backendReadable = EventHandle();
    backendWritable = EventHandle();
    timer = EventHandle();
    wake = EventHandle();
  })) {
    logError(who(), ": releasing the connection: ", exception->getDescription());
  }
  if (reset) {
    if (clientFd != nullptr) setResetOnClose(clientFd.get());
    if (backendFd != nullptr) setResetOnClose(backendFd.get());
  }
  // AutoCloseFd throws if close() fails; nothing can be done about that here.
  kj::runCatchingExceptions([&]() { clientFd = nullptr; });
  kj::runCatchingExceptions([&]() { backendFd = nullptr; });
  worker.retire(*this);
}

}  // namespace tlstap
