#include "dns-resolver.h"

#include <arpa/inet.h>
#include <event2/util.h>
#include <string.h>
#include <kj/debug.h>
#include <kj/vector.h>

#include "common/log.h"

namespace tlstap {

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isLetterOrDigit(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// RFC 1123 section 2.1 host name syntax, the top-level label not all digits (RFC 3696 section 2).
bool isDnsHostName(kj::StringPtr name) {
  if (name.size() == 0 || name.size() > 253) return false;
  size_t start = 0;
  bool allDigits = true;
  for (size_t i = 0; i <= name.size(); i++) {
    if (i == name.size() || name[i] == '.') {
      size_t length = i - start;
      if (length == 0 || length > 63) return false;
      if (name[start] == '-' || name[i - 1] == '-') return false;
      if (i == name.size() && allDigits) return false;
      start = i + 1;
      allDigits = true;
      continue;
    }
    if (!isLetterOrDigit(name[i]) && name[i] != '-') return false;
    if (!isDigit(name[i])) allDigits = false;
  }
  return true;
}

SocketAddress fromIpv4(const struct in_addr& ip) {
  SocketAddress result;
  auto v4 = reinterpret_cast<sockaddr_in*>(&result.storage);
  v4->sin_family = AF_INET;
  v4->sin_addr = ip;
  result.length = sizeof(*v4);
  return result;
}

SocketAddress fromIpv6(const struct in6_addr& ip) {
  SocketAddress result;
  auto v6 = reinterpret_cast<sockaddr_in6*>(&result.storage);
  v6->sin6_family = AF_INET6;
  v6->sin6_addr = ip;
  result.length = sizeof(*v6);
  return result;
}

// An IPv4 client of a dual-stack listener sees the front as ::ffff:a.b.c.d.
SocketAddress unmapped(const SocketAddress& address) {
  if (address.family() != AF_INET6) return address;
  auto& v6 = reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_addr;
  if (!IN6_IS_ADDR_V4MAPPED(&v6)) return address;
  struct in_addr v4;
  memcpy(&v4, reinterpret_cast<const kj::byte*>(&v6) + 12, 4);
  return fromIpv4(v4);
}

bool sameIp(const SocketAddress& first, const SocketAddress& second) {
  auto a = unmapped(first), b = unmapped(second);
  if (a.family() != b.family()) return false;
  if (a.family() == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in*>(&b.storage)->sin_addr.s_addr;
  }
  if (a.family() == AF_INET6) {
    return IN6_ARE_ADDR_EQUAL(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr,
                              &reinterpret_cast<const sockaddr_in6*>(&b.storage)->sin6_addr);
  }
  return false;
}

// libevent has one log hook for all of evdns. Its warnings (a nameserver that stops answering,
// and answers again) are worth a line; the rest is chatter for -v.
void logEvdns(int isWarning, const char* message) {
  if (isWarning) {
    logWarning("DNS: ", message);
  } else {
    logDebug("DNS: ", message);
  }
}

// "2.5" for 2500 ms: evdns reads its timeout option as decimal seconds.
kj::String decimalSeconds(uint32_t ms) {
  auto fraction = kj::str(1000 + ms % 1000);
  return kj::str(ms / 1000, ".", fraction.slice(1));
}

// Each query is sent this many times in all, a timeout of timeoutMs / ATTEMPTS apart, so a lost
// datagram is retried within the lookup's time.
constexpr uint32_t ATTEMPTS = 3;

}  // namespace

kj::Maybe<kj::StringPtr> routableNameError(kj::StringPtr name) {
  struct in_addr ignored;
  if (inet_pton(AF_INET, name.cStr(), &ignored) == 1) {
    return kj::StringPtr("an IP address, not a host name");
  }
  if (!isDnsHostName(name)) return kj::StringPtr("not a valid DNS host name");
  if (name == "localhost" || name.endsWith(".localhost")) {
    return kj::StringPtr("a localhost name (it would reach the front's own machine)");
  }
  return nullptr;
}

kj::Array<SocketAddress> routableAddresses(kj::ArrayPtr<const SocketAddress> resolved,
                                           const SocketAddress& front, uint16_t forwardPort) {
  kj::Vector<SocketAddress> result;
  for (auto& address : resolved) {
    if (address.isUnspecified()) continue;
    if (forwardPort == front.port() && sameIp(address, front)) continue;
    result.add(address);
  }
  return result.releaseAsArray();
}

// --- One lookup --------------------------------------------------------------------------------

// What a lookup needs until evdns has called back for both queries. evdns calls back exactly
// once per query it accepted, always later from the event loop (never from inside
// evdns_base_resolve_*), even after evdns_cancel_request() (with DNS_ERR_CANCEL), so the last
// callback is where this is freed.
struct DnsLookup::State {
  struct Query {
    State* state;
    evdns_request* request = nullptr;  // nullptr once evdns has called back (it frees it then)
    int result = DNS_ERR_NONE;
    kj::Vector<SocketAddress> addresses;
  };

