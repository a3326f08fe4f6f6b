// SNI routing: without --connect, each connection goes to the host its ClientHello names,
// looked up with libevent's evdns on the worker's event loop.
//
// Everything that reads a file or opens a socket happens in DnsResolver::open(), at start-up:
// the nameserver list (--dns, or /etc/resolv.conf) and one connected UDP socket per nameserver.
// A lookup afterwards only sends and receives on those sockets, so the resolver keeps working
// once the sandbox forbids opening files and sockets (DESIGN.md, "Findings").
//
// Names are taken as fully qualified: no search list, no /etc/hosts. Only valid DNS host names
// are looked up (routableNameError()); the client names the host, and the front never connects
// to anything it did not name.
#pragma once

#include <event2/dns.h>
#include <event2/event.h>
#include <stdint.h>
#include <kj/array.h>
#include <kj/function.h>
#include <kj/memory.h>
#include <kj/string.h>

#include "common/address.h"

namespace tlstap {

// Why `name` (as SNI or --nosni give it: lower case, no trailing dot) is never looked up, or
// nullptr when it may be: it must be a DNS host name (RFC 1123 letters, digits and inner hyphens,
// a top-level label that is not all digits), not an IPv4 address and not a localhost name
// (RFC 6761: that would reach the front's own machine).
kj::Maybe<kj::StringPtr> routableNameError(kj::StringPtr name);

// The addresses of `resolved` a connection may go to: without the unspecified address (0.0.0.0
// or ::, which connect() takes for this machine) and without `front` itself (a name that points
// back at the listener the client came in on would loop). Ports are ignored but for `front`,
// which matches only when `forwardPort` equals its port.
kj::Array<SocketAddress> routableAddresses(kj::ArrayPtr<const SocketAddress> resolved,
                                           const SocketAddress& front, uint16_t forwardPort);

struct DnsSettings {
  kj::Maybe<SocketAddress> server;  // --dns IP[:PORT]; nullptr: the nameservers of resolvConf
  kj::StringPtr resolvConf = "/etc/resolv.conf";
  uint32_t timeoutMs = 5000;        // one lookup, retransmissions included
};

struct DnsAnswer {
  kj::Array<SocketAddress> addresses;  // the A answers, then the AAAA answers; port 0
  // When there is no address: the name does not exist or has no A/AAAA record (true), or the
  // lookup itself failed (false: timeout, server failure), and the cause in a few words.
  bool nameUnknown = false;
  kj::String error;
};

// One lookup in flight. Dropping it before the answer came cancels it: the callback will not
// run. (evdns still calls back, later, with DNS_ERR_CANCEL; the state it needs for that stays
// allocated until then and frees itself.)
class DnsLookup {
public:
  struct State;  // private to dns-resolver.c++
  explicit DnsLookup(State* state) : state(state) {}  // made by DnsResolver::lookUp()
  ~DnsLookup() noexcept;
  KJ_DISALLOW_COPY(DnsLookup);

private:
  friend struct State;
  State* state;  // nullptr once the answer has been delivered
};

class DnsResolver {
public:
  // Start-up, before any sandbox: one evdns_base on `base`. Returns why it cannot be set up
  // (one line, without an option name), or nullptr and the resolver in `out`.
  static kj::Maybe<kj::String> open(event_base* base, const DnsSettings& settings,
                                    kj::Own<DnsResolver>& out);
  ~DnsResolver() noexcept;
  KJ_DISALLOW_COPY(DnsResolver);

  // Asks for the A and AAAA records of `name` at once. `done` runs once, from the event loop,
  // when both have been answered, unless the returned lookup is dropped first. Exceptions from
  // `done` are logged, never passed to libevent.
  kj::Own<DnsLookup> lookUp(kj::StringPtr name, kj::Function<void(DnsAnswer&&)> done);

  // Where the queries go, for the start-up log line, e.g. "127.0.0.1:5353".
  kj::StringPtr description() const { return servers; }

  // Takes over `base` (made by open()).
  DnsResolver(evdns_base* base, uint32_t timeoutMs, kj::String servers);

private:
  evdns_base* base;
  uint32_t timeoutMs;
  kj::String servers;
};

}  // namespace tlstap
