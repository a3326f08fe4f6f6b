// Rules both programs share. A rule belongs here only if both need it; see front-policy.c++
// and recorder-policy.c++ for the rest.

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sandbox/policies.h"

namespace tlstap {

void addBaselineRules(SeccompPolicy& p) {
  // --- Memory ------------------------------------------------------------------------------
  // glibc malloc, GnuTLS, KJ arenas and Cap'n Proto segments. Never executable memory: nothing
  // loads code after start-up.
  p.allow(SCMP_SYS(brk));
  p.allow(SCMP_SYS(mmap), {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)});
  p.allow(SCMP_SYS(mprotect), {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)});
  p.allow(SCMP_SYS(munmap));
  p.allow(SCMP_SYS(mremap));
  p.allow(SCMP_SYS(madvise));

  // --- Descriptors already open ------------------------------------------------------------
  // Sockets, the link to the other program, pcap files (stdio), stderr for log lines.
  p.allow(SCMP_SYS(read));
  p.allow(SCMP_SYS(readv));
  p.allow(SCMP_SYS(write));
  p.allow(SCMP_SYS(writev));
  p.allow(SCMP_SYS(close));
  p.allow(SCMP_SYS(lseek));  // stdio (ftell in libpcap's dumper)
  p.allow(SCMP_SYS(fstat));
  // glibc implements fstat() as fstatat(fd, "", AT_EMPTY_PATH): allowed only in that form, so no
  // path can be looked at.
  p.allow(SCMP_SYS(newfstatat), {SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH)});
  // Non-blocking and close-on-exec flags (libevent, KJ), duplicating a held descriptor.
  p.allow(SCMP_SYS(fcntl), {SCMP_A1(SCMP_CMP_EQ, F_GETFL)});
  p.allow(SCMP_SYS(fcntl), {SCMP_A1(SCMP_CMP_EQ, F_SETFL)});
  p.allow(SCMP_SYS(fcntl), {SCMP_A1(SCMP_CMP_EQ, F_GETFD)});
  p.allow(SCMP_SYS(fcntl), {SCMP_A1(SCMP_CMP_EQ, F_SETFD)});
  p.allow(SCMP_SYS(fcntl), {SCMP_A1(SCMP_CMP_EQ, F_DUPFD_CLOEXEC)});
  // libevent asks how much a socket holds (FIONREAD); KJ sets non-blocking mode (FIONBIO).
  p.allow(SCMP_SYS(ioctl), {SCMP_A1(SCMP_CMP_EQ, FIONREAD)});
  p.allow(SCMP_SYS(ioctl), {SCMP_A1(SCMP_CMP_EQ, FIONBIO)});
  // stdio asks whether a stream is a terminal; "no" is a fine answer.
  p.refuse(SCMP_SYS(ioctl), ENOTTY, {SCMP_A1(SCMP_CMP_EQ, TCGETS)});

  // --- Sockets already open ----------------------------------------------------------------
  // Accepting clients (front) and fronts or consumers (recorder); connecting out (backends,
  // --pcapoveripconnect); the socket options KJ and libevent read and set.
  p.allow(SCMP_SYS(accept4));
  p.allow(SCMP_SYS(accept));
  p.allow(SCMP_SYS(connect));
  p.allow(SCMP_SYS(getsockname));
  p.allow(SCMP_SYS(getpeername));
  p.allow(SCMP_SYS(getsockopt));
  p.allow(SCMP_SYS(setsockopt));
  p.allow(SCMP_SYS(shutdown));
  p.allow(SCMP_SYS(recvfrom));
  p.allow(SCMP_SYS(sendto));
  // Cap'n Proto and libevent use the msg forms; a supervisor may hand over descriptors on a
  // unix socket that is already connected.
  p.allow(SCMP_SYS(recvmsg));
  p.allow(SCMP_SYS(sendmsg));

  // --- Event loops ---------------------------------------------------------------------------
  // libevent (front) and KJ's UnixEventPort (recorder): epoll, their wake-up eventfd, the
  // signalfd KJ re-arms, libevent's timerfd.
  p.allow(SCMP_SYS(epoll_create1));
  p.allow(SCMP_SYS(epoll_ctl));
  p.allow(SCMP_SYS(epoll_wait));
  p.allow(SCMP_SYS(epoll_pwait));
  p.allow(SCMP_SYS(poll));
  p.allow(SCMP_SYS(ppoll));
  p.allow(SCMP_SYS(eventfd2));
  p.allow(SCMP_SYS(signalfd4));
  p.allow(SCMP_SYS(timerfd_settime));
  p.allow(SCMP_SYS(timerfd_gettime));
  // A pipe reaches nothing outside the process. libevent's fallback for waking its loop; the
  // sanitizers of test builds probe memory through one (UBSan's vptr check).
  p.allow(SCMP_SYS(pipe2));

  // --- Time ----------------------------------------------------------------------------------
  // Usually answered by the vDSO; the system calls are its fallback.
  p.allow(SCMP_SYS(clock_gettime));
  p.allow(SCMP_SYS(clock_getres));
  p.allow(SCMP_SYS(gettimeofday));
  p.allow(SCMP_SYS(time));
  p.allow(SCMP_SYS(nanosleep));       // start-up and shutdown waits
  p.allow(SCMP_SYS(clock_nanosleep));

  // --- Signals -------------------------------------------------------------------------------
  // SIGTERM/SIGINT handling (libevent, KJ), SIGPIPE ignored, glibc's abort().
  p.allow(SCMP_SYS(rt_sigaction));
  p.allow(SCMP_SYS(rt_sigprocmask));
  p.allow(SCMP_SYS(rt_sigreturn));
  p.allow(SCMP_SYS(sigaltstack));
  // raise()/abort() signal the process itself, never another one.
  p.allow(SCMP_SYS(tgkill), {SCMP_A0(SCMP_CMP_EQ, uint64_t(p.self()))});
  p.allow(SCMP_SYS(kill), {SCMP_A0(SCMP_CMP_EQ, uint64_t(p.self()))});

  // --- Threads and the process itself --------------------------------------------------------
  // glibc's locks, thread set-up and exit; identity queries libraries make.
  p.allow(SCMP_SYS(futex));
  p.allow(SCMP_SYS(set_robust_list));
  p.allow(SCMP_SYS(rseq));
  p.allow(SCMP_SYS(sched_yield));
  p.allow(SCMP_SYS(sched_getaffinity));  // sysconf(_SC_NPROCESSORS_ONLN) without /sys
  p.allow(SCMP_SYS(getpid));
  p.allow(SCMP_SYS(gettid));
  p.allow(SCMP_SYS(getuid));
  p.allow(SCMP_SYS(geteuid));
  p.allow(SCMP_SYS(getgid));
  p.allow(SCMP_SYS(getegid));
  p.allow(SCMP_SYS(prlimit64));  // getrlimit (KJ, libevent)
  p.allow(SCMP_SYS(restart_syscall));
  p.allow(SCMP_SYS(exit));
  p.allow(SCMP_SYS(exit_group));
  // glibc tries clone3 first for threads and processes; its arguments sit in memory where
  // seccomp cannot look, so answer "not implemented" and glibc falls back to clone, whose flags
  // each policy checks.
  p.refuse(SCMP_SYS(clone3), ENOSYS);

  // --- Randomness ----------------------------------------------------------------------------
  // GnuTLS reseeds its generator; KJ and libevent seed from it too.
  p.allow(SCMP_SYS(getrandom));
}

}  // namespace tlstap
