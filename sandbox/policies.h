// The seccomp policy of each program (one function per process role, in the style of relayd's
// and OpenSSH's sandboxes) and the rules both share. Each file is a flat list grouped by
// purpose, with who needs each rule; everything else kills the process.
#pragma once

#include "sandbox/seccomp-policy.h"

namespace tlstap {

// What both programs do after lock-down: memory, the descriptors they already hold, event
// loops, time, signals, randomness. (baseline-policy.c++)
void addBaselineRules(SeccompPolicy& policy);

struct FrontPolicyOptions {
  // Worker threads exist (clone with CLONE_THREAD allowed); otherwise any clone kills.
  bool threads = false;
  // --recorder unix:/path: the front reconnects to that recorder after it restarts, which needs
  // a new unix stream socket; otherwise any unix socket kills.
  bool unixRecorder = false;
};
// tlstap-front: relay between accepted sockets and backends it connects to; no files, no
// programs, no processes, no unix sockets. (front-policy.c++)
void addFrontRules(SeccompPolicy& policy, const FrontPolicyOptions& options);

struct RecorderPolicyOptions {
  // The -o directory, opened before lock-down: the only place files are created and removed.
  // -1 when there is none (-w FILE is opened before lock-down; no file is created later).
  int outputDirFd = -1;
};
// tlstap-recorder: RPC from fronts, pcap files in its output directory, PCAP-over-IP.
// (recorder-policy.c++)
void addRecorderRules(SeccompPolicy& policy, const RecorderPolicyOptions& options);

// The embedded recorder's supervisor (tlstap-recorder --supervise): starting recorders and
// handing out their links; and, since a filter is inherited, all that a recorder it starts does
// before and after its own lock-down. (supervisor-policy.c++)
void addSupervisorRules(SeccompPolicy& policy);

}  // namespace tlstap
