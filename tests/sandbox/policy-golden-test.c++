// The policies as libseccomp's pseudo filter code, compared with the golden files checked in
// beside them (sandbox/*.pfc), so that any change to an allow-list shows up as a diff in review.
//
// After an intended change, regenerate the golden files and review the diff:
//   TLSTAP_UPDATE_GOLDEN=1 build/tests/sandbox-tests --gtest_filter='PolicyGolden.*'
// The export depends on the architecture (x86_64 here) and the libseccomp version (2.5.4).
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/io.h>

#include "sandbox/policies.h"

namespace tlstap {
namespace {

// Fixed values so the export does not depend on the run: the process id (signals only to
// itself) and the recorder's output directory fd.
constexpr pid_t GOLDEN_PID = 4242;
constexpr int GOLDEN_OUTPUT_DIR_FD = 7;

kj::String readFile(kj::StringPtr path) {
  int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kj::str("(cannot read ", path, ")");
  kj::FdInputStream input{kj::AutoCloseFd(fd)};
  auto bytes = input.readAllBytes();
  return kj::str(bytes.asChars());
}

void compareWithGolden(const SeccompPolicy& policy, kj::StringPtr name) {
  auto path = kj::str(TLSTAP_SOURCE_DIR, "/sandbox/", name);
  auto current = policy.exportPfc();
  const char* update = getenv("TLSTAP_UPDATE_GOLDEN");
  if (update != nullptr && kj::StringPtr(update) == "1") {
    kj::FdOutputStream output(open(path.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    output.write(current.begin(), current.size());
    return;
  }
  EXPECT_EQ(readFile(path), current)
      << "the policy changed: review it, then regenerate " << path.cStr()
      << " with TLSTAP_UPDATE_GOLDEN=1 (see this file's header)";
}

TEST(PolicyGolden, Front) {
  SeccompPolicy policy(SeccompPolicy::Mode::ENFORCE, GOLDEN_PID);
  addFrontRules(policy, FrontPolicyOptions{});
  compareWithGolden(policy, "front-policy.pfc");
}

TEST(PolicyGolden, Recorder) {
  SeccompPolicy policy(SeccompPolicy::Mode::ENFORCE, GOLDEN_PID);
  RecorderPolicyOptions options;
  options.outputDirFd = GOLDEN_OUTPUT_DIR_FD;
  addRecorderRules(policy, options);
  compareWithGolden(policy, "recorder-policy.pfc");
}

TEST(PolicyGolden, Supervisor) {
  SeccompPolicy policy(SeccompPolicy::Mode::ENFORCE, GOLDEN_PID);
  addSupervisorRules(policy);
  compareWithGolden(policy, "supervisor-policy.pfc");
}

}  // namespace
}  // namespace tlstap
