// tlstap-front's seccomp policy: each call the front must never make after lock-down kills it
// (or is refused, where the policy answers with an errno), and each call it needs still works.
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "tests/sandbox/sandbox-test-support.h"

namespace tlstap {
namespace {

using test::exitWithErrnoCheck;
using test::exitWithSuccessCheck;
using test::lockDownAsFront;

class FrontPolicy : public test::PolicyTest {};

// --- Forbidden -------------------------------------------------------------------------------

void execTrue() {
  lockDownAsFront();
  const char* argv[] = {"/bin/true", nullptr};
  syscall(SYS_execve, "/bin/true", argv, environ);
  _exit(1);
}
TEST_F(FrontPolicy, ExecveKills) { EXPECT_KILLED_BY_POLICY(execTrue()); }

void execAtTrue() {
  lockDownAsFront();
  const char* argv[] = {"/bin/true", nullptr};
  syscall(SYS_execveat, AT_FDCWD, "/bin/true", argv, environ, 0);
  _exit(1);
}
TEST_F(FrontPolicy, ExecveatKills) { EXPECT_KILLED_BY_POLICY(execAtTrue()); }

void forkChild() {
  lockDownAsFront();
  pid_t pid = fork();  // glibc: clone(SIGCHLD)
  if (pid == 0) _exit(0);
  _exit(1);
}
TEST_F(FrontPolicy, ForkKills) { EXPECT_KILLED_BY_POLICY(forkChild()); }

void cloneProcess() {
  lockDownAsFront(/*threads=*/true);
  // Even with threads allowed, clone without CLONE_THREAD (a new process) kills.
  long pid = syscall(SYS_clone, SIGCHLD, 0, nullptr, nullptr, 0);
  if (pid == 0) _exit(0);
  _exit(1);
}
TEST_F(FrontPolicy, CloneOfAProcessKillsEvenWithThreads) {
  EXPECT_KILLED_BY_POLICY(cloneProcess());
}

void vforkChild() {
  lockDownAsFront();
  syscall(SYS_vfork);
  _exit(1);
}
TEST_F(FrontPolicy, VforkKills) { EXPECT_KILLED_BY_POLICY(vforkChild()); }

void *threadBody(void*) { return nullptr; }

void startThread(bool threads) {
  lockDownAsFront(threads);
  pthread_t thread;
  // glibc tries clone3 (refused with ENOSYS), then clone(CLONE_THREAD | ...).
  bool ok = pthread_create(&thread, nullptr, &threadBody, nullptr) == 0 &&
            pthread_join(thread, nullptr) == 0;
  exitWithSuccessCheck(ok);
}
TEST_F(FrontPolicy, ThreadKillsWithoutThreads) { EXPECT_KILLED_BY_POLICY(startThread(false)); }
TEST_F(FrontPolicy, ThreadWorksWithThreads) { EXPECT_CHILD_OK(startThread(true)); }

void ptraceMe() {
  lockDownAsFront();
  ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
  _exit(1);
}
TEST_F(FrontPolicy, PtraceKills) { EXPECT_KILLED_BY_POLICY(ptraceMe()); }

void unixSocket(int type) {
  lockDownAsFront();
  socket(AF_UNIX, type, 0);
  _exit(1);
}
TEST_F(FrontPolicy, UnixStreamSocketKills) { EXPECT_KILLED_BY_POLICY(unixSocket(SOCK_STREAM)); }
TEST_F(FrontPolicy, UnixDatagramSocketKills) { EXPECT_KILLED_BY_POLICY(unixSocket(SOCK_DGRAM)); }

void socketPair() {
  lockDownAsFront();
  int fds[2];
  socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
  _exit(1);
}
TEST_F(FrontPolicy, SocketpairKills) { EXPECT_KILLED_BY_POLICY(socketPair()); }

// With --recorder unix:/path the front may open a unix stream socket (to reconnect), and still
// no datagram socket and no socket pair.
void unixSocketForRecorder(int type) {
  lockDownAsFront(false, SeccompPolicy::Mode::ENFORCE, /*unixRecorder=*/true);
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  _exit(fd >= 0 ? 0 : 1);
}
TEST_F(FrontPolicy, UnixStreamSocketWorksForAUnixRecorder) {
  EXPECT_EXIT(unixSocketForRecorder(SOCK_STREAM), ::testing::ExitedWithCode(0), "");
}
TEST_F(FrontPolicy, UnixDatagramSocketKillsEvenForAUnixRecorder) {
  EXPECT_KILLED_BY_POLICY(unixSocketForRecorder(SOCK_DGRAM));
}

void udpSocket() {
  lockDownAsFront();
  socket(AF_INET, SOCK_DGRAM, 0);
  _exit(1);
}
TEST_F(FrontPolicy, UdpSocketKills) { EXPECT_KILLED_BY_POLICY(udpSocket()); }

void bindAfterLockDown() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  lockDownAsFront();
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  _exit(1);
}
TEST_F(FrontPolicy, BindKills) { EXPECT_KILLED_BY_POLICY(bindAfterLockDown()); }

void signalOther() {
  lockDownAsFront();
  // tgkill is for raise()/abort() on this process only.
  syscall(SYS_tgkill, getppid(), getppid(), 0);
  _exit(1);
}
TEST_F(FrontPolicy, TgkillOfAnotherProcessKills) { EXPECT_KILLED_BY_POLICY(signalOther()); }

void executableMemory() {
  lockDownAsFront();
  mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  _exit(1);
}
TEST_F(FrontPolicy, ExecutableMemoryKills) { EXPECT_KILLED_BY_POLICY(executableMemory()); }

// Opening files is refused with EACCES (glibc malloc reads /proc/sys/vm/overcommit_memory and
// copes), never allowed: not the key files, not /etc/passwd, not /proc.
void openFile(const char* path, bool useOpenat) {
  lockDownAsFront();
  long rc = useOpenat ? syscall(SYS_openat, AT_FDCWD, path, O_RDONLY)
                      : syscall(SYS_open, path, O_RDONLY);
  exitWithErrnoCheck(rc, EACCES);
}
TEST_F(FrontPolicy, OpenIsRefused) { EXPECT_CHILD_OK(openFile("/etc/passwd", false)); }
TEST_F(FrontPolicy, OpenatIsRefused) { EXPECT_CHILD_OK(openFile("/etc/passwd", true)); }
TEST_F(FrontPolicy, OpenatOfProcIsRefused) {
  EXPECT_CHILD_OK(openFile("/proc/sys/vm/overcommit_memory", true));
}

void statPath() {
  lockDownAsFront();
  struct stat info;
  // Only fstat's form (AT_EMPTY_PATH) is allowed; a path is not looked at.
  syscall(SYS_newfstatat, AT_FDCWD, "/etc/passwd", &info, 0);
  _exit(1);
}
TEST_F(FrontPolicy, StatOfAPathKills) { EXPECT_KILLED_BY_POLICY(statPath()); }

// --- Needed, and working -----------------------------------------------------------------------

// A backend connection and a client: socket(AF_INET), connect, accept4, write, read, FIONREAD.
void relayOverTcp(int family) {
  int listener = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage address = {};
  socklen_t length;
  if (family == AF_INET) {
    auto in = reinterpret_cast<sockaddr_in*>(&address);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    length = sizeof(*in);
  } else {
    auto in6 = reinterpret_cast<sockaddr_in6*>(&address);
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_loopback;
    length = sizeof(*in6);
  }
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      listen(listener, 8) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    _exit(2);  // the set-up before lock-down failed (no IPv6 here?)
  }
  lockDownAsFront();
  int backend = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int flags = fcntl(backend, F_GETFL);
  fcntl(backend, F_SETFL, flags & ~O_NONBLOCK);
  bool ok = backend >= 0 &&
            connect(backend, reinterpret_cast<sockaddr*>(&address), length) == 0;
  int accepted = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ok = ok && accepted >= 0 && write(backend, "ping", 4) == 4;
  int pending = 0;
  struct timespec pause = {0, 20 * 1000 * 1000};
  nanosleep(&pause, nullptr);
  ok = ok && ioctl(accepted, FIONREAD, &pending) == 0 && pending == 4;
  char buffer[4];
  ok = ok && read(accepted, buffer, 4) == 4 && memcmp(buffer, "ping", 4) == 0;
  ok = ok && shutdown(backend, SHUT_WR) == 0 && close(backend) == 0;
  exitWithSuccessCheck(ok);
}
TEST_F(FrontPolicy, Ipv4StreamWorks) { EXPECT_CHILD_OK(relayOverTcp(AF_INET)); }
TEST_F(FrontPolicy, Ipv6StreamWorks) { EXPECT_CHILD_OK(relayOverTcp(AF_INET6)); }

