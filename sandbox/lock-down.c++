#include "lock-down.h"

#include "common/log.h"
#include "sandbox/landlock.h"

namespace tlstap {

kj::Maybe<kj::String> lockDownFront(const kj::Maybe<UserIdentity>& user,
                                    const FrontPolicyOptions& options) {
  KJ_IF_MAYBE(target, user) {
    KJ_IF_MAYBE(error, dropPrivileges(*target)) return kj::mv(*error);
    logInfo("running as user ", target->name, " (uid ", target->uid, ")");
  }
  KJ_IF_MAYBE(error, setNoNewPrivs()) return kj::mv(*error);
  SeccompPolicy policy(SeccompPolicy::modeFromEnvironment());
  addFrontRules(policy, options);
  return policy.load();
}

kj::Maybe<kj::String> lockDownRecorder(const RecorderPolicyOptions& options) {
  KJ_IF_MAYBE(error, setNoNewPrivs()) return kj::mv(*error);
  if (options.outputDirFd >= 0) {
    bool applied = false;
    KJ_IF_MAYBE(error, restrictFilesToDirectory(options.outputDirFd, applied)) {
      return kj::mv(*error);
    }
    if (!applied) {
      logWarning("the kernel has no Landlock: files are confined to the output directory by "
                 "seccomp and file permissions only (see tlstap-recorder(8), SECURITY)");
    }
  }
  SeccompPolicy policy(SeccompPolicy::modeFromEnvironment());
  addRecorderRules(policy, options);
  return policy.load();
}

}  // namespace tlstap
