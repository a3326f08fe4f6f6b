// The counters line both programs log every --stats-interval seconds and on SIGUSR1:
//
//   tlstap-recorder: info: stats: flows_open=2 flows_total=40 bytes_recorded=1048576 ...
//
// One line of name=value pairs, so that a log shipper or `grep | tr` takes it apart. Each program
// gathers its own counters (the structs that already count them) into StatsFields; this file
// only owns the option, the format and the timer.
#pragma once

#include <stdint.h>
#include <kj/array.h>
#include <kj/async.h>
#include <kj/function.h>
#include <kj/string.h>
#include <kj/timer.h>

#include "common/options.h"

namespace tlstap {

// An hourly line costs nothing and tells an operator, after the fact, that nothing was lost.
constexpr uint32_t DEFAULT_STATS_INTERVAL_SECONDS = 3600;

struct StatsField {
  kj::StringPtr name;
  uint64_t value;
};

// "stats: a=1 b=2"
kj::String formatStats(kj::ArrayPtr<const StatsField> fields);

// Registers --stats-interval SECONDS (0 turns the periodic line off; SIGUSR1 still works).
void addStatsIntervalOption(OptionParser& parser, uint32_t& seconds);

// Calls `report` every `seconds` seconds; never resolves (never calls it if seconds is 0).
kj::Promise<void> reportPeriodically(kj::Timer& timer, uint32_t seconds,
                                     kj::Function<void()>& report);

}  // namespace tlstap
