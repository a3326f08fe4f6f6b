// The embedded recorder's supervisor: its seccomp policy (what it and every recorder it starts
// may never do, and that starting a recorder still works under it), its Landlock rules (writes
// only where the recorders write) and the capabilities it keeps when started as root.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include <kj/debug.h>

#include "sandbox/landlock.h"
#include "sandbox/lock-down.h"
#include "tests/sandbox/sandbox-test-support.h"

namespace tlstap {
namespace {

using test::exitWithSuccessCheck;

class SupervisorPolicy : public test::PolicyTest {};

void lockDownAsSupervisor() {
  SeccompPolicy policy(SeccompPolicy::Mode::ENFORCE);
  addSupervisorRules(policy);
  test::loadOrExit(policy);
}

// Starts `argv` as the supervisor starts a recorder (fork, the link on fd 3, exec) and returns
// its exit status, or -1.
int runChild(const char* const* argv) {
  int link[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    if (dup2(link[1], 3) < 0) _exit(127);
    execv(argv[0], const_cast<char* const*>(argv));
    _exit(127);
  }
  int status;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// --- What neither the supervisor nor a recorder may do -----------------------------------------

void ptraceMe() {
  lockDownAsSupervisor();
  ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
  _exit(0);
}

void mountTmpfs() {
  lockDownAsSupervisor();
  mount("none", "/mnt", "tmpfs", 0, nullptr);
  _exit(0);
}

void unshareMounts() {
  lockDownAsSupervisor();
  unshare(CLONE_NEWNS);
  _exit(0);
}

// Raising a capability it keeps but does not use (as root: CAP_DAC_OVERRIDE).
void capset() {
  lockDownAsSupervisor();
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  syscall(SYS_capset, &header, data);
  _exit(0);
}

// Whatever a recorder does, it does under this filter too.
void childPtracesItself() {
  lockDownAsSupervisor();
  pid_t pid = fork();
  if (pid == 0) {
    ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    _exit(0);
  }
  int status;
  exitWithSuccessCheck(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) &&
                       WTERMSIG(status) == SIGSYS);
}

TEST_F(SupervisorPolicy, PtraceKills) { EXPECT_KILLED_BY_POLICY(ptraceMe()); }
TEST_F(SupervisorPolicy, MountKills) { EXPECT_KILLED_BY_POLICY(mountTmpfs()); }
TEST_F(SupervisorPolicy, UnshareKills) { EXPECT_KILLED_BY_POLICY(unshareMounts()); }
TEST_F(SupervisorPolicy, CapsetKills) { EXPECT_KILLED_BY_POLICY(capset()); }
TEST_F(SupervisorPolicy, AChildCannotPtraceEither) { EXPECT_CHILD_OK(childPtracesItself()); }

// --- What it needs -----------------------------------------------------------------------------

void startProgram() {
  lockDownAsSupervisor();
  const char* const argv[] = {"/bin/sh", "-c", "test -S /proc/self/fd/3 && exit 7", nullptr};
  exitWithSuccessCheck(runChild(argv) == 7);
}

void signalChild() {
  lockDownAsSupervisor();
  pid_t pid = fork();
  if (pid == 0) {
    for (;;) poll(nullptr, 0, -1);  // (pause() is no call a recorder makes)
  }
  int status;
  exitWithSuccessCheck(kill(pid, SIGTERM) == 0 && waitpid(pid, &status, 0) == pid &&
                       WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
}

TEST_F(SupervisorPolicy, StartingAProgramWithItsLinkWorks) { EXPECT_CHILD_OK(startProgram()); }
TEST_F(SupervisorPolicy, SignallingAChildWorks) { EXPECT_CHILD_OK(signalChild()); }

// --- Files: written only where the recorders write (Landlock) --------------------------------

// Locks down with `allowed` writable, then creates a file in `target`: exits 0 if that
// succeeded exactly when `expectCreated`, and /etc/passwd can still be read.
void createFileUnder(const char* allowed, const char* target, bool expectCreated) {
  int dir = open(allowed, O_PATH | O_DIRECTORY | O_CLOEXEC);
  int dirs[] = {dir};
  if (dir < 0 || lockDownSupervisor(dirs) != nullptr) _exit(100);
  auto path = kj::str(target, "/made-by-a-recorder.pcap");
  int fd = open(path.cStr(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  bool created = fd >= 0;
  bool refused = fd < 0 && errno == EACCES;
  int passwd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
  exitWithSuccessCheck(passwd >= 0 && (expectCreated ? created : refused));
}

class SupervisorFiles : public SupervisorPolicy {
protected:
  void SetUp() override {
    SupervisorPolicy::SetUp();
    if (landlockAbiVersion() == 0) GTEST_SKIP() << "the kernel has no Landlock";
    char pattern[] = "/tmp/tlstap-supervisor-policy-XXXXXX";
    KJ_ASSERT(mkdtemp(pattern) != nullptr);
    base = kj::str(pattern);
    out = kj::str(base, "/out");
    elsewhere = kj::str(base, "/elsewhere");
    KJ_SYSCALL(mkdir(out.cStr(), 0750));
    KJ_SYSCALL(mkdir(elsewhere.cStr(), 0750));
  }
  void TearDown() override {
    if (base.size() == 0) return;
    auto command = kj::str("rm -rf '", base, "'");
    EXPECT_EQ(system(command.cStr()), 0);
  }
  kj::String base, out, elsewhere;
};

TEST_F(SupervisorFiles, CreatingInTheOutputDirectoryWorks) {
  EXPECT_CHILD_OK(createFileUnder(out.cStr(), out.cStr(), true));
}

TEST_F(SupervisorFiles, CreatingElsewhereIsRefused) {
  EXPECT_CHILD_OK(createFileUnder(out.cStr(), elsewhere.cStr(), false));
  EXPECT_CHILD_OK(createFileUnder(out.cStr(), "/tmp", false));
}

// --- Capabilities, started as root --------------------------------------------------------------

uint64_t capabilityField(const char* name) {
  FILE* status = fopen("/proc/self/status", "r");
  char line[256];
  uint64_t value = ~uint64_t(0);
  while (status != nullptr && fgets(line, sizeof(line), status) != nullptr) {
    if (strncmp(line, name, strlen(name)) == 0) value = strtoull(line + strlen(name), nullptr, 16);
  }
  if (status != nullptr) fclose(status);
  return value;
}

constexpr uint64_t bit(int capability) { return uint64_t(1) << capability; }
constexpr uint64_t KEPT = bit(CAP_CHOWN) | bit(CAP_DAC_OVERRIDE) | bit(CAP_DAC_READ_SEARCH) |
                          bit(CAP_NET_BIND_SERVICE) | bit(CAP_SETUID) | bit(CAP_SETGID) |
                          bit(CAP_KILL);

void lockDownAndCheckCapabilities() {
  if (lockDownSupervisor(nullptr) != nullptr) _exit(100);
  bool ok = capabilityField("CapEff:") == bit(CAP_KILL) && capabilityField("CapPrm:") == KEPT &&
            capabilityField("CapBnd:") == KEPT && capabilityField("CapInh:") == 0 &&
            capabilityField("CapAmb:") == 0;
  // A program it starts as root has the kept ones in effect, and no more (0x4e7: no
  // CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_NET_ADMIN, ...).
  const char* const argv[] = {"/bin/grep", "-q", "^CapEff:[[:space:]]*00000000000004e7$",
                              "/proc/self/status", nullptr};
  exitWithSuccessCheck(ok && runChild(argv) == 0);
}

TEST_F(SupervisorPolicy, AsRootKeepsOnlyTheRecordersCapabilitiesWithKillInEffect) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  static_assert(KEPT == 0x4e7, "the mask the started program is checked against");
  EXPECT_CHILD_OK(lockDownAndCheckCapabilities());
}

}  // namespace
}  // namespace tlstap
