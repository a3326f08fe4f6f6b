// Who tlstap-recorder runs as and who may connect to it (DESIGN.md "Security model"):
//
// - Started as root it drops to --user (default tlstap-rec) after binding its sockets and
//   opening its outputs. What it made as root (the -o directory if it created it, the -w file,
//   its unix socket files) is given to that user, since the recorder goes on creating hourly
//   files after the drop.
// - A unix --listen socket is mode 0660 with the group of the first --allow-user (default: the
//   front's default user tlstap), or 0600 when there is no such group; and every front that
//   connects is checked with SO_PEERCRED against root, the recorder's own user and the
//   --allow-user users (default tlstap, if it exists).
#pragma once

#include <sys/types.h>
#include <kj/array.h>
#include <kj/string.h>

#include "recorder/recorder-options.h"
#include "sandbox/privileges.h"

namespace tlstap {

struct RecorderIdentity {
  kj::Maybe<UserIdentity> runAs;  // started as root: the user to drop to
  kj::Array<uid_t> allowedPeers;  // uids a unix --listen socket accepts
  kj::Maybe<gid_t> socketGroup;   // group of the socket files (mode 0660), if any
};

// Looks up every user named by --user and --allow-user (before lock-down). Returns
// "--option: cause" on failure.
kj::Maybe<kj::String> chooseRecorderIdentity(const RecorderOptions& options,
                                             RecorderIdentity& out);

// Gives a unix socket file just bound its owner, group and mode as described above.
kj::Maybe<kj::String> secureUnixSocket(kj::StringPtr path, const RecorderIdentity& identity);

// Gives a file or directory the recorder created as root to the user it will run as (no-op when
// it does not change user). `path` is relative to `dirFd` (AT_FDCWD: to the working directory);
// a symbolic link is not followed.
kj::Maybe<kj::String> giveToRecorderUser(int dirFd, kj::StringPtr path,
                                         const RecorderIdentity& identity);

}  // namespace tlstap
