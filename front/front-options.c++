#include "front-options.h"

#include <arpa/inet.h>
#include <string.h>
#include <unistd.h>

#include "client-hello.h"
#include "common/config-file.h"

namespace tlstap {

namespace {

kj::Maybe<kj::String> portError(kj::StringPtr text) {
  return kj::str("'", text, "' is not a port (1-65535)");
}

// A numeric IPv4 or IPv6 address (brackets around IPv6 allowed) with the given port.
bool parseIp(kj::StringPtr text, uint16_t port, SocketAddress& out) {
  kj::String unbracketed;
  if (text.size() >= 2 && text.startsWith("[") && text.endsWith("]")) {
    unbracketed = kj::heapString(text.slice(1, text.size() - 1));
    text = unbracketed;
  }
  out = SocketAddress();
  auto v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  if (inet_pton(AF_INET, text.cStr(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.length = sizeof(*v4);
    return true;
  }
  auto v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (inet_pton(AF_INET6, text.cStr(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out.length = sizeof(*v6);
    return true;
  }
  return false;
}

bool isIpLiteral(kj::StringPtr text) {
  SocketAddress ignored;
  return parseIp(text, 0, ignored);
}

// A host the front connects to: a host name or a numeric address.
kj::Maybe<kj::String> checkHost(kj::StringPtr host) {
  if (isIpLiteral(host) || isValidHostName(host)) return nullptr;
  return kj::str("'", host, "' is not a host name or an IP address");
}

// "HOST:PORT" or "[IPv6]:PORT"; the name is resolved later, when it is used.
kj::Maybe<kj::String> checkHostPort(kj::StringPtr text) {
  kj::StringPtr host, port;
  kj::String hostStorage;
  if (text.startsWith("[")) {
    KJ_IF_MAYBE(close, text.findFirst(']')) {
      if (*close + 1 < text.size() && text[*close + 1] == ':') {
        hostStorage = kj::heapString(text.slice(0, *close + 1));
        host = hostStorage;
        port = text.slice(*close + 2);
      }
    }
  } else KJ_IF_MAYBE(colon, text.findLast(':')) {
    hostStorage = kj::heapString(text.slice(0, *colon));
    host = hostStorage;
    port = text.slice(*colon + 1);
  }
  if (host.size() == 0) return kj::str("'", text, "': expected HOST:PORT");
  if (host.findFirst(':') != nullptr && !host.startsWith("[")) {
    return kj::str("'", text, "': write IPv6 addresses as [ADDRESS]:PORT");
  }
  if (parseUnsigned(port, 1, 65535) == nullptr) return portError(port);
  return checkHost(host);
}

kj::Maybe<kj::String> setOnce(kj::Maybe<kj::String>& field, kj::StringPtr value) {
  if (field != nullptr) return kj::str("given twice");
  if (value.size() == 0) return kj::str("empty value");
  field = kj::heapString(value);
  return nullptr;
}

kj::Maybe<kj::String> setNumber(uint32_t& field, kj::StringPtr value, uint32_t min,
                                uint32_t max, kj::StringPtr what) {
  KJ_IF_MAYBE(number, parseUnsigned(value, min, max)) {
    field = uint32_t(*number);
    return nullptr;
  }
  return kj::str("'", value, "' is not ", what, " (", min, "-", max, ")");
}

bool isPortText(kj::StringPtr text) {
  if (text.size() == 0) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Lets --config warn about a file other users can read when `password` is written out in it.
void noteIfLiteral(OptionParser& parser, kj::StringPtr password) {
  if (isLiteralPassword(password)) parser.noteLiteralSecret();
}

bool sameAddress(const SocketAddress& a, const SocketAddress& b) {
  return a.length == b.length && memcmp(&a.storage, &b.storage, a.length) == 0;
}

}  // namespace

uint32_t defaultThreadCount() {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  return cores < 1 ? 1 : uint32_t(cores);
}

kj::Maybe<kj::String> parsePortMapping(kj::StringPtr text, PortMapping& out) {
  kj::Vector<kj::String> fields;
  size_t start = 0;
  for (;;) {
    auto left = text.slice(start);
    size_t length = left.findFirst(',').orDefault(left.size());
    fields.add(kj::heapString(left.slice(0, length)));
    if (length == left.size()) break;
    start += length + 1;
  }
  auto expected = [&]() {
    return kj::str("'", text, "': expected [IP,]LISTEN,PCAPPORT[,FORWARD]");
  };
  if (fields.size() == 1 && !isPortText(text)) {
    return kj::str("'", text, "' is not a port (expected [IP,]LISTEN,PCAPPORT[,FORWARD])");
  }
  if (fields.size() < 2 || fields.size() > 4) return expected();
  // "IP,LISTEN" forgot PCAPPORT; saying the address is not a port would mislead.
  if (fields.size() == 2 && isIpLiteral(fields[0])) return expected();
  // Three fields are "IP,LISTEN,PCAPPORT" or "LISTEN,PCAPPORT,FORWARD": an address is never
  // all digits.
  bool hasIp = fields.size() == 4 || (fields.size() == 3 && !isPortText(fields[0]));
  kj::StringPtr ip = hasIp ? fields[0].asPtr() : "0.0.0.0";
  auto ports = fields.asPtr().slice(hasIp ? 1 : 0, fields.size());
  if (ports.size() < 2) return expected();

  uint16_t values[3] = {0, 0, 0};
  for (size_t i = 0; i < ports.size(); i++) {
    KJ_IF_MAYBE(port, parseUnsigned(ports[i], 1, 65535)) {
      values[i] = uint16_t(*port);
    } else {
      return portError(ports[i]);
    }
  }
  if (!parseIp(ip, values[0], out.listen)) {
    return kj::str("'", ip, "' is not an IPv4 or IPv6 address");
  }
  out.pcapPort = values[1];
  out.forwardPort = ports.size() == 3 ? values[2] : values[0];
  return nullptr;
}

void addFrontOptions(OptionParser& parser, FrontOptions& options) {
  auto* o = &options;
  auto* p = &parser;

  // Listening and forwarding.
  parser.addOption("", 'p', "[IP,]LISTEN,PCAPPORT[,FORWARD]",
                   "listen on IP (default 0.0.0.0) port LISTEN; record as server port PCAPPORT; "
                   "forward to port FORWARD (default LISTEN). Repeatable.",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    PortMapping mapping;
    KJ_IF_MAYBE(error, parsePortMapping(value, mapping)) return kj::mv(*error);
    o->ports.add(mapping);
    return nullptr;
  });
  parser.addFlag("terminate", 0, "forward plaintext to the backend (no TLS towards it)",
                 [o]() { o->terminate = true; });
  parser.addOption("connect", 0, "HOST",
                   "forward every connection to HOST (port FORWARD); without it, to the host "
                   "the ClientHello names (SNI, or --nosni), resolved by DNS",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    KJ_IF_MAYBE(error, checkHost(value)) return kj::mv(*error);
    return setOnce(o->connectHost, value);
  });
  parser.addOption("nosni", 0, "NAME", "treat a ClientHello without SNI as if it named NAME",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    if (!isValidHostName(value)) return kj::str("'", value, "' is not a host name");
    return setOnce(o->noSni, lowerCaseAscii(value));
  });

  // Certificates.
  parser.addOption("servercert", 0, "NAME[,NAME...]:FILE[:PASSWORD]",
                   "certificate and key for those names (*.domain wildcards): PKCS#12, PEM "
                   "chain+key, or CHAIN.pem+KEY.pem. PASSWORD: file:PATH, env:NAME, fd:N. "
                   "Repeatable.",
                   [o, p](kj::StringPtr value) -> kj::Maybe<kj::String> {
    // Only the shape is checked here; the file is read by CertStore once parsing is done.
    KJ_IF_MAYBE(colon, value.findFirst(':')) {
      if (*colon == 0) return kj::str("'", value, "': no NAME before ':'");
      auto rest = value.slice(*colon + 1);
      if (rest.size() == 0 || rest[0] == ':') return kj::str("'", value, "': no FILE");
      KJ_IF_MAYBE(second, rest.findFirst(':')) noteIfLiteral(*p, rest.slice(*second + 1));
      auto origin = p->configFile() == nullptr ? SecretOrigin::COMMAND_LINE
                                               : SecretOrigin::CONFIG_FILE;
      o->serverCerts.add(ServerCertSpec{kj::heapString(value), origin});
      return nullptr;
    }
    return kj::str("'", value, "': expected NAME[,NAME...]:FILE[:PASSWORD]");
  });
  parser.addOption("cacert", 0, "load:FILE[:PASSWORD]",
                   "root CA that forges certificates for names no --servercert covers",
                   [o, p](kj::StringPtr value) -> kj::Maybe<kj::String> {
    if (!value.startsWith("load:") || value.size() == 5 || value[5] == ':') {
      return kj::str("'", value, "': expected load:FILE[:PASSWORD]");
    }
    KJ_IF_MAYBE(colon, value.slice(5).findFirst(':')) noteIfLiteral(*p, value.slice(6 + *colon));
    o->caCertOrigin = p->configFile() == nullptr ? SecretOrigin::COMMAND_LINE
                                                 : SecretOrigin::CONFIG_FILE;
    return setOnce(o->caCert, value);
  });
  parser.addOption("", 'x', "FILE", "export the root CA certificate (DER) to FILE",
                   [o](kj::StringPtr value) { return setOnce(o->exportCa, value); });
  parser.addOption("certhttp", 0, "PORT", "serve the root CA certificate over HTTP on PORT",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    if (o->certHttpPort != nullptr) return kj::str("given twice");
    KJ_IF_MAYBE(port, parseUnsigned(value, 1, 65535)) {
      o->certHttpPort = uint16_t(*port);
      return nullptr;
    }
    return portError(value);
  });
  parser.addOption("cn", 0, "NAME", "Common Name of a generated root CA",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    // X.509 upper bound for a Common Name (RFC 5280, ub-common-name).
    if (value.size() > 64) return kj::str("longer than 64 characters");
    return setOnce(o->caCommonName, value);
  });
  parser.addOption("cadir", 0, "DIR", "where a generated root CA is kept",
                   [o](kj::StringPtr value) { return setOnce(o->caDir, value); });

