#include "flow-contract.h"

#include <arpa/inet.h>
#include <string.h>

namespace tlstap {

namespace {

// Timestamps before 2000-01-01 or after 2100-01-01 cannot come from a working clock; they would
// only make the capture unreadable by time.
constexpr int64_t EARLIEST_TIME_US = 946684800LL * 1000000;
constexpr int64_t LATEST_TIME_US = 4102444800LL * 1000000;

kj::Maybe<kj::String> checkName(capnp::Text::Reader text, kj::StringPtr field) {
  if (text.size() > proto::MAX_NAME_BYTES) {
    return kj::str(field, " is ", text.size(), " bytes (limit ", proto::MAX_NAME_BYTES, ")");
  }
  return nullptr;
}

kj::String formatIp(const kj::byte* address, bool ipv6, uint16_t port) {
  char text[INET6_ADDRSTRLEN] = "";
  inet_ntop(ipv6 ? AF_INET6 : AF_INET, address, text, sizeof(text));
  return ipv6 ? kj::str("[", text, "]:", port) : kj::str(text, ":", port);
}

}  // namespace

kj::Maybe<kj::String> checkFlowMeta(proto::FlowMeta::Reader meta, FlowEndpoints& endpoints,
                                    kj::Maybe<FlowResume>& resume) {
  auto client = meta.getClient().getAddress();
  auto server = meta.getServer().getAddress();
  if (client.size() != 4 && client.size() != 16) {
    return kj::str("client address is ", client.size(), " bytes (expected 4 or 16)");
  }
  if (server.size() != client.size()) {
    return kj::str("server address is ", server.size(), " bytes, client address ", client.size());
  }
  if (meta.getClient().getPort() == 0) return kj::str("client port is 0");
  if (meta.getPcapPort() == 0) return kj::str("pcap port is 0");
  KJ_IF_MAYBE(error, checkName(meta.getSni(), "SNI")) return kj::mv(*error);
  KJ_IF_MAYBE(error, checkName(meta.getAlpn(), "ALPN")) return kj::mv(*error);
  KJ_IF_MAYBE(error, checkName(meta.getTlsVersion(), "TLS version")) return kj::mv(*error);
  KJ_IF_MAYBE(error, checkName(meta.getCipher(), "cipher")) return kj::mv(*error);
  auto start = meta.getStartTimeUs();
  if (start < EARLIEST_TIME_US || start > LATEST_TIME_US) {
    return kj::str("start time ", start, " us is outside 2000-2100");
  }
  resume = nullptr;
  if (meta.hasResume()) {
    auto from = meta.getResume();
    FlowResume checked;
    checked.offset[static_cast<int>(Side::CLIENT)] = from.getClientOffset();
    checked.offset[static_cast<int>(Side::SERVER)] = from.getServerOffset();
    checked.fin[static_cast<int>(Side::CLIENT)] = from.getClientFin();
    checked.fin[static_cast<int>(Side::SERVER)] = from.getServerFin();
    for (auto offset : checked.offset) {
      if (offset > proto::MAX_FLOW_BYTES) {
        return kj::str("resume offset ", offset, " is over the limit of ", proto::MAX_FLOW_BYTES);
      }
    }
    resume = checked;
  }
  endpoints = FlowEndpoints();
  endpoints.ipv6 = client.size() == 16;
  memcpy(endpoints.clientIp, client.begin(), client.size());
  memcpy(endpoints.serverIp, server.begin(), server.size());
  endpoints.clientPort = meta.getClient().getPort();
  endpoints.serverPort = meta.getPcapPort();
  return nullptr;
}

kj::String describeEndpoints(const FlowEndpoints& endpoints) {
  return kj::str("client ", formatIp(endpoints.clientIp, endpoints.ipv6, endpoints.clientPort),
                 " -> server ", formatIp(endpoints.serverIp, endpoints.ipv6, endpoints.serverPort));
}

FlowContract::FlowContract(const FlowEndpoints& endpoints, int64_t startTimeUs, PacketSink& sink,
                           kj::Maybe<const FlowResume&> resume)
    : synth(endpoints, sink), lastTimeUs(startTimeUs) {
  KJ_IF_MAYBE(from, resume) {
    synth.resume(startTimeUs, from->offset, from->fin);
  } else {
    synth.open(startTimeUs);
  }
}

uint64_t FlowContract::payloadBytes() const {
  return synth.bytesSent(Side::CLIENT) + synth.bytesSent(Side::SERVER);
}

kj::Maybe<kj::String> FlowContract::fail(kj::String reason) {
  state = State::BROKEN;
  return kj::mv(reason);
}

kj::Maybe<kj::String> FlowContract::checkTime(int64_t timeUs, kj::StringPtr what) {
  if (timeUs < lastTimeUs) {
    return kj::str(what, " time ", timeUs, " us goes back before ", lastTimeUs, " us");
  }
  if (timeUs > LATEST_TIME_US) return kj::str(what, " time ", timeUs, " us is after 2100");
  return nullptr;
}

kj::Maybe<kj::String> FlowContract::applyChunk(proto::Chunk::Reader chunk) {
  // Read the raw enum value: a hostile front can send any 16-bit number here.
  auto direction = static_cast<uint16_t>(chunk.getDirection());
  if (direction > static_cast<uint16_t>(proto::Direction::SERVER_TO_CLIENT)) {
    return kj::str("chunk direction ", direction, " is not a direction");
  }
  Side from = direction == 0 ? Side::CLIENT : Side::SERVER;
  auto bytes = chunk.getBytes();
  if (bytes.size() > proto::MAX_CHUNK_BYTES) {
    return kj::str("chunk of ", bytes.size(), " bytes is over the limit of ",
                   proto::MAX_CHUNK_BYTES);
  }
  KJ_IF_MAYBE(error, checkTime(chunk.getTimeUs(), "chunk")) return kj::mv(*error);
  auto skip = chunk.getSkip();
  if (synth.finished(from) && (bytes.size() > 0 || chunk.getFin() || skip > 0)) {
    return kj::str("data from the ", sideName(from), " after its FIN");
  }
  if (skip > proto::MAX_FLOW_BYTES) {
    return kj::str("skip of ", skip, " bytes is over the limit of ", proto::MAX_FLOW_BYTES);
  }
  lastTimeUs = chunk.getTimeUs();
  if (skip > 0) synth.skip(from, skip);
  if (bytes.size() > 0) synth.data(from, lastTimeUs, bytes);
  if (chunk.getFin()) synth.fin(from, lastTimeUs);
  return nullptr;
}

kj::Maybe<kj::String> FlowContract::data(capnp::List<proto::Chunk>::Reader chunks) {
  if (state == State::CLOSED) return fail(kj::str("data after close"));
  if (state == State::BROKEN) return kj::str("flow already ended by an earlier violation");
  if (chunks.size() > proto::MAX_CHUNKS_PER_BATCH) {
    return fail(kj::str("batch of ", chunks.size(), " chunks is over the limit of ",
                        proto::MAX_CHUNKS_PER_BATCH));
  }
  for (auto chunk : chunks) {
    KJ_IF_MAYBE(error, applyChunk(chunk)) return fail(kj::mv(*error));
  }
  return nullptr;
}

kj::Maybe<kj::String> FlowContract::close(proto::Close::Reader how) {
  if (state == State::CLOSED) return fail(kj::str("close after close"));
  if (state == State::BROKEN) return kj::str("flow already ended by an earlier violation");
  KJ_IF_MAYBE(error, checkTime(how.getTimeUs(), "close")) return fail(kj::mv(*error));
  switch (how.which()) {
    case proto::Close::FIN:
      synth.closeOrderly(how.getTimeUs());
      break;
    case proto::Close::RESET: {
      auto direction = static_cast<uint16_t>(how.getReset());
      if (direction > static_cast<uint16_t>(proto::Direction::SERVER_TO_CLIENT)) {
        return fail(kj::str("reset direction ", direction, " is not a direction"));
      }
      synth.reset(direction == 0 ? Side::CLIENT : Side::SERVER, how.getTimeUs());
      break;
    }
    default:
      return fail(kj::str("close kind ", static_cast<uint16_t>(how.which()), " is unknown"));
  }
  state = State::CLOSED;
  return nullptr;
}

}  // namespace tlstap