  evdns_base* base;
  uint32_t timeoutMs;
  kj::Maybe<kj::Function<void(DnsAnswer&&)>> done;  // nullptr once the lookup is dropped
  DnsLookup* owner = nullptr;
  Query queries[2];  // A, then AAAA
  int outstanding = 0;

  State(evdns_base* base, uint32_t timeoutMs, kj::Function<void(DnsAnswer&&)> done)
      : base(base), timeoutMs(timeoutMs), done(kj::mv(done)) {
    for (auto& query : queries) query.state = this;
  }

  static void onReply(int result, char type, int count, int, void* addresses, void* arg) {
    auto& query = *reinterpret_cast<Query*>(arg);
    auto& state = *query.state;
    query.request = nullptr;
    query.result = result;
    if (result == DNS_ERR_NONE && addresses != nullptr) {
      for (int i = 0; i < count; i++) {
        if (type == DNS_IPv4_A) {
          query.addresses.add(fromIpv4(reinterpret_cast<const struct in_addr*>(addresses)[i]));
        } else if (type == DNS_IPv6_AAAA) {
          query.addresses.add(fromIpv6(reinterpret_cast<const struct in6_addr*>(addresses)[i]));
        }
      }
    }
    state.outstanding--;
    state.finishIfDone();
  }

  // After the last callback: delivers the answer (if anyone still wants it) and frees this.
  void finishIfDone() {
    if (outstanding > 0) return;
    KJ_IF_MAYBE(callback, done) {
      auto deliver = kj::mv(*callback);
      done = nullptr;
      auto answer = makeAnswer();
      KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { deliver(kj::mv(answer)); })) {
        logError("after a DNS answer: ", exception->getDescription());
      }
    }
    // The callback may have dropped the lookup; if it did not, the lookup outlives this.
    if (owner != nullptr) owner->state = nullptr;
    delete this;
  }

  DnsAnswer makeAnswer() {
    DnsAnswer answer;
    kj::Vector<SocketAddress> all;
    for (auto& query : queries) {
      for (auto& address : query.addresses) all.add(address);
    }
    answer.addresses = all.releaseAsArray();
    if (answer.addresses.size() > 0) return answer;
    // No address: the most telling cause of the two queries.
    int results[2] = {queries[0].result, queries[1].result};
    for (int result : results) {
      if (result == DNS_ERR_NOTEXIST) {
        answer.nameUnknown = true;
        answer.error = kj::str("no such name (NXDOMAIN)");
        return answer;
      }
    }
    for (int result : results) {
      if (result == DNS_ERR_TIMEOUT) {
        // evdns retries a SERVFAIL like a lost answer, so both end here.
        answer.error = kj::str("no usable answer from the DNS server within ",
                               decimalSeconds(timeoutMs), " s (timeout or SERVFAIL)");
        return answer;
      }
    }
    for (int result : results) {
      if (result != DNS_ERR_NONE && result != DNS_ERR_NODATA) {
        answer.error = kj::str("DNS error: ", evdns_err_to_string(result));
        return answer;
      }
    }
    answer.nameUnknown = true;
    answer.error = kj::str("the name has no address (no A or AAAA record)");
    return answer;
  }
};

DnsLookup::~DnsLookup() noexcept {
  if (state == nullptr) return;
  // Still waiting: nobody wants the answer any more. The callbacks still come (see State).
  state->owner = nullptr;
  state->done = nullptr;
  for (auto& query : state->queries) {
    if (query.request != nullptr) evdns_cancel_request(state->base, query.request);
  }
}

// --- The resolver ------------------------------------------------------------------------------

