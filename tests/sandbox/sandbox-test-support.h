// Runs a statement under a program's seccomp policy, in the child process of a GoogleTest death
// test (threadsafe style: the child re-executes this binary), so the test process itself is
// never locked down. In the style of Chromium's baseline_policy_unittest.cc.
#pragma once

#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <gtest/gtest.h>

#include "sandbox/policies.h"
#include "sandbox/privileges.h"

namespace tlstap {
namespace test {

// Death tests here fork: the threadsafe style re-executes the binary in the child, so the child
// starts from a clean process (no threads of the parent, no state half-copied).
class PolicyTest : public ::testing::Test {
protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// Loads `policy` (after no_new_privs) or exits 100 saying why.
inline void loadOrExit(SeccompPolicy& policy) {
  if (setNoNewPrivs() != nullptr) _exit(100);
  KJ_IF_MAYBE(error, policy.load()) {
    fprintf(stderr, "load: %s\n", error->cStr());
    _exit(100);
  }
}

inline void lockDownAsFront(bool threads = false,
                            SeccompPolicy::Mode mode = SeccompPolicy::Mode::ENFORCE,
                            bool unixRecorder = false) {
  SeccompPolicy policy(mode);
  FrontPolicyOptions options;
  options.threads = threads;
  options.unixRecorder = unixRecorder;
  addFrontRules(policy, options);
  loadOrExit(policy);
}

inline void lockDownAsRecorder(int outputDirFd) {
  SeccompPolicy policy(SeccompPolicy::Mode::ENFORCE);
  RecorderPolicyOptions options;
  options.outputDirFd = outputDirFd;
  addRecorderRules(policy, options);
  loadOrExit(policy);
}

// Exit status of a child whose call failed with `expected` (0), or did something else (1).
inline void exitWithErrnoCheck(long result, int expected) {
  _exit(result == -1 && errno == expected ? 0 : 1);
}

// The call must succeed in the child (exit 0) rather than fail (1) or kill it.
inline void exitWithSuccessCheck(bool ok) { _exit(ok ? 0 : 1); }

}  // namespace test
}  // namespace tlstap

#define EXPECT_KILLED_BY_POLICY(statement) \
  EXPECT_EXIT(statement, ::testing::KilledBySignal(SIGSYS), "")
#define EXPECT_CHILD_OK(statement) EXPECT_EXIT(statement, ::testing::ExitedWithCode(0), "")
