#include "landlock.h"

#include <errno.h>
#include <linux/landlock.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <kj/io.h>

namespace tlstap {

namespace {

// File-system rights the ruleset handles, by the ABI version that introduced them. A right
// the ruleset handles is denied everywhere except where a rule allows it.
constexpr uint64_t ACCESS_V1 =
    LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
    LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
    LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
    LANDLOCK_ACCESS_FS_MAKE_SYM;
constexpr uint64_t ACCESS_REFER = 1ULL << 13;     // ABI 2
constexpr uint64_t ACCESS_TRUNCATE = 1ULL << 14;  // ABI 3

// What the recorder does beneath its output directory: create, write, read back (stdio) and
// truncate pcap files, list and remove old ones (retention).
constexpr uint64_t ALLOWED_IN_DIRECTORY =
    LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
    LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_REG;

// Every right that changes the file system (ABI 1): what restrictWritesBeneath() handles, and
// allows beneath its directories only.
constexpr uint64_t WRITE_ACCESS_V1 = ACCESS_V1 & ~(LANDLOCK_ACCESS_FS_EXECUTE |
                                                   LANDLOCK_ACCESS_FS_READ_FILE |
                                                   LANDLOCK_ACCESS_FS_READ_DIR);

// Creates a ruleset handling `handled`, allows `allowed` beneath each of `dirFds`, and
// restricts this process to it.
kj::Maybe<kj::String> restrict(uint64_t handled, uint64_t allowed,
                               kj::ArrayPtr<const int> dirFds) {
  struct landlock_ruleset_attr rulesetAttr = {};
  rulesetAttr.handled_access_fs = handled;
  // Only the fields of ABI 1: later versions add network and scope rights this does not use.
  long ruleset = syscall(SYS_landlock_create_ruleset, &rulesetAttr,
                         sizeof(rulesetAttr.handled_access_fs), 0);
  if (ruleset < 0) return kj::str("landlock_create_ruleset: ", strerror(errno));
  kj::AutoCloseFd owned(static_cast<int>(ruleset));

  for (int dirFd : dirFds) {
    struct landlock_path_beneath_attr beneath = {};
    beneath.allowed_access = allowed;
    beneath.parent_fd = dirFd;
    if (syscall(SYS_landlock_add_rule, owned.get(), LANDLOCK_RULE_PATH_BENEATH, &beneath, 0) !=
        0) {
      return kj::str("landlock_add_rule: ", strerror(errno));
    }
  }
  if (syscall(SYS_landlock_restrict_self, owned.get(), 0) != 0) {
    return kj::str("landlock_restrict_self: ", strerror(errno));
  }
  return nullptr;
}

}  // namespace

int landlockAbiVersion() {
  long version = syscall(SYS_landlock_create_ruleset, nullptr, 0,
                         LANDLOCK_CREATE_RULESET_VERSION);
  return version < 0 ? 0 : int(version);
}

kj::Maybe<kj::String> restrictFilesToDirectory(int dirFd, bool& applied) {
  applied = false;
  int abi = landlockAbiVersion();
  if (abi == 0) return nullptr;
  uint64_t handled = ACCESS_V1;
  uint64_t allowed = ALLOWED_IN_DIRECTORY;
  if (abi >= 2) handled |= ACCESS_REFER;
  if (abi >= 3) {
    handled |= ACCESS_TRUNCATE;
    allowed |= ACCESS_TRUNCATE;
  }

  int dirs[] = {dirFd};
  KJ_IF_MAYBE(error, restrict(handled, allowed, dirs)) return kj::mv(*error);
  applied = true;
  return nullptr;
}

kj::Maybe<kj::String> restrictWritesBeneath(kj::ArrayPtr<const int> dirFds, bool& applied) {
  applied = false;
  int abi = landlockAbiVersion();
  if (abi == 0) return nullptr;
  uint64_t handled = WRITE_ACCESS_V1;
  if (abi >= 2) handled |= ACCESS_REFER;
  if (abi >= 3) handled |= ACCESS_TRUNCATE;
  KJ_IF_MAYBE(error, restrict(handled, handled, dirFds)) return kj::mv(*error);
  applied = true;
  return nullptr;
}

}  // namespace tlstap
