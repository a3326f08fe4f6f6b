#include "stats.h"

#include <kj/vector.h>

namespace tlstap {

kj::String formatStats(kj::ArrayPtr<const StatsField> fields) {
  kj::Vector<kj::String> parts;
  for (auto& field : fields) parts.add(kj::str(field.name, "=", field.value));
  return kj::str("stats: ", kj::strArray(parts, " "));
}

void addStatsIntervalOption(OptionParser& parser, uint32_t& seconds) {
  parser.addOption("stats-interval", 0, "SECONDS",
                   "log a line of counters this often (default 3600; 0: only on SIGUSR1)",
                   [&seconds](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     KJ_IF_MAYBE(number, parseUnsigned(value, 0, 7 * 86400)) {
                       seconds = uint32_t(*number);
                       return nullptr;
                     }
                     return kj::str("'", value, "' is not a number of seconds (0-604800)");
                   });
}

kj::Promise<void> reportPeriodically(kj::Timer& timer, uint32_t seconds,
                                     kj::Function<void()>& report) {
  if (seconds == 0) return kj::NEVER_DONE;
  return timer.afterDelay(seconds * kj::SECONDS).then([&timer, seconds, &report]() {
    report();
    return reportPeriodically(timer, seconds, report);
  });
}

}  // namespace tlstap
