// The command line of tlstap-recorder (see man/tlstap-recorder.8).
#pragma once

#include <kj/string.h>
#include <kj/vector.h>

#include "common/address.h"
#include "common/options.h"
#include "common/stats.h"

namespace tlstap {

struct RecorderOptions {
  // Where fronts connect: unix sockets, or IP:PORT (loopback only until the TLS link exists).
  kj::Vector<SocketAddress> listen;
  // An already connected stream (the front's end of a socket pair) to serve; the recorder exits
  // when it closes. This is how tlstap-front runs its embedded recorder.
  kj::Maybe<int> connectionFd;

  kj::Maybe<kj::String> outputDir;  // -o: hourly rotated files
  kj::Maybe<kj::String> writeFile;  // -w: one file
  kj::Vector<SocketAddress> pcapOverIp;       // --pcapoverip listeners
  kj::Vector<kj::String> pcapOverIpConnect;   // --pcapoveripconnect targets (HOST:PORT)
  uint32_t autoflushSeconds = 1;
  uint64_t retainHours = 0;  // --retain-hours N (0: keep files of any age)
  uint64_t maxBytes = 0;     // --max-bytes SIZE (0: no limit)
  uint32_t statsIntervalSeconds = DEFAULT_STATS_INTERVAL_SECONDS;  // --stats-interval
  bool verbose = false;
};

// Registers every option of tlstap-recorder, and --config FILE, which reads them from a file.
void addRecorderOptions(OptionParser& parser, RecorderOptions& options);

// Checks that need every option at once. Returns the first problem, naming the option.
kj::Maybe<kj::String> checkRecorderOptions(const RecorderOptions& options);

}  // namespace tlstap
