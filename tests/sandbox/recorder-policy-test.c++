// tlstap-recorder's seccomp policy and Landlock: files only inside the output directory (by
// openat/unlinkat on its fd; Landlock keeps "../" and absolute paths from leaving it), nothing
// executed, no process created; and what the recorder needs still works.
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <kj/debug.h>

#include "sandbox/landlock.h"
#include "tests/sandbox/sandbox-test-support.h"

namespace tlstap {
namespace {

using test::exitWithErrnoCheck;
using test::exitWithSuccessCheck;
using test::lockDownAsRecorder;

// A fresh output directory and a file beside it (outside), removed afterwards. A threadsafe
// death test re-executes this binary, which runs SetUp() again in the child: the parent names
// the directory in the environment so that the child works in the same one.
constexpr const char* DIRECTORY_VARIABLE = "TLSTAP_RECORDER_POLICY_TEST_DIR";

class RecorderPolicy : public test::PolicyTest {
protected:
  void SetUp() override {
    test::PolicyTest::SetUp();
    const char* inherited = getenv(DIRECTORY_VARIABLE);
    if (inherited != nullptr) {
      base = kj::str(inherited);
    } else {
      char pattern[] = "/tmp/tlstap-recorder-policy-XXXXXX";
      KJ_ASSERT(mkdtemp(pattern) != nullptr);
      base = kj::str(pattern);
      setenv(DIRECTORY_VARIABLE, base.cStr(), 1);
    }
    outputDir = kj::str(base, "/out");
    outside = kj::str(base, "/outside.pcap");
    if (mkdir(outputDir.cStr(), 0750) != 0) {
      KJ_ASSERT(errno == EEXIST);
    }
    int fd;
    KJ_SYSCALL(fd = open(outside.cStr(), O_WRONLY | O_CREAT, 0640));
    close(fd);
  }
  void TearDown() override {
    unsetenv(DIRECTORY_VARIABLE);
    auto command = kj::str("rm -rf '", base, "'");
    EXPECT_EQ(system(command.cStr()), 0);
  }

  // Opens the output directory and locks down as the recorder does.
  int lockDown() {
    int dirFd = open(outputDir.cStr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirFd < 0) _exit(100);
    if (setNoNewPrivs() != nullptr) _exit(100);
    bool applied = false;
    if (restrictFilesToDirectory(dirFd, applied) != nullptr) _exit(100);
    lockDownAsRecorder(dirFd);
    return dirFd;
  }

