#include "privileges.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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

kj::Maybe<kj::String> limitCapabilities(kj::ArrayPtr<const int> permitted,
                                        kj::ArrayPtr<const int> effective) {
  auto kept = [](kj::ArrayPtr<const int> set, int capability) {
    for (int c : set) {
      if (c == capability) return true;
    }
    return false;
  };
  // The bounding set first, while CAP_SETPCAP is still effective: it is what an executed program
  // (a recorder started as root) can have at most.
  for (int capability = 0; capability < 64; capability++) {
    if (kept(permitted, capability)) continue;
    if (prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0) {
      if (errno == EINVAL) break;  // past the kernel's last capability
      return kj::str("prctl(PR_CAPBSET_DROP, ", capability, "): ", strerror(errno));
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return kj::str("prctl(PR_CAP_AMBIENT_CLEAR_ALL): ", strerror(errno));
  }
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  for (int c : permitted) data[c / 32].permitted |= 1u << (c % 32);
  for (int c : effective) {
    if (!kept(permitted, c)) return kj::str("capability ", c, " is effective but not permitted");
    data[c / 32].effective |= 1u << (c % 32);
  }
  if (syscall(SYS_capset, &header, data) != 0) return kj::str("capset: ", strerror(errno));
  return nullptr;
}

kj::Maybe<kj::String> setNoNewPrivs() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return kj::str("prctl(PR_SET_NO_NEW_PRIVS): ", strerror(errno));
  }
  return nullptr;
}

}  // namespace tlstap
