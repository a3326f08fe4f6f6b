// Wall-clock time in the unit the recording contract uses: microseconds since the Unix epoch.
#pragma once

#include <stdint.h>
#include <time.h>

namespace tlstap {

inline int64_t wallClockUs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

}  // namespace tlstap
