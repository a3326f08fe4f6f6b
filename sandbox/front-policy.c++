// The seccomp policy of tlstap-front after lock-down (DESIGN.md "Security model"): it relays
// between the sockets it accepts and the backends it connects to, and does nothing else. It
// holds the private keys, so everything that could carry them elsewhere is closed: no files,
// no programs, no child processes, no ptrace, no unix sockets.
//
// Not allowed, and so killing the process: execve/execveat, fork/vfork, clone of a process,
// ptrace, socket() of any family but IPv4/IPv6 streams, bind/listen (the listening sockets are
// bound before lock-down), mount, chown, kill of another process...

#include <errno.h>
#include <sched.h>
#include <sys/socket.h>

#include "sandbox/policies.h"

namespace tlstap {

namespace {
// The type argument of socket() also carries SOCK_NONBLOCK and SOCK_CLOEXEC.
constexpr uint64_t SOCKET_TYPE_MASK = 0xf;
}  // namespace

void addFrontRules(SeccompPolicy& p, const FrontPolicyOptions& options) {
  addBaselineRules(p);

  // --- Files: none -----------------------------------------------------------------------------
  // Keys and certificates were read before lock-down. glibc malloc may still try to read
  // /proc/sys/vm/overcommit_memory and copes with failing, so refuse opening rather than kill.
  p.refuse(SCMP_SYS(open), EACCES);
  p.refuse(SCMP_SYS(openat), EACCES);

  // --- Backends ----------------------------------------------------------------------------
  // Connections to backends (--connect, or the SNI host name): IPv4 and IPv6 streams only.
  // Never AF_UNIX: a unix socket could reach local services, or pass descriptors out.
  p.allow(SCMP_SYS(socket), {SCMP_A0(SCMP_CMP_EQ, AF_INET),
                             SCMP_A1(SCMP_CMP_MASKED_EQ, SOCKET_TYPE_MASK, SOCK_STREAM)});
  p.allow(SCMP_SYS(socket), {SCMP_A0(SCMP_CMP_EQ, AF_INET6),
                             SCMP_A1(SCMP_CMP_MASKED_EQ, SOCKET_TYPE_MASK, SOCK_STREAM)});

  // --- An external recorder on a unix socket (--recorder unix:/path) ---------------------------
  // After the recorder restarts, the front connects to it again. Only with that option: it lets
  // a compromised front reach other unix stream sockets its user may write to, which the man
  // page states. The embedded recorder needs nothing here: its supervisor hands out links.
  if (options.unixRecorder) {
    p.allow(SCMP_SYS(socket), {SCMP_A0(SCMP_CMP_EQ, AF_UNIX),
                               SCMP_A1(SCMP_CMP_MASKED_EQ, SOCKET_TYPE_MASK, SOCK_STREAM)});
  }

  // --- The embedded recorder -----------------------------------------------------------------
  // Reaped when it exits; signalled if it does not exit at shutdown (only works while both run
  // as the same user: a root start gives them different ones).
  p.allow(SCMP_SYS(wait4));
  p.allow(SCMP_SYS(kill));

  // --- Threads -------------------------------------------------------------------------------
  // Worker threads (--threads), when the front runs more than one loop: clone only with
  // CLONE_THREAD, which makes a thread of this process, never a new process.
  if (options.threads) {
    p.allow(SCMP_SYS(clone), {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)});
  }
}

}  // namespace tlstap
