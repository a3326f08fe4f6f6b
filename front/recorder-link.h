// One Cap'n Proto RPC connection from the front to a recorder (proto/recorder.capnp): the stream,
// the two-party network, the RPC system and the recorder's bootstrap capability. RecorderClient
// (recorder-client.h) owns one; reconnecting (a later issue) means replacing it and reopening the
// flows that are still open on the new one.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/function.h>

#include "front/flow-recorder.h"
#include "recorder.capnp.h"

namespace tlstap {

class RecorderLink {
public:
  // `onWritten` runs (from the KJ loop) each time a write to the socket has completed, so that
  // senders held back by backlog() can go on.
  RecorderLink(kj::Own<kj::AsyncIoStream> connection, kj::Function<void()> onWritten);
  ~RecorderLink() noexcept(false);
  KJ_DISALLOW_COPY(RecorderLink);

  proto::Recorder::Client& recorder() { return recorderCap; }

  // Resolves when the connection is gone (the peer closed it or it failed).
  kj::Promise<void> onDisconnect() { return network.onDisconnect(); }

  // Bytes Cap'n Proto holds for this link that are not yet written to the socket.
  size_t backlog() { return network.getCurrentQueueSize(); }

private:
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  proto::Recorder::Client recorderCap;
};

// Fills an openFlow request from what the relay knows. Both ends get one address family (IPv4
// when both are IPv4 or IPv4-mapped, else IPv6 with IPv4 ends mapped), and names are cut to the
// contract's limit, so a well-formed connection is never refused for its form.
void fillFlowMeta(proto::FlowMeta::Builder meta, const FlowInfo& info);

}  // namespace tlstap
