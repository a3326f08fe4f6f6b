#include "recorder-link.h"

#include <netinet/in.h>
#include <string.h>
#include <capnp/message.h>

namespace tlstap {

namespace {

// The link's stream, reporting each completed write so that batches held back while the link had
// too much unwritten can go on.
class ProgressStream final : public kj::AsyncIoStream {
public:
  ProgressStream(kj::Own<kj::AsyncIoStream> inner, kj::Function<void()> onWritten)
      : inner(kj::mv(inner)), onWritten(kj::mv(onWritten)) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    return inner->tryRead(buffer, minBytes, maxBytes);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return inner->write(buffer, size).then([this]() { onWritten(); });
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner->write(pieces).then([this]() { onWritten(); });
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner->whenWriteDisconnected(); }
  void shutdownWrite() override { inner->shutdownWrite(); }
  void abortRead() override { inner->abortRead(); }
  void getsockopt(int level, int option, void* value, uint* length) override {
    if (level == SOL_SOCKET && option == SO_SNDBUF && *length == sizeof(int)) {
      // Cap'n Proto asks before every stream call to size its window: a system call per batch.
      // A value a few dozen calls old is as good (TCP's autotuning moves it slowly).
      if (sndbufAge == 0) {
        uint size = sizeof(sndbuf);
        inner->getsockopt(level, option, &sndbuf, &size);
      }
      sndbufAge = (sndbufAge + 1) % SNDBUF_REFRESH_CALLS;
      memcpy(value, &sndbuf, sizeof(sndbuf));
      return;
    }
    inner->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, uint length) override {
    sndbufAge = 0;
    inner->setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, uint* length) override {
    inner->getsockname(addr, length);
  }
  void getpeername(struct sockaddr* addr, uint* length) override {
    inner->getpeername(addr, length);
  }
  kj::Maybe<int> getFd() const override { return inner->getFd(); }

private:
  static constexpr uint SNDBUF_REFRESH_CALLS = 64;
  kj::Own<kj::AsyncIoStream> inner;
  kj::Function<void()> onWritten;
  int sndbuf = 0;
  uint sndbufAge = 0;  // calls answered from `sndbuf`; 0: ask the socket
};

bool isIpv4(const SocketAddress& address) {
  if (address.family() == AF_INET) return true;
  if (address.family() != AF_INET6) return false;
  auto& in6 = reinterpret_cast<const sockaddr_in6&>(address.storage);
  return IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr);
}

// Both ends of a flow must be of one family in the capture. A dual-stack listener reports IPv4
// clients as ::ffff:a.b.c.d, so those are written as IPv4 when the other end is IPv4, and an IPv4
// end is written IPv4-mapped when the other end is a real IPv6 address.
void fillEndpoint(proto::Endpoint::Builder endpoint, const SocketAddress& address, bool asIpv6) {
  kj::byte raw[16];
  memset(raw, 0, sizeof(raw));
  size_t size = 0;
  if (address.family() == AF_INET) {
    auto& in = reinterpret_cast<const sockaddr_in&>(address.storage);
    if (asIpv6) {
      raw[10] = raw[11] = 0xff;
      memcpy(raw + 12, &in.sin_addr, 4);
      size = 16;
    } else {
      memcpy(raw, &in.sin_addr, 4);
      size = 4;
    }
  } else if (address.family() == AF_INET6) {
    auto& in6 = reinterpret_cast<const sockaddr_in6&>(address.storage);
    if (!asIpv6 && IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
      memcpy(raw, reinterpret_cast<const kj::byte*>(&in6.sin6_addr) + 12, 4);
      size = 4;
    } else {
      memcpy(raw, &in6.sin6_addr, 16);
      size = 16;
    }
  }
  // Anything else stays empty: the recorder refuses the flow, which is then counted as lost.
  endpoint.setAddress(kj::arrayPtr(raw, size));
  endpoint.setPort(size > 0 ? address.port() : 0);
}

kj::StringPtr capName(kj::StringPtr name) {
  // The recorder refuses longer names; a cut name still records the traffic.
  return name.size() <= proto::MAX_NAME_BYTES ? name : kj::StringPtr(name.begin(),
                                                                     proto::MAX_NAME_BYTES);
}

}  // namespace

RecorderLink::RecorderLink(kj::Own<kj::AsyncIoStream> connection, kj::Function<void()> onWritten)
    : stream(kj::heap<ProgressStream>(kj::mv(connection), kj::mv(onWritten))),
      network(*stream, capnp::rpc::twoparty::Side::CLIENT),
      rpc(capnp::makeRpcClient(network)),
      recorderCap(nullptr) {
  capnp::MallocMessageBuilder message(8);
  auto vatId = message.initRoot<capnp::rpc::twoparty::VatId>();
  vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
  recorderCap = rpc.bootstrap(vatId).castAs<proto::Recorder>();
}

RecorderLink::~RecorderLink() noexcept(false) {}

void fillFlowMeta(proto::FlowMeta::Builder meta, const FlowInfo& info) {
  bool asIpv6 = !(isIpv4(info.client) && isIpv4(info.server));
  fillEndpoint(meta.initClient(), info.client, asIpv6);
  fillEndpoint(meta.initServer(), info.server, asIpv6);
  meta.setPcapPort(info.pcapPort);
  meta.setSni(capName(info.sni));
  meta.setAlpn(capName(info.alpn));
  meta.setTlsVersion(capName(info.tlsVersion));
  meta.setCipher(capName(info.cipher));
  meta.setStartTimeUs(info.startTimeUs);
}

}  // namespace tlstap