  kj::String base, outputDir, outside;
};

// --- Files -----------------------------------------------------------------------------------

TEST_F(RecorderPolicy, CreatingAFileInTheOutputDirectoryWorks) {
  EXPECT_CHILD_OK({
    int dirFd = lockDown();
    int fd = openat(dirFd, "tlstap-20261127-090000.pcap", O_WRONLY | O_CREAT | O_EXCL, 0640);
    exitWithSuccessCheck(fd >= 0 && write(fd, "pcap", 4) == 4 && close(fd) == 0);
  });
  struct stat info;
  auto created = kj::str(outputDir, "/tlstap-20261127-090000.pcap");
  ASSERT_EQ(stat(created.cStr(), &info), 0);
  EXPECT_EQ(info.st_size, 4);
}

TEST_F(RecorderPolicy, RemovingAFileInTheOutputDirectoryWorks) {
  auto old = kj::str(outputDir, "/old.pcap");
  close(open(old.cStr(), O_WRONLY | O_CREAT, 0640));
  EXPECT_CHILD_OK({
    int dirFd = lockDown();
    exitWithSuccessCheck(unlinkat(dirFd, "old.pcap", 0) == 0);
  });
  EXPECT_NE(access(old.cStr(), F_OK), 0);
}

TEST_F(RecorderPolicy, OpeningOutsideByPathIsRefused) {
  EXPECT_CHILD_OK({
    lockDown();
    exitWithErrnoCheck(open(outside.cStr(), O_WRONLY), EACCES);
  });
  EXPECT_CHILD_OK({
    lockDown();
    exitWithErrnoCheck(openat(AT_FDCWD, "/etc/passwd", O_RDONLY), EACCES);
  });
}

// seccomp sees the right dirfd here; only Landlock can tell that the path leaves it.
TEST_F(RecorderPolicy, EscapingTheDirectoryFdIsRefusedWithLandlock) {
  if (landlockAbiVersion() == 0) GTEST_SKIP() << "the kernel has no Landlock";
  EXPECT_CHILD_OK({
    int dirFd = lockDown();
    exitWithErrnoCheck(openat(dirFd, "../escaped.pcap", O_WRONLY | O_CREAT, 0640), EACCES);
  });
  EXPECT_CHILD_OK({
    int dirFd = lockDown();
    exitWithErrnoCheck(openat(dirFd, outside.cStr(), O_WRONLY), EACCES);
  });
  EXPECT_CHILD_OK({
    int dirFd = lockDown();
    exitWithErrnoCheck(openat(dirFd, "/etc/passwd", O_RDONLY), EACCES);
  });
  EXPECT_CHILD_OK({
    int dirFd = lockDown();
    exitWithErrnoCheck(unlinkat(dirFd, "../outside.pcap", 0), EACCES);
  });
  auto escaped = kj::str(base, "/escaped.pcap");
  EXPECT_NE(access(escaped.cStr(), F_OK), 0);
  EXPECT_EQ(access(outside.cStr(), F_OK), 0);
}

TEST_F(RecorderPolicy, UnlinkOutsideIsRefused) {
  EXPECT_CHILD_OK({
    lockDown();
    exitWithErrnoCheck(unlink(outside.cStr()), EACCES);
  });
  EXPECT_EQ(access(outside.cStr(), F_OK), 0);
}

TEST_F(RecorderPolicy, WithoutAnOutputDirectoryNothingOpens) {
  EXPECT_CHILD_OK({
    int dirFd = open(outputDir.cStr(), O_RDONLY | O_DIRECTORY);
    lockDownAsRecorder(-1);
    exitWithErrnoCheck(openat(dirFd, "x.pcap", O_WRONLY | O_CREAT, 0640), EACCES);
  });
}

void makeDirectory(int dirFd) {
  mkdirat(dirFd, "sub", 0750);
  _exit(1);
}
TEST_F(RecorderPolicy, MkdirKills) { EXPECT_KILLED_BY_POLICY(makeDirectory(lockDown())); }

// --- Programs, processes, tracing ------------------------------------------------------------

void execTrue() {
  const char* argv[] = {"/bin/true", nullptr};
  syscall(SYS_execve, "/bin/true", argv, environ);
  _exit(1);
}
TEST_F(RecorderPolicy, ExecveKills) {
  EXPECT_KILLED_BY_POLICY({
    lockDown();
    execTrue();
  });
}

TEST_F(RecorderPolicy, ForkKills) {
  EXPECT_KILLED_BY_POLICY({
    lockDown();
    if (fork() == 0) _exit(0);
    _exit(1);
  });
}

TEST_F(RecorderPolicy, PtraceKills) {
  EXPECT_KILLED_BY_POLICY({
    lockDown();
    ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    _exit(1);
  });
}

// --- Needed, and working -----------------------------------------------------------------------

void* threadBody(void*) { return nullptr; }

// KJ resolves --pcapoveripconnect host names on a thread.
TEST_F(RecorderPolicy, ThreadsWork) {
  EXPECT_CHILD_OK({
    lockDown();
    pthread_t thread;
    exitWithSuccessCheck(pthread_create(&thread, nullptr, &threadBody, nullptr) == 0 &&
                         pthread_join(thread, nullptr) == 0);
  });
}

// --pcapoveripconnect: an IPv4 stream; a host name lookup's other sockets fail softly.
TEST_F(RecorderPolicy, StreamSocketsWorkAndLookupSocketsAreRefused) {
  EXPECT_CHILD_OK({
    lockDown();
    int tcp = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int udpErrno = errno;
    int local = socket(AF_UNIX, SOCK_STREAM, 0);
    int localErrno = errno;
    exitWithSuccessCheck(tcp >= 0 && udp < 0 && udpErrno == EACCES && local < 0 &&
                         localErrno == EACCES);
  });
}

}  // namespace
}  // namespace tlstap