void eventLoopCalls() {
  lockDownAsFront();
  int epoll = epoll_create1(EPOLL_CLOEXEC);
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event event = {};
  event.events = EPOLLIN;
  bool ok = epoll >= 0 && wake >= 0 && epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &event) == 0;
  uint64_t one = 1;
  ok = ok && write(wake, &one, sizeof(one)) == sizeof(one);
  epoll_event got;
  ok = ok && epoll_wait(epoll, &got, 1, 1000) == 1;
  exitWithSuccessCheck(ok);
}
TEST_F(FrontPolicy, EpollAndEventfdWork) { EXPECT_CHILD_OK(eventLoopCalls()); }

void memoryTimeAndRandomness() {
  lockDownAsFront();
  char random[32];
  bool ok = getrandom(random, sizeof(random), 0) == sizeof(random);
  void* big = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ok = ok && big != MAP_FAILED && mprotect(big, 4096, PROT_NONE) == 0 &&
       munmap(big, 1 << 20) == 0;
  // malloc of a large block (mmap) and of many small ones (brk).
  void* block = malloc(8 << 20);
  ok = ok && block != nullptr;
  free(block);
  struct timespec now;
  ok = ok && syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &now) == 0;
  struct stat info;
  ok = ok && fstat(STDERR_FILENO, &info) == 0;
  exitWithSuccessCheck(ok);
}
TEST_F(FrontPolicy, MemoryTimeAndRandomnessWork) { EXPECT_CHILD_OK(memoryTimeAndRandomness()); }

