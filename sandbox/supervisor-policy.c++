// The seccomp policy of the embedded recorder's supervisor (`tlstap-recorder --supervise`,
// recorder/supervisor.h): after its own set-up it only reads one-byte requests from the front,
// makes socket pairs, starts recorders and waits for them, and hands links out.
//
// A seccomp filter is inherited across fork and exec, and cannot be lifted: every recorder the
// supervisor starts runs under this filter for its whole life, beneath the recorder's own
// stricter one (recorder-policy.c++), which it loads at the end of its start-up. So this list
// also holds what a recorder does before its lock-down (loading the program, looking users up,
// binding PCAP-over-IP, opening its outputs as root, changing user, Landlock, seccomp) and after
// it. What it keeps out, from the supervisor and from every recorder at any time: ptrace,
// mount, module loading, kexec, bpf, perf events, keyrings, namespaces, capset (the supervisor
// keeps uid 0 with a few capabilities, and could otherwise raise them), device nodes, clock
// changes, reboot, and every call no one here needs.

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "sandbox/policies.h"

namespace tlstap {

void addSupervisorRules(SeccompPolicy& p) {
  addBaselineRules(p);

  // --- Supervision -----------------------------------------------------------------------------
  // A socket pair per recorder: one end becomes the recorder's fd 3, the other goes to the front.
  p.allow(SCMP_SYS(socketpair), {SCMP_A0(SCMP_CMP_EQ, AF_UNIX)});
  // Starting a recorder: fork (glibc's clone with SIGCHLD), the link moved to fd 3, and fexecve
  // of the program the supervisor was started as (execveat on its fd; execve is glibc's
  // fallback through /proc/self/fd).
  p.allow(SCMP_SYS(clone));
  p.allow(SCMP_SYS(dup2));
  p.allow(SCMP_SYS(dup3));
  p.allow(SCMP_SYS(execveat));
  p.allow(SCMP_SYS(execve));
  // Reaping recorders; passing SIGUSR1 on, and SIGTERM then SIGKILL to a recorder that does not
  // exit when its link closes. Only these signals, to any process (the recorder's pid changes
  // with each start; CAP_KILL is the supervisor's one effective capability).
  p.allow(SCMP_SYS(wait4));
  for (int signal : {SIGUSR1, SIGTERM, SIGKILL}) {
    p.allow(SCMP_SYS(kill), {SCMP_A1(SCMP_CMP_EQ, uint64_t(signal))});
  }
  // A recorder's abort() (the baseline allows signals to the supervisor's own pid only).
  p.allow(SCMP_SYS(tgkill), {SCMP_A2(SCMP_CMP_EQ, uint64_t(SIGABRT))});

  // --- A recorder's start-up, before its own lock-down -------------------------------------------
  // Loading the program and its libraries: opening, reading and mapping them executable.
  p.allow(SCMP_SYS(open));
  p.allow(SCMP_SYS(openat));
  p.allow(SCMP_SYS(access));
  p.allow(SCMP_SYS(faccessat));
  p.allow(SCMP_SYS(faccessat2));
  p.allow(SCMP_SYS(readlink));
  p.allow(SCMP_SYS(readlinkat));
  p.allow(SCMP_SYS(pread64));
  p.allow(SCMP_SYS(newfstatat));
  p.allow(SCMP_SYS(statx));
  p.allow(SCMP_SYS(getdents64));
  p.allow(SCMP_SYS(mmap));
  p.allow(SCMP_SYS(mprotect));
  p.allow(SCMP_SYS(arch_prctl));
  p.allow(SCMP_SYS(set_tid_address));
  p.allow(SCMP_SYS(uname));
  p.allow(SCMP_SYS(getcwd));
  p.allow(SCMP_SYS(getppid));
  p.allow(SCMP_SYS(fcntl));  // F_SETLK and friends from NSS, beyond the baseline's flags
  // KJ marks the sockets it wraps close-on-exec.
  p.allow(SCMP_SYS(ioctl), {SCMP_A1(SCMP_CMP_EQ, FIOCLEX)});
  // Looking up --user (NSS: /etc/passwd, /etc/group; nscd's unix socket, refused by absence),
  // and --pcapoveripconnect host names (glibc's resolver sends its A and AAAA queries with one
  // sendmmsg). Binding PCAP-over-IP and the recorder's connect-out sockets.
  p.allow(SCMP_SYS(socket));
  p.allow(SCMP_SYS(bind));
  p.allow(SCMP_SYS(listen));
  p.allow(SCMP_SYS(sendmmsg));
  // -o DIR made and given to the recorder's user; -w FILE given to it.
  p.allow(SCMP_SYS(mkdir));
  p.allow(SCMP_SYS(mkdirat));
  p.allow(SCMP_SYS(fchownat));
  p.allow(SCMP_SYS(fchown));
  // The change to the recorder's user (recorder/recorder-identity.h, sandbox/privileges.h).
  p.allow(SCMP_SYS(setgroups));
  p.allow(SCMP_SYS(setresgid));
  p.allow(SCMP_SYS(setresuid));
  p.allow(SCMP_SYS(setgid));
  p.allow(SCMP_SYS(setuid));
  p.allow(SCMP_SYS(getresuid));
  p.allow(SCMP_SYS(getresgid));
  p.allow(SCMP_SYS(getgroups));
  // The recorder's lock-down: no_new_privs (and the sanitizers' dumpable flag in test builds),
  // Landlock, its own seccomp filter.
  p.allow(SCMP_SYS(prctl));
  p.allow(SCMP_SYS(seccomp));
  p.allow(SCMP_SYS(landlock_create_ruleset));
  p.allow(SCMP_SYS(landlock_add_rule));
  p.allow(SCMP_SYS(landlock_restrict_self));

  // --- A recorder after its lock-down ----------------------------------------------------------
  // Its own policy decides within these: files in the output directory (removing old ones,
  // cutting a torn record back, syncing), and the unix socket it removes at exit.
  p.allow(SCMP_SYS(unlinkat));
  p.allow(SCMP_SYS(unlink));
  p.allow(SCMP_SYS(ftruncate));
  p.allow(SCMP_SYS(fsync));
  p.allow(SCMP_SYS(fdatasync));
}

}  // namespace tlstap
