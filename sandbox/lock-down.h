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

}  // namespace tlstap
