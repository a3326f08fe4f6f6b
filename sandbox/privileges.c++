#include "privileges.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <kj/array.h>

namespace tlstap {

kj::Maybe<kj::String> lookUpUser(kj::StringPtr name, UserIdentity& out) {
  if (name.size() == 0) return kj::str("empty user name");
  struct passwd entry;
  struct passwd* found = nullptr;
  auto buffer = kj::heapArray<char>(16384);
  errno = 0;
  int rc = getpwnam_r(name.cStr(), &entry, buffer.begin(), buffer.size(), &found);
  if (found == nullptr) {
    if (rc != 0 && rc != ENOENT) return kj::str("cannot look up user '", name, "': ", strerror(rc));
    return kj::str("no such user '", name, "'");
  }
  out.name = kj::str(name);
  out.uid = entry.pw_uid;
  out.gid = entry.pw_gid;
  return nullptr;
}

kj::Maybe<kj::String> chooseRunAsUser(kj::StringPtr option, const kj::Maybe<kj::String>& requested,
                                      kj::StringPtr defaultName, kj::Maybe<UserIdentity>& out) {
  out = nullptr;
  if (geteuid() != 0) {
    KJ_IF_MAYBE(name, requested) {
      UserIdentity user;
      KJ_IF_MAYBE(error, lookUpUser(*name, user)) return kj::str(option, ": ", *error);
      if (user.uid != geteuid()) {
        return kj::str(option, ": only root can change to user '", *name, "'");
      }
    }
    return nullptr;
  }
  UserIdentity user;
  KJ_IF_MAYBE(name, requested) {
    KJ_IF_MAYBE(error, lookUpUser(*name, user)) return kj::str(option, ": ", *error);
  } else {
    KJ_IF_MAYBE(error, lookUpUser(defaultName, user)) {
      return kj::str(option, ": started as root, and the default user '", defaultName,
                     "' does not exist (create it with useradd --system --no-create-home "
                     "--shell /usr/sbin/nologin ", defaultName, ", or give ", option, ")");
    }
  }
  if (user.uid == 0) {
    return kj::str(option, ": '", user.name, "' is root; give an unprivileged user");
  }
  out = kj::mv(user);
  return nullptr;
}

kj::Maybe<kj::String> dropPrivileges(const UserIdentity& user) {
  // Groups first: once the uid is gone, the process may no longer change them.
  if (initgroups(user.name.cStr(), user.gid) != 0) {
    return kj::str("initgroups(", user.name, "): ", strerror(errno));
  }
  if (setresgid(user.gid, user.gid, user.gid) != 0) {
    return kj::str("setresgid(", user.gid, "): ", strerror(errno));
  }
  if (setresuid(user.uid, user.uid, user.uid) != 0) {
    return kj::str("setresuid(", user.uid, "): ", strerror(errno));
  }
  // Trust, but verify: a drop that could be undone is no drop.
  if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0) {
    return kj::str("still able to regain root after dropping to ", user.name);
  }
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  getresuid(&ruid, &euid, &suid);
  getresgid(&rgid, &egid, &sgid);
  if (ruid != user.uid || euid != user.uid || suid != user.uid || rgid != user.gid ||
      egid != user.gid || sgid != user.gid) {
    return kj::str("the ids after dropping to ", user.name, " are not that user's");
  }
  return nullptr;
}

kj::Maybe<kj::String> setNoNewPrivs() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return kj::str("prctl(PR_SET_NO_NEW_PRIVS): ", strerror(errno));
  }
  return nullptr;
}

}  // namespace tlstap
