#include "lock-down.h"

#include <linux/capability.h>
#include <unistd.h>

#include "common/log.h"
#include "sandbox/landlock.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sys/prctl.h>
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#endif

namespace tlstap {

namespace {

// Sanitizer builds (tests only): LeakSanitizer's check at exit stops the world with a cloned
// tracer process, ptrace and /proc, which the policies (and Landlock) forbid. Run that check now
// instead, before the filter is loaded (it then does not run again at exit): everything live
// at this point is still reachable, so it reports only what start-up already leaked. And let
// the sanitizers prepare for the sandbox: they start their symbolizer and read what they need
// from /proc now, so that a report after lock-down is complete.
void beforeSeccomp() {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_sandbox_on_notify(nullptr);
  // After a uid change the process is not dumpable, and the tracer could not attach.
  int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
  __lsan_do_leak_check();
  prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
#endif
}

// What a recorder started as root uses before it drops to its user, and so all the supervisor
// keeps: giving -o DIR and -w FILE to the recorder's user (CHOWN), reaching and creating them
// whoever owns the directories on the way (DAC_OVERRIDE, DAC_READ_SEARCH), binding
// --pcapoverip below 1024 (NET_BIND_SERVICE), the change of user (SETUID, SETGID); and KILL for
// the supervisor itself.
constexpr int SUPERVISOR_CAPABILITIES[] = {CAP_CHOWN,           CAP_DAC_OVERRIDE,
                                           CAP_DAC_READ_SEARCH, CAP_NET_BIND_SERVICE,
                                           CAP_SETUID,          CAP_SETGID,
                                           CAP_KILL};
constexpr int SUPERVISOR_EFFECTIVE[] = {CAP_KILL};

}  // namespace

kj::Maybe<kj::String> lockDownSupervisor(kj::ArrayPtr<const int> writableDirs) {
  if (geteuid() == 0) {
    KJ_IF_MAYBE(error, limitCapabilities(SUPERVISOR_CAPABILITIES, SUPERVISOR_EFFECTIVE)) {
      return kj::mv(*error);
    }
  }
  KJ_IF_MAYBE(error, setNoNewPrivs()) return kj::mv(*error);
  beforeSeccomp();  // before Landlock too: it reads /proc
  bool applied = false;
  KJ_IF_MAYBE(error, restrictWritesBeneath(writableDirs, applied)) return kj::mv(*error);
  if (!applied) logDebug("the kernel has no Landlock: the supervisor's writes are not confined");
  SeccompPolicy policy(SeccompPolicy::modeFromEnvironment());
  addSupervisorRules(policy);
#if defined(__SANITIZE_ADDRESS__)
  // Sanitizer builds (tests only): each recorder runs LeakSanitizer's check before its own
  // lock-down (beforeSeccomp()), under this inherited filter; it stops the world with ptrace
  // and lists threads with the old getdents. Not part of the policy (nor of its golden export):
  // production builds kill both.
  policy.allow(SCMP_SYS(ptrace));
  policy.allow(SCMP_SYS(getdents));
#endif
  return policy.load();
}

kj::Maybe<kj::String> lockDownFront(const kj::Maybe<UserIdentity>& user,
                                    const FrontPolicyOptions& options) {
  KJ_IF_MAYBE(target, user) {
    KJ_IF_MAYBE(error, dropPrivileges(*target)) return kj::mv(*error);
    logInfo("running as user ", target->name, " (uid ", target->uid, ")");
  }
  KJ_IF_MAYBE(error, setNoNewPrivs()) return kj::mv(*error);
  beforeSeccomp();
  SeccompPolicy policy(SeccompPolicy::modeFromEnvironment());
  addFrontRules(policy, options);
  return policy.load();
}

kj::Maybe<kj::String> lockDownRecorder(const RecorderPolicyOptions& options) {
  beforeSeccomp();  // before Landlock too: it reads /proc
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
