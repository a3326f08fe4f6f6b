#include "recorder-identity.h"

#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <kj/vector.h>

namespace tlstap {

kj::Maybe<kj::String> chooseRecorderIdentity(const RecorderOptions& options,
                                             RecorderIdentity& out) {
  KJ_IF_MAYBE(error, chooseRunAsUser("--user", options.user, DEFAULT_RECORDER_USER, out.runAs)) {
    return kj::mv(*error);
  }
  kj::Vector<uid_t> peers;
  peers.add(0);
  KJ_IF_MAYBE(user, out.runAs) {
    peers.add(user->uid);
  } else {
    peers.add(geteuid());
  }
  bool root = geteuid() == 0;
  if (options.allowUsers.size() == 0) {
    // The front's default user, if this host has it: the usual pair of a root start.
    UserIdentity front;
    if (lookUpUser(DEFAULT_FRONT_USER, front) == nullptr) {
      peers.add(front.uid);
      if (root) out.socketGroup = front.gid;
    }
  }
  for (auto& name : options.allowUsers) {
    UserIdentity user;
    KJ_IF_MAYBE(error, lookUpUser(name, user)) return kj::str("--allow-user: ", *error);
    peers.add(user.uid);
    if (root && out.socketGroup == nullptr) out.socketGroup = user.gid;
  }
  out.allowedPeers = peers.releaseAsArray();
  return nullptr;
}

kj::Maybe<kj::String> secureUnixSocket(kj::StringPtr path, const RecorderIdentity& identity) {
  uid_t owner = uid_t(-1);
  gid_t group = gid_t(-1);
  KJ_IF_MAYBE(user, identity.runAs) owner = user->uid;
  KJ_IF_MAYBE(gid, identity.socketGroup) group = *gid;
  if ((owner != uid_t(-1) || group != gid_t(-1)) &&
      fchownat(AT_FDCWD, path.cStr(), owner, group, AT_SYMLINK_NOFOLLOW) != 0) {
    return kj::str(path, ": chown: ", strerror(errno));
  }
  // Connecting needs write permission on the socket file: the group is the allowed front's.
  mode_t mode = identity.socketGroup == nullptr ? 0600 : 0660;
  if (fchmodat(AT_FDCWD, path.cStr(), mode, 0) != 0) {
    return kj::str(path, ": chmod: ", strerror(errno));
  }
  return nullptr;
}

kj::Maybe<kj::String> giveToRecorderUser(int dirFd, kj::StringPtr path,
                                         const RecorderIdentity& identity) {
  KJ_IF_MAYBE(user, identity.runAs) {
    int flags = path.size() == 0 ? AT_EMPTY_PATH : AT_SYMLINK_NOFOLLOW;
    if (fchownat(dirFd, path.cStr(), user->uid, user->gid, flags) != 0) {
      return kj::str("cannot give ", path.size() == 0 ? kj::StringPtr("it") : path, " to user ",
                     user->name, ": ", strerror(errno));
    }
  }
  return nullptr;
}

}  // namespace tlstap