  // Recording.
  parser.addOption("", 'o', "DIR", "write hourly rotated pcap files into DIR",
                   [o](kj::StringPtr value) { return setOnce(o->outputDir, value); });
  parser.addOption("", 'w', "FILE", "write all packets into one pcap FILE",
                   [o](kj::StringPtr value) { return setOnce(o->writeFile, value); });
  parser.addOption("pcapoverip", 0, "[IP:]PORT",
                   "serve PCAP-over-IP to consumers connecting here. Repeatable.",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    SocketAddress ignored;
    KJ_IF_MAYBE(error, parseOptionalIpPort(value, "0.0.0.0", ignored)) return kj::mv(*error);
    o->pcapOverIp.add(kj::heapString(value));
    return nullptr;
  });
  parser.addOption("pcapoveripconnect", 0, "HOST:PORT",
                   "send PCAP-over-IP to a consumer listening at HOST:PORT. Repeatable.",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    KJ_IF_MAYBE(error, checkHostPort(value)) return kj::mv(*error);
    o->pcapOverIpConnect.add(kj::heapString(value));
    return nullptr;
  });
  parser.addOption("autoflush", 0, "SECONDS", "flush pcap output at least this often (1)",
                   [o](kj::StringPtr value) {
    return setNumber(o->autoflushSeconds, value, 1, 3600, "a number of seconds");
  });
  parser.addOption("retain-hours", 0, "N",
                   "with -o: delete capture files last written more than N hours ago",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    KJ_IF_MAYBE(hours, parseUnsigned(value, 1, 24 * 365 * 100)) {
      o->retainHours = *hours;
      return nullptr;
    }
    return kj::str("'", value, "' is not a number of hours (1-876000)");
  });
  parser.addOption("max-bytes", 0, "SIZE",
                   "with -o: delete the oldest capture files to keep their total within SIZE "
                   "(K, M, G, T suffixes)",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    KJ_IF_MAYBE(bytes, parseByteSize(value)) {
      o->maxBytes = *bytes;
      return nullptr;
    }
    return kj::str("'", value, "' is not a size (e.g. 500M, 20G, 2T)");
  });
  parser.addOption("recorder", 0, "ADDR",
                   "ship flows to an external tlstap-recorder: unix:/path or HOST:PORT (TLS)",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    if (value.startsWith("unix:")) {
      SocketAddress ignored;
      KJ_IF_MAYBE(error, parseListenAddress(value, ignored)) return kj::mv(*error);
    } else {
      KJ_IF_MAYBE(error, checkHostPort(value)) return kj::mv(*error);
    }
    return setOnce(o->recorderAddress, value);
  });
  addTlsLinkOptions(parser, o->link);
  addLinkTimeoutOption(parser, o->linkTimeoutSeconds);
  parser.addOption("recorder-down", 0, "block|pass",
                   "when the recorder is gone past the buffer: hold traffic (block, default) "
                   "or relay it unrecorded (pass)",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    if (value == "block") {
      o->recorderDown = RecorderDown::BLOCK;
    } else if (value == "pass") {
      o->recorderDown = RecorderDown::PASS;
    } else {
      return kj::str("'", value, "': expected block or pass");
    }
    return nullptr;
  });

  // Backends (re-encryption).
  parser.addOption("backend-ca", 0, "FILE", "trust anchors (PEM) for backend certificates",
                   [o](kj::StringPtr value) { return setOnce(o->backendCa, value); });
  parser.addFlag("insecure", 0, "do not verify backend certificates",
                 [o]() { o->insecure = true; });
  parser.addOption("dns", 0, "IP[:PORT]",
                   "DNS server for routing by SNI (port 53 by default; default: the nameservers "
                   "of /etc/resolv.conf)",
                   [o](kj::StringPtr value) -> kj::Maybe<kj::String> {
    if (o->dns != nullptr) return kj::str("given twice");
    SocketAddress address;
    if (!parseIp(value, 53, address)) {
      KJ_IF_MAYBE(error, parseIpPort(value, address)) {
        // A bad port is worth naming; anything else is not of the form at all.
        if (error->endsWith("is not a port (1-65535)")) return kj::mv(*error);
        return kj::str("'", value, "' is not an IP address with an optional port (IP[:PORT], "
                       "[IPv6]:PORT)");
      }
    }
    if (address.isUnspecified()) {
      return kj::str("'", value, "' is not a DNS server (the unspecified address)");
    }
    o->dns = address;
    return nullptr;
  });

  // Limits and running.
  parser.addOption("max-connections", 0, "N", "most client connections at once (10000)",
                   [o](kj::StringPtr value) {
    return setNumber(o->maxConnections, value, 1, 10000000, "a number of connections");
  });
  parser.addOption("handshake-timeout", 0, "SECONDS",
                   "close a client that has not finished its TLS handshake by then (10)",
                   [o](kj::StringPtr value) {
    return setNumber(o->handshakeTimeoutSeconds, value, 1, 3600, "a number of seconds");
  });
  parser.addOption("idle-timeout", 0, "SECONDS",
                   "close a connection with no traffic for this long (300)",
                   [o](kj::StringPtr value) {
    return setNumber(o->idleTimeoutSeconds, value, 1, 7 * 86400, "a number of seconds");
  });
  parser.addOption("threads", 0, "N", "worker threads (default: the number of cores)",
                   [o](kj::StringPtr value) {
    return setNumber(o->threads, value, 1, 1024, "a number of threads");
  });
  addStatsIntervalOption(parser, o->statsIntervalSeconds);
  parser.addOption("user", 0, "USER",
                   "started as root, run as USER after start-up (default tlstap)",
                   [o](kj::StringPtr value) { return setOnce(o->user, value); });
  parser.addOption("recorder-user", 0, "USER",
                   "started as root, run the embedded recorder as USER (default tlstap-rec)",
                   [o](kj::StringPtr value) { return setOnce(o->recorderUser, value); });
  addConfigOption(parser);
  parser.addFlag("", 'v', "verbose: log every connection", [o]() { o->verbose = true; });
}