kj::Maybe<kj::String> DnsResolver::open(event_base* eventBase, const DnsSettings& settings,
                                        kj::Own<DnsResolver>& out) {
  // evdns picks query ids and letter case with libevent's own random generator; seeding it now
  // reads the kernel's randomness before the sandbox could be in the way.
  if (evutil_secure_rng_init() != 0) return kj::str("cannot seed libevent's random numbers");
  evdns_set_log_fn(&logEvdns);
  // Not EVDNS_BASE_INITIALIZE_NAMESERVERS: that would also take resolv.conf's search list and
  // /etc/hosts. DISABLE_WHEN_INACTIVE: an idle resolver does not keep the event loop running.
  evdns_base* base = evdns_base_new(eventBase, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
  if (base == nullptr) return kj::str("cannot set up the DNS resolver (evdns_base_new failed)");
  auto resolver = kj::heap<DnsResolver>(base, settings.timeoutMs, kj::str());

  KJ_IF_MAYBE(server, settings.server) {
    if (evdns_base_nameserver_sockaddr_add(base, server->get(), server->length, 0) != 0) {
      return kj::str("cannot use ", server->toString(), " as the DNS server");
    }
  } else {
    int flags = DNS_OPTION_NAMESERVERS | DNS_OPTION_MISC | DNS_OPTION_NAMESERVERS_NO_DEFAULT;
    int status = evdns_base_resolv_conf_parse(base, flags, settings.resolvConf.cStr());
    if (status == 6 || (status == 0 && evdns_base_count_nameservers(base) == 0)) {
      return kj::str(settings.resolvConf, " names no nameserver; give --dns IP[:PORT]");
    }
    if (status != 0) {
      return kj::str("cannot read ", settings.resolvConf, " (evdns error ", status,
                     "); give --dns IP[:PORT]");
    }
  }
  kj::Vector<kj::String> names;
  for (int i = 0; i < evdns_base_count_nameservers(base); i++) {
    SocketAddress address;
    int length = evdns_base_get_nameserver_addr(base, i, reinterpret_cast<sockaddr*>(
        &address.storage), sizeof(address.storage));
    if (length <= 0 || size_t(length) > sizeof(address.storage)) continue;
    address.length = length;
    names.add(address.toString());
  }
  resolver->servers = kj::strArray(names, ", ");
  if (settings.server == nullptr) {
    resolver->servers = kj::str(resolver->servers, " (from ", settings.resolvConf, ")");
  }

  // The lookup's time, shared by the retransmissions; resolv.conf's own timeout and attempts do
  // not apply, the handshake timeout bounds the whole connection set-up.
  uint32_t perAttemptMs = kj::max(settings.timeoutMs / ATTEMPTS, 100u);
  // evdns holds back queries beyond 64 in flight (32 connections' lookups) without a timeout of
  // their own; a proxy resolving for many clients at once should not queue that early.
  if (evdns_base_set_option(base, "timeout:", decimalSeconds(perAttemptMs).cStr()) != 0 ||
      evdns_base_set_option(base, "attempts:", kj::str(ATTEMPTS).cStr()) != 0 ||
      evdns_base_set_option(base, "max-inflight:", "1024") != 0) {
    return kj::str("cannot set the DNS resolver's options");
  }
  out = kj::mv(resolver);
  return nullptr;
}

DnsResolver::DnsResolver(evdns_base* base, uint32_t timeoutMs, kj::String servers)
    : base(base), timeoutMs(timeoutMs), servers(kj::mv(servers)) {}

DnsResolver::~DnsResolver() noexcept {
  // Lookups still waiting for their cancel callbacks when the program ends keep their few bytes:
  // with 0, evdns frees its requests without calling back into freed connections.
  evdns_base_free(base, 0);
}

kj::Own<DnsLookup> DnsResolver::lookUp(kj::StringPtr name,
                                       kj::Function<void(DnsAnswer&&)> done) {
  auto state = new DnsLookup::State(base, timeoutMs, kj::mv(done));
  evdns_request* (*const resolvers[2])(evdns_base*, const char*, int, evdns_callback_type,
                                       void*) = {&evdns_base_resolve_ipv4,
                                                 &evdns_base_resolve_ipv6};
  for (int i = 0; i < 2; i++) {
    auto& query = state->queries[i];
    query.request = resolvers[i](base, name.cStr(), DNS_QUERY_NO_SEARCH,
                                 &DnsLookup::State::onReply, &query);
    if (query.request == nullptr) {
      query.result = DNS_ERR_UNKNOWN;
    } else {
      state->outstanding++;
    }
  }
  if (state->outstanding == 0) {
    // Neither query could be started (evdns refuses only names it cannot encode).
    delete state;
    KJ_FAIL_REQUIRE("evdns could not start a query", name);
  }
  auto lookup = kj::heap<DnsLookup>(state);
  state->owner = lookup.get();
  return lookup;
}

}  // namespace tlstap
