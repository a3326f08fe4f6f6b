// The last step of each program's start-up (DESIGN.md "Security model"): after everything that
// needs privileges or the file system is done, change user (when started as root), set
// no_new_privs, restrict files (recorder: Landlock) and load the program's seccomp policy.
//
//     kj::Maybe<UserIdentity> user;
//     KJ_IF_MAYBE(error, chooseRunAsUser("--user", options.user, DEFAULT_FRONT_USER, user)) ...
//     ... read keys, bind sockets, start the embedded recorder ...
//     KJ_IF_MAYBE(error, lockDownFront(user, {})) exitWithUsageError(PROGRAM, *error);
#pragma once

#include "sandbox/policies.h"
#include "sandbox/privileges.h"

namespace tlstap {

// Drops to `user` if given (logging it), then no_new_privs and the front's policy.
kj::Maybe<kj::String> lockDownFront(const kj::Maybe<UserIdentity>& user,
                                    const FrontPolicyOptions& options);

// no_new_privs, Landlock on the output directory (if any, and if the kernel has Landlock), and
// the recorder's policy. The recorder drops its user itself before (dropPrivileges()), because
// it creates its first pcap file as that user in between.
kj::Maybe<kj::String> lockDownRecorder(const RecorderPolicyOptions& options);

// The embedded recorder's supervisor, before it starts the first recorder. Started as root it
// stays uid 0, because each recorder it starts needs root for its own start-up (ports below
// 1024, an output directory behind closed parents, files it gives to the recorder's user, the
// change to that user); but it keeps only the capabilities that start-up uses
// (SUPERVISOR_CAPABILITIES), with only CAP_KILL in effect for itself (signals to a recorder
// that runs as another user). Then no_new_privs; Landlock, so that it and its recorders write
// nowhere but beneath `writableDirs` (where the recorders' outputs are); and the supervisor's
// seccomp policy. Its recorders inherit all of it, beneath their own lock-down.
kj::Maybe<kj::String> lockDownSupervisor(kj::ArrayPtr<const int> writableDirs);

}  // namespace tlstap