void reapChild() {
  pid_t child = fork();
  if (child == 0) _exit(7);
  lockDownAsFront();
  int status = 0;
  exitWithSuccessCheck(waitpid(child, &status, 0) == child && WEXITSTATUS(status) == 7);
}
TEST_F(FrontPolicy, WaitForTheEmbeddedRecorderWorks) { EXPECT_CHILD_OK(reapChild()); }

void raiseSelf() {
  lockDownAsFront();
  raise(SIGUSR1);  // default action: terminate by SIGUSR1, not SIGSYS
  _exit(1);
}
TEST_F(FrontPolicy, RaiseWorks) {
  EXPECT_EXIT(raiseSelf(), ::testing::KilledBySignal(SIGUSR1), "");
}

// --- The debug switch ------------------------------------------------------------------------

void execInDebugMode() {
  lockDownAsFront(false, SeccompPolicy::Mode::DEBUG_LOG);
  const char* argv[] = {"/bin/true", nullptr};
  long rc = syscall(SYS_execve, "/bin/true", argv, environ);
  exitWithErrnoCheck(rc, ENOSYS);
}
TEST_F(FrontPolicy, DebugModeNamesTheRefusedCallAndGoesOn) {
  auto expected = kj::str("seccomp: refused system call ", SYS_execve, " \\(execve\\)");
  EXPECT_EXIT(execInDebugMode(), ::testing::ExitedWithCode(0), expected.cStr());
}

}  // namespace
}  // namespace tlstap
