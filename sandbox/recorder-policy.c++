// The seccomp policy of tlstap-recorder after lock-down (DESIGN.md "Security model"): it takes
// flows from fronts, writes pcap files into its output directory and serves PCAP-over-IP.
// Files are created and removed only by openat()/unlinkat() relative to the directory fd opened
// before lock-down; Landlock (landlock.h) keeps "../" and absolute paths from leaving it.
//
// Not allowed, and so killing the process: execve/execveat, fork/vfork, clone of a process,
// ptrace, bind/listen, mkdir, rename, chmod/chown, mount...

#include <errno.h>
#include <sched.h>
#include <sys/socket.h>

#include "sandbox/policies.h"

namespace tlstap {

namespace {
constexpr uint64_t SOCKET_TYPE_MASK = 0xf;
}  // namespace

void addRecorderRules(SeccompPolicy& p, const RecorderPolicyOptions& options) {
  addBaselineRules(p);

  // --- Files: only in the output directory -----------------------------------------------------
  // The rotating writer creates the hourly files with openat(dirfd, NAME), and retention
  // removes old ones with unlinkat(dirfd, NAME). Anything else is refused with EACCES, not
  // killed: glibc malloc may read /proc/sys/vm/overcommit_memory, and a host name lookup reads
  // /etc/hosts; both cope with failing. unlink() is how the recorder removes its unix socket at
  // shutdown; after a privilege drop it may no longer, and the next start removes the stale one.
  if (options.outputDirFd >= 0) {
    uint64_t dirFd = uint64_t(options.outputDirFd);
    p.allow(SCMP_SYS(openat), {SCMP_A0(SCMP_CMP_EQ, dirFd)});
    p.refuse(SCMP_SYS(openat), EACCES, {SCMP_A0(SCMP_CMP_NE, dirFd)});
    p.allow(SCMP_SYS(unlinkat), {SCMP_A0(SCMP_CMP_EQ, dirFd)});
    p.refuse(SCMP_SYS(unlinkat), EACCES, {SCMP_A0(SCMP_CMP_NE, dirFd)});
  } else {
    p.refuse(SCMP_SYS(openat), EACCES);
    p.refuse(SCMP_SYS(unlinkat), EACCES);
  }
  p.refuse(SCMP_SYS(open), EACCES);
  p.refuse(SCMP_SYS(unlink), EACCES);
  // Pcap files are written whole records at a time (write) and closed; fdatasync is what a clean
  // close may ask. After a short write (disk full) the writer cuts the file back to its last
  // whole record with ftruncate, so that a reader never meets a torn record.
  p.allow(SCMP_SYS(fsync));
  p.allow(SCMP_SYS(fdatasync));
  p.allow(SCMP_SYS(ftruncate));

  // --- PCAP-over-IP out (--pcapoveripconnect) ----------------------------------------------------
  // IPv4 and IPv6 streams. Other families are refused softly: KJ resolves a host name with
  // getaddrinfo, which tries netlink, nscd's unix socket and DNS over UDP; refused, the lookup
  // fails and is retried later, instead of killing the recorder. Give IP addresses.
  p.allow(SCMP_SYS(socket), {SCMP_A0(SCMP_CMP_EQ, AF_INET),
                             SCMP_A1(SCMP_CMP_MASKED_EQ, SOCKET_TYPE_MASK, SOCK_STREAM)});
  p.allow(SCMP_SYS(socket), {SCMP_A0(SCMP_CMP_EQ, AF_INET6),
                             SCMP_A1(SCMP_CMP_MASKED_EQ, SOCKET_TYPE_MASK, SOCK_STREAM)});
  p.refuse(SCMP_SYS(socket), EACCES, {SCMP_A0(SCMP_CMP_EQ, AF_UNIX)});
  p.refuse(SCMP_SYS(socket), EACCES, {SCMP_A0(SCMP_CMP_EQ, AF_NETLINK)});
  p.refuse(SCMP_SYS(socket), EACCES, {SCMP_A0(SCMP_CMP_EQ, AF_INET),
                                      SCMP_A1(SCMP_CMP_MASKED_EQ, SOCKET_TYPE_MASK, SOCK_DGRAM)});
  p.refuse(SCMP_SYS(socket), EACCES, {SCMP_A0(SCMP_CMP_EQ, AF_INET6),
                                      SCMP_A1(SCMP_CMP_MASKED_EQ, SOCKET_TYPE_MASK, SOCK_DGRAM)});

  // --- Threads -------------------------------------------------------------------------------
  // KJ runs each host name lookup (--pcapoveripconnect) on a thread of its own: clone only with
  // CLONE_THREAD, never a new process.
  p.allow(SCMP_SYS(clone), {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)});
}

}  // namespace tlstap
