#include "startup-signals.h"

#include <signal.h>

namespace tlstap {

namespace {

sigset_t startupSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  return set;
}

}  // namespace

void holdStartupSignals() {
  sigset_t set = startupSignals();
  sigprocmask(SIG_BLOCK, &set, nullptr);
}

void releaseStartupSignals() {
  sigset_t set = startupSignals();
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

}  // namespace tlstap
