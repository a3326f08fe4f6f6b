// The command line of tlstap-recorder (see man/tlstap-recorder.8).
#pragma once

#include <kj/string.h>
#include <kj/vector.h>

#include "common/address.h"
#include "common/link-timeout.h"
#include "common/options.h"
#include "common/stats.h"
#include "common/tls-link.h"

namespace tlstap {

struct RecorderOptions {
  // Where fronts connect: unix sockets, or IP:PORT (TLS with the link options; plain TCP only on
  // loopback).
  kj::Vector<SocketAddress> listen;
  TlsLinkOptions link;  // --link-cert, --link-ca, --link-pin, --link-psk
  uint32_t linkTimeoutSeconds = DEFAULT_LINK_TIMEOUT_SECONDS;  // --link-timeout
  // An already connected stream (the front's end of a socket pair) to serve; the recorder exits
  // when it closes. This is how tlstap-front runs its embedded recorder.
  kj::Maybe<int> connectionFd;
  // Set by the supervisor (supervisor.h) on a recorder it starts in place of one that died: the
  // -w FILE of its predecessor exists, so it writes the first free FILE-N (restartedWriteFile()).
  bool restarted = false;

  kj::Maybe<kj::String> outputDir;  // -o: hourly rotated files
  kj::Maybe<kj::String> writeFile;  // -w: one file
  kj::Vector<SocketAddress> pcapOverIp;       // --pcapoverip listeners
  kj::Vector<kj::String> pcapOverIpConnect;   // --pcapoveripconnect targets (HOST:PORT)
  uint32_t autoflushSeconds = 1;
  uint64_t retainHours = 0;  // --retain-hours N (0: keep files of any age)
  uint64_t maxBytes = 0;     // --max-bytes SIZE (0: no limit)
  uint32_t statsIntervalSeconds = DEFAULT_STATS_INTERVAL_SECONDS;  // --stats-interval
  bool verbose = false;

  // Started as root: the user to run as after start-up (default tlstap-rec).
  kj::Maybe<kj::String> user;
  // Who may connect to a unix --listen socket (checked with SO_PEERCRED). Empty: root, the
  // recorder's own user and the front's default user tlstap (if it exists).
  kj::Vector<kj::String> allowUsers;
};

// Registers every option of tlstap-recorder, and --config FILE, which reads them from a file.
void addRecorderOptions(OptionParser& parser, RecorderOptions& options);

// The file a --restarted recorder writes for -w FILE: the first of FILE-1.pcap, FILE-2.pcap, ...
// (FILE-1, FILE-2, ... when FILE does not end in .pcap) that does not exist yet.
kj::String restartedWriteFile(kj::StringPtr path);

// Checks that need every option at once. Returns the first problem, naming the option.
kj::Maybe<kj::String> checkRecorderOptions(const RecorderOptions& options);

}  // namespace tlstap
