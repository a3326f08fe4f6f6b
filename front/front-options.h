// The command line of tlstap-front (DESIGN.md, "Command line"), PolarProxy-compatible where the
// two overlap. Parsing checks each value on its own; checkFrontOptions() then checks the
// combination. Files are not opened here: main() loads --servercert after parsing.
#pragma once

#include <stdint.h>
#include <kj/string.h>
#include <kj/vector.h>

#include "common/address.h"
#include "common/link-timeout.h"
#include "common/options.h"
#include "common/password.h"
#include "common/stats.h"
#include "common/tls-link.h"

namespace tlstap {

// "-p [IP,]LISTEN,PCAPPORT[,FORWARD]"
struct PortMapping {
  SocketAddress listen;  // IP (default 0.0.0.0) and LISTEN
  uint16_t pcapPort;     // the server port written into the capture
  uint16_t forwardPort;  // the backend port; LISTEN when not given
};

enum class RecorderDown { BLOCK, PASS };

// "--servercert NAME[,NAME...]:FILE[:PASSWORD]", and where it was written: a literal PASSWORD
// is warned about on the command line, not in a config file.
struct ServerCertSpec {
  kj::String spec;
  SecretOrigin origin;
};

// The number of online cores, at least 1: the default of --threads.
uint32_t defaultThreadCount();

struct FrontOptions {
  kj::Vector<PortMapping> ports;
  bool terminate = false;
  kj::Maybe<kj::String> connectHost;   // --connect HOST (a host name or a numeric address)
  kj::Maybe<kj::String> noSni;         // --nosni NAME (lower case)
  kj::Vector<ServerCertSpec> serverCerts;  // loaded later into CertStore by main

  // Recording: handed to the embedded recorder, or --recorder for an external one.
  kj::Maybe<kj::String> outputDir;        // -o DIR
  kj::Maybe<kj::String> writeFile;        // -w FILE
  kj::Maybe<kj::String> recorderAddress;  // --recorder unix:/path or HOST:PORT
  TlsLinkOptions link;                    // --link-cert/-ca/-pin/-psk: TLS link to the recorder
  kj::Vector<kj::String> pcapOverIp;         // --pcapoverip [IP:]PORT, checked
  kj::Vector<kj::String> pcapOverIpConnect;  // --pcapoveripconnect HOST:PORT, checked
  uint32_t autoflushSeconds = 1;
  uint64_t retainHours = 0;  // --retain-hours N, passed to the embedded recorder
  uint64_t maxBytes = 0;     // --max-bytes SIZE, passed to the embedded recorder
  RecorderDown recorderDown = RecorderDown::BLOCK;  // --recorder-down block|pass
  uint32_t linkTimeoutSeconds = DEFAULT_LINK_TIMEOUT_SECONDS;  // --link-timeout

  bool verbose = false;
  uint32_t maxConnections = 10000;        // --max-connections N
  uint32_t handshakeTimeoutSeconds = 10;  // --handshake-timeout S
  uint32_t idleTimeoutSeconds = 300;      // --idle-timeout S
  uint32_t threads = defaultThreadCount();  // --threads N
  uint32_t statsIntervalSeconds = DEFAULT_STATS_INTERVAL_SECONDS;  // --stats-interval, both logs

  // Re-encryption and the root CA: parsed and stored for the issues that implement them;
  // checkFrontOptions() refuses the ones not implemented yet.
  kj::Maybe<kj::String> backendCa;      // --backend-ca FILE
  bool insecure = false;                // --insecure
  kj::Maybe<SocketAddress> dns;         // --dns IP[:PORT] (port 53 by default)
  kj::Maybe<kj::String> caDir;          // --cadir DIR
  kj::Maybe<kj::String> caCert;         // --cacert load:FILE[:PASSWORD], the whole spec
  SecretOrigin caCertOrigin = SecretOrigin::COMMAND_LINE;
  kj::Maybe<kj::String> exportCa;       // -x FILE
  kj::Maybe<uint16_t> certHttpPort;     // --certhttp PORT
  kj::Maybe<kj::String> caCommonName;   // --cn NAME
  kj::Maybe<kj::String> user;           // --user USER (the front, after start-up as root)
  kj::Maybe<kj::String> recorderUser;   // --recorder-user USER (the embedded recorder)
};

// Registers every option of tlstap-front, with its help text, storing into `options` (which
// must outlive the parser's parse()), and --config FILE, which reads options from a file.
void addFrontOptions(OptionParser& parser, FrontOptions& options);

// Checks across options after parsing; returns one line naming the option(s), or nullptr.
kj::Maybe<kj::String> checkFrontOptions(const FrontOptions& options);

// "[IP,]LISTEN,PCAPPORT[,FORWARD]"; the error (without the "-p: " prefix) or nullptr.
kj::Maybe<kj::String> parsePortMapping(kj::StringPtr text, PortMapping& out);

}  // namespace tlstap