kj::Maybe<kj::String> checkFrontOptions(const FrontOptions& options) {
  if (options.ports.size() == 0) {
    return kj::str("-p: at least one is needed ([IP,]LISTEN,PCAPPORT[,FORWARD])");
  }
  for (size_t i = 0; i < options.ports.size(); i++) {
    for (size_t j = 0; j < i; j++) {
      if (sameAddress(options.ports[i].listen, options.ports[j].listen)) {
        return kj::str("-p: ", options.ports[i].listen.toString(), " is given twice");
      }
    }
  }

  // Recording: exactly one place the flows go.
  bool localOutputs = options.outputDir != nullptr || options.writeFile != nullptr ||
                      options.pcapOverIp.size() > 0 || options.pcapOverIpConnect.size() > 0;
  if (options.outputDir != nullptr && options.writeFile != nullptr) {
    return kj::str("-o and -w cannot be used together");
  }
  KJ_IF_MAYBE(recorder, options.recorderAddress) {
    if (localOutputs) {
      return kj::str("--recorder: -o, -w, --pcapoverip and --pcapoveripconnect belong on the "
                     "external recorder's command line, not here");
    }
    if (options.recorderUser != nullptr) {
      return kj::str("--recorder-user: only for the embedded recorder (an external recorder "
                     "takes its own --user)");
    }
    if (options.retainHours > 0 || options.maxBytes > 0) {
      return kj::str(options.retainHours > 0 ? "--retain-hours" : "--max-bytes",
                     ": belongs on the external recorder's command line, not here");
    }
    if (options.link.given()) {
      if (recorder->startsWith("unix:")) {
        return kj::str(options.link.optionName(), ": only for a TCP --recorder (a unix socket "
                       "is checked with SO_PEERCRED)");
      }
      KJ_IF_MAYBE(error, checkTlsLinkOptions(options.link)) return kj::mv(*error);
    }
  } else {
    if (!localOutputs) {
      return kj::str("nothing would be recorded: give -o DIR, -w FILE, --pcapoverip, "
                     "--pcapoveripconnect or --recorder ADDR");
    }
    if (options.link.given()) {
      return kj::str(options.link.optionName(), ": needs --recorder HOST:PORT");
    }
    if (options.outputDir == nullptr && (options.retainHours > 0 || options.maxBytes > 0)) {
      return kj::str(options.retainHours > 0 ? "--retain-hours" : "--max-bytes",
                     ": needs -o DIR (only rotated files are deleted)");
    }
  }

  // Backends.
  if (options.insecure && options.backendCa != nullptr) {
    return kj::str("--insecure and --backend-ca contradict each other");
  }
  if (options.terminate && (options.insecure || options.backendCa != nullptr)) {
    return kj::str(options.insecure ? "--insecure" : "--backend-ca",
                   ": with --terminate the backend is plain TCP, nothing to verify");
  }
  // --dns only matters when routing by SNI; with --connect it would be silently unused.
  if (options.dns != nullptr && options.connectHost != nullptr) {
    return kj::str("--dns: only used when routing by SNI; not with --connect HOST");
  }

  // The root CA: loaded, or generated and kept in --cadir; not both.
  if (options.caCert != nullptr) {
    if (options.caCommonName != nullptr) {
      return kj::str("--cn: names a generated root CA; --cacert loads one that has its name");
    }
    if (options.caDir != nullptr) {
      return kj::str("--cadir: keeps a generated root CA; with --cacert none is generated");
    }
  }
  return nullptr;
}

}  // namespace tlstap
