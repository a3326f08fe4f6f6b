// The signals that end a program or ask it for its counters (SIGTERM, SIGINT, SIGUSR1) are
// blocked from the first line of main() until the program's own handling of them is in place.
// Without this, a service manager's SIGTERM that arrives during start-up (while keys are read,
// ports bound or the recorder started) would kill the process with its default action, status
// 143 and no orderly shutdown. Blocked, the signal waits; once the handlers exist it is handled
// like one that came later: the usual shutdown, status 0.
//
//     int main(...) {
//       holdStartupSignals();
//       ... start-up; install the handlers (libevent EV_SIGNAL events) ...
//       releaseStartupSignals();  // a signal that came meanwhile is handled now
//
// tlstap-recorder never releases them: KJ's UnixEventPort keeps captured signals blocked and
// reads them from a signalfd, which also returns one that was pending before it existed.
// Child processes (the supervisor and its recorders) are started with an empty signal mask.
#pragma once

namespace tlstap {

// Blocks SIGTERM, SIGINT and SIGUSR1 for the calling thread (and every thread it starts).
void holdStartupSignals();

// Unblocks them: a signal that arrived meanwhile is delivered now, to the handlers installed.
void releaseStartupSignals();

}  // namespace tlstap
