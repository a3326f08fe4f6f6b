// A seccomp allow-list under construction, owned as one libseccomp context. The policies of the
// two programs (front-policy.c++, recorder-policy.c++) and the rules both share
// (baseline-policy.c++) fill one; the program then loads it as the last step of its lock-down.
//
// Anything not allowed kills the whole process (SCMP_ACT_KILL_PROCESS), except calls refused
// with an errno because libc has a fallback for them. The filter is synchronised onto every
// thread (TSYNC).
//
// Debugging a policy gap: with TLSTAP_SECCOMP_LOG=1 in the environment, a call the policy would
// kill is instead reported on stderr ("seccomp: refused system call 59 (execve)") and fails
// with ENOSYS, so one run names every missing call. Never for production: the process goes on
// with calls failing that it did not expect to fail.
#pragma once

#include <seccomp.h>
#include <unistd.h>
#include <initializer_list>
#include <kj/common.h>
#include <kj/string.h>

namespace tlstap {

class SeccompPolicy {
public:
  enum class Mode {
    ENFORCE,    // kill the process on a call outside the policy
    DEBUG_LOG,  // name the call on stderr and fail it with ENOSYS (TLSTAP_SECCOMP_LOG=1)
  };

  // `self` is the process the policy is for: signals may be sent only to it. Tests pass a fixed
  // number so that the golden export does not change from run to run.
  explicit SeccompPolicy(Mode mode, pid_t self = getpid());
  ~SeccompPolicy() noexcept;
  KJ_DISALLOW_COPY(SeccompPolicy);

  // ENFORCE, or DEBUG_LOG when TLSTAP_SECCOMP_LOG=1.
  static Mode modeFromEnvironment();

  // Allows `syscall` when every comparison holds (none: always).
  void allow(int syscall, std::initializer_list<scmp_arg_cmp> conditions = {});
  // Fails `syscall` with `error` (when every comparison holds) instead of killing: for calls
  // that libc or a library makes and copes with failing.
  void refuse(int syscall, int error, std::initializer_list<scmp_arg_cmp> conditions = {});

  // Installs the filter on every thread of the process. The caller must have set no_new_privs.
  // Returns the reason on failure.
  kj::Maybe<kj::String> load();

  // The filter as libseccomp's pseudo filter code: the golden text the tests compare with.
  kj::String exportPfc() const;

  Mode mode() const { return currentMode; }
  pid_t self() const { return selfPid; }

private:
  void addRule(uint32_t action, int syscall, std::initializer_list<scmp_arg_cmp> conditions);

  Mode currentMode;
  pid_t selfPid;
  scmp_filter_ctx context;
};

}  // namespace tlstap
