// Who a program runs as after start-up, and the drop to that user.
//
// Both programs start (often as root, to bind ports below 1024 and read root-owned keys), do
// everything that needs privileges, then drop for good: supplementary groups, gid, uid, then
// no_new_privs so nothing they could still execute regains any. Started as an ordinary user
// there is nobody to change to; no_new_privs and the seccomp policy still apply.
#pragma once

#include <sys/types.h>
#include <kj/array.h>
#include <kj/string.h>

namespace tlstap {

// The system users a root start drops to when --user is not given: two different users, so the
// front (which holds the keys) and the recorder never share a uid.
constexpr const char* DEFAULT_FRONT_USER = "tlstap";
constexpr const char* DEFAULT_RECORDER_USER = "tlstap-rec";

struct UserIdentity {
  kj::String name;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Looks a user up by name (through NSS: do it before lock-down). Returns the reason on failure.
kj::Maybe<kj::String> lookUpUser(kj::StringPtr name, UserIdentity& out);

// Decides who to become after start-up. As root: `requested` (--user), else `defaultName`, which
// must exist; root itself is refused. Not root: nobody to change to (out stays nullptr), and
// `requested` must name the current user. Returns "<option>: cause" on failure.
kj::Maybe<kj::String> chooseRunAsUser(kj::StringPtr option, const kj::Maybe<kj::String>& requested,
                                      kj::StringPtr defaultName, kj::Maybe<UserIdentity>& out);

// initgroups (the user's own supplementary groups), setgid, setuid; then checks that root cannot
// be regained. Returns the reason on failure; the caller must not go on.
kj::Maybe<kj::String> dropPrivileges(const UserIdentity& user);

// For a process that keeps uid 0 (the embedded recorder's supervisor): keeps only the
// capabilities in `permitted`, for itself and for every program it executes (the bounding set
// loses the rest; the inheritable and ambient sets are emptied), with only `effective` (a subset)
// in use by the process itself. Root's other powers (CAP_SYS_ADMIN, CAP_SYS_PTRACE,
// CAP_SYS_MODULE, CAP_NET_ADMIN, ...) are gone for good. Returns the reason on failure.
kj::Maybe<kj::String> limitCapabilities(kj::ArrayPtr<const int> permitted,
                                        kj::ArrayPtr<const int> effective);

// PR_SET_NO_NEW_PRIVS: execve never grants privileges again (setuid bits, file capabilities).
// Needed before an unprivileged process may load a seccomp filter or a Landlock ruleset.
kj::Maybe<kj::String> setNoNewPrivs();

}  // namespace tlstap
