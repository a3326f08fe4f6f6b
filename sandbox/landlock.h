// Landlock for the recorder: file system writes only beneath its output directory; and for the
// supervisor of the embedded recorder: writes only where its recorders write.
//
// seccomp checks that openat()/unlinkat() use the output directory's fd, but it cannot read the
// path: openat(dirfd, "/etc/x") or "../x" would leave the directory. Landlock closes that on
// kernels that have it (5.13 and later): creating, writing, truncating, removing and reading
// files is allowed only beneath the directory. Without Landlock the recorder still runs; what
// holds then is written in tlstap-recorder(8), SECURITY.
#pragma once

#include <kj/array.h>
#include <kj/string.h>

namespace tlstap {

// The Landlock ABI version the kernel offers, 0 if none.
int landlockAbiVersion();

// Restricts this process (and its future threads) to `dirFd` as above. Needs no_new_privs (or
// CAP_SYS_ADMIN). Returns the reason on failure; sets `applied` false, without error, when the
// kernel has no Landlock.
kj::Maybe<kj::String> restrictFilesToDirectory(int dirFd, bool& applied);

// For the embedded recorder's supervisor, which keeps uid 0, and so for every recorder it starts
// (a Landlock domain is inherited and never lifted): nothing may be created, written, truncated,
// renamed or removed except beneath `dirFds` (the recorder's output directories; O_PATH fds
// will do). Reading and executing stay allowed (a recorder loads its program and libraries and
// reads /etc/passwd). Needs no_new_privs (or CAP_SYS_ADMIN). `applied` as above.
kj::Maybe<kj::String> restrictWritesBeneath(kj::ArrayPtr<const int> dirFds, bool& applied);

}  // namespace tlstap
