#include "link-server.h"

#include <sys/socket.h>
#include <capnp/rpc-twoparty.h>

#include "common/address.h"
#include "common/log.h"

namespace tlstap {

namespace {

// "unix:/path (pid 12, uid 0)" when the kernel can tell who is on the other end.
kj::String describePeer(kj::AsyncIoStream& stream, kj::StringPtr listenerName) {
  struct ucred credentials = {};
  uint length = sizeof(credentials);
  try {
    stream.getsockopt(SOL_SOCKET, SO_PEERCRED, &credentials, &length);
    if (length == sizeof(credentials) && credentials.pid != 0) {
      return kj::str(listenerName, " (pid ", credentials.pid, ", uid ", credentials.uid, ")");
    }
  } catch (const kj::Exception&) {
    // Not a unix socket: fall through to the peer address.
  }
  struct sockaddr_storage address;
  uint addressLength = sizeof(address);
  try {
    stream.getpeername(reinterpret_cast<sockaddr*>(&address), &addressLength);
    return kj::str(listenerName, " from ",
                   SocketAddress::fromSockaddr(reinterpret_cast<sockaddr*>(&address),
                                               addressLength).toString());
  } catch (const kj::Exception&) {
    return kj::heapString(listenerName);
  }
}

// One front's connection and the RPC system that lives on it.
struct FrontConnection {
  FrontConnection(kj::Own<kj::AsyncIoStream> streamParam, capnp::Capability::Client bootstrap)
      : stream(kj::mv(streamParam)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}

  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

}  // namespace

LinkServer::LinkServer(PacketSink& sink, FlowCounters& counters)
    : sink(sink), counters(counters), tasks(errorHandler) {}

LinkServer::~LinkServer() noexcept(false) {}

void LinkServer::ErrorHandler::taskFailed(kj::Exception&& exception) {
  logError("front connection failed: ", exception.getDescription());
}

kj::Promise<void> LinkServer::acceptFrom(kj::Own<kj::ConnectionReceiver> listener,
                                         kj::String name, kj::Maybe<Tls> tls) {
  auto& receiver = *listener;
  return receiver.accept().then(
      [this, listener = kj::mv(listener), name = kj::mv(name), tls](
          kj::Own<kj::AsyncIoStream> stream) mutable -> kj::Promise<void> {
        if (!peerAllowed(*stream, name)) {
          // Closed here, unread.
          return acceptFrom(kj::mv(listener), kj::mv(name), tls);
        }
        boundLinkSilence(*stream, linkTimeout);
        auto peer = describePeer(*stream, name);
        KJ_IF_MAYBE(t, tls) {
          tasks.add(authenticate(*t, kj::mv(stream), kj::mv(peer)));
        } else {
          tasks.add(serve(kj::mv(stream), kj::mv(peer)));
        }
        return acceptFrom(kj::mv(listener), kj::mv(name), tls);
      });
}

kj::Promise<void> LinkServer::authenticate(Tls tls, kj::Own<kj::AsyncIoStream> stream,
                                           kj::String peer) {
  auto timeout = tls.timer.afterDelay(HANDSHAKE_TIMEOUT)
                     .then([]() -> kj::Own<kj::AsyncIoStream> {
                       kj::throwFatalException(KJ_EXCEPTION(
                           FAILED, kj::str("no TLS handshake within ",
                                           HANDSHAKE_TIMEOUT / kj::SECONDS, " s")));
                     });
  auto& link = tls.link;
  return link.wrap(kj::mv(stream))
      .exclusiveJoin(kj::mv(timeout))
      .then(
          [this, &link, peer = kj::heapString(peer)](
              kj::Own<kj::AsyncIoStream> authenticated) mutable {
            return serve(kj::mv(authenticated), kj::str(peer, " (TLS, ", link.describe(), ")"));
          },
          [peer = kj::heapString(peer)](kj::Exception&& exception) {
            // Nothing of this connection reached the RPC system, so nothing reached a recording.
            logWarning("front refused: ", peer, ": ", exception.getDescription());
          });
}

kj::Promise<void> LinkServer::serve(kj::Own<kj::AsyncIoStream> stream, kj::String peerName) {
  logInfo("front connected: ", peerName);
  connections++;
  capnp::Capability::Client bootstrap =
      kj::heap<RecorderService>(sink, counters, kj::heapString(peerName));
  auto connection = kj::heap<FrontConnection>(kj::mv(stream), kj::mv(bootstrap));
  auto disconnected = connection->network.onDisconnect();
  return disconnected
      .then([peerName = kj::heapString(peerName)]() { logInfo("front disconnected: ", peerName); },
            [peerName = kj::heapString(peerName)](kj::Exception&& exception) {
              logError("front ", peerName, " disconnected: ", exception.getDescription());
            })
      .attach(kj::mv(connection), kj::defer([this]() { connectionEnded(); }));
}

bool LinkServer::peerAllowed(kj::AsyncIoStream& stream, kj::StringPtr listenerName) {
  KJ_IF_MAYBE(uids, allowedUids) {
    // Only unix sockets have peer credentials (on TCP the kernel answers with uid -1); fronts
    // on TCP are authenticated by the TLS link, or limited to loopback.
    struct sockaddr_storage local = {};
    uint localLength = sizeof(local);
    bool unixSocket = false;
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      stream.getsockname(reinterpret_cast<sockaddr*>(&local), &localLength);
      unixSocket = local.ss_family == AF_UNIX;
    })) {
      return true;
    }
    if (!unixSocket) return true;
    struct ucred credentials = {};
    uint length = sizeof(credentials);
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      stream.getsockopt(SOL_SOCKET, SO_PEERCRED, &credentials, &length);
    })) {
      // No peer credentials: not a unix socket (TCP on loopback), which this check is not for.
      return true;
    }
    if (length != sizeof(credentials)) return true;
    for (uid_t uid : *uids) {
      if (uid == credentials.uid) return true;
    }
    logWarning("refused a front on ", listenerName, " (pid ", credentials.pid, ", uid ",
               credentials.uid, "): that user is not allowed (--allow-user)");
    return false;
  }
  return true;
}

void LinkServer::connectionEnded() {
  connections--;
  if (connections == 0) {
    for (auto& waiter : idleWaiters) waiter->fulfill();
    idleWaiters.clear();
  }
}

kj::Promise<void> LinkServer::whenAllDisconnected() {
  if (connections == 0) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  idleWaiters.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

}  // namespace tlstap
