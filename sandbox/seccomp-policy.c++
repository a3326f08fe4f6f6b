#include "seccomp-policy.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <kj/vector.h>

#include "common/log.h"

namespace tlstap {

namespace {

void writeAll(const char* text, size_t length) {
  while (length > 0) {
    ssize_t n = ::write(STDERR_FILENO, text, length);
    if (n <= 0) return;
    text += n;
    length -= size_t(n);
  }
}

// DEBUG_LOG only: names the refused call on stderr and makes it return -ENOSYS. Formats by hand
// (no stdio in a signal handler); the name lookup allocates, which is acceptable for a switch
// that exists to diagnose and is never used in production.
void onSigsys(int, siginfo_t* info, void* context) {
  int savedErrno = errno;
  char line[160];
  char number[16];
  int n = info->si_syscall;
  int digits = 0;
  char reversed[16];
  do {
    reversed[digits++] = char('0' + n % 10);
    n /= 10;
  } while (n > 0 && digits < 15);
  for (int i = 0; i < digits; i++) number[i] = reversed[digits - 1 - i];
  number[digits] = '\0';
  char* name = seccomp_syscall_resolve_num_arch(info->si_arch, info->si_syscall);
  size_t length = 0;
  for (const char* part : {"seccomp: refused system call ", (const char*)number, " (",
                           name == nullptr ? "?" : name, ")\n"}) {
    size_t partLength = strlen(part);
    if (length + partLength >= sizeof(line)) break;
    memcpy(line + length, part, partLength);
    length += partLength;
  }
  free(name);
  writeAll(line, length);
#if defined(__x86_64__)
  static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
#elif defined(__aarch64__)
  static_cast<ucontext_t*>(context)->uc_mcontext.regs[0] = -ENOSYS;
#else
  (void)context;
#endif
  errno = savedErrno;
}

}  // namespace

SeccompPolicy::SeccompPolicy(Mode mode, pid_t self)
    : currentMode(mode),
      selfPid(self),
      context(seccomp_init(mode == Mode::ENFORCE ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_TRAP)) {
  KJ_ASSERT(context != nullptr, "seccomp_init failed");
  // A call made through another ABI (i386 int 0x80, x32) is outside every policy.
  KJ_ASSERT(seccomp_attr_set(context, SCMP_FLTATR_ACT_BADARCH,
                             mode == Mode::ENFORCE ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_TRAP) == 0);
  // Every thread gets the filter, including threads started before it was loaded.
  KJ_ASSERT(seccomp_attr_set(context, SCMP_FLTATR_CTL_TSYNC, 1) == 0);
}

SeccompPolicy::~SeccompPolicy() noexcept { seccomp_release(context); }

SeccompPolicy::Mode SeccompPolicy::modeFromEnvironment() {
  const char* value = getenv("TLSTAP_SECCOMP_LOG");
  return value != nullptr && strcmp(value, "1") == 0 ? Mode::DEBUG_LOG : Mode::ENFORCE;
}

void SeccompPolicy::addRule(uint32_t action, int syscall,
                            std::initializer_list<scmp_arg_cmp> conditions) {
  kj::Vector<scmp_arg_cmp> list;
  for (auto& condition : conditions) list.add(condition);
  int rc = seccomp_rule_add_array(context, action, syscall, list.size(), list.begin());
  KJ_REQUIRE(rc == 0, "seccomp_rule_add", syscall, strerror(-rc));
}

void SeccompPolicy::allow(int syscall, std::initializer_list<scmp_arg_cmp> conditions) {
  addRule(SCMP_ACT_ALLOW, syscall, conditions);
}

void SeccompPolicy::refuse(int syscall, int error,
                           std::initializer_list<scmp_arg_cmp> conditions) {
  addRule(SCMP_ACT_ERRNO(error), syscall, conditions);
}

kj::Maybe<kj::String> SeccompPolicy::load() {
  if (currentMode == Mode::DEBUG_LOG) {
    logWarning("TLSTAP_SECCOMP_LOG=1: calls outside the seccomp policy are reported and fail "
               "instead of killing the process (for diagnosis only)");
    struct sigaction action = {};
    action.sa_sigaction = &onSigsys;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSYS, &action, nullptr) != 0) {
      return kj::str("sigaction(SIGSYS): ", strerror(errno));
    }
  }
  int rc = seccomp_load(context);
  if (rc != 0) return kj::str("seccomp_load: ", strerror(-rc));
  return nullptr;
}

kj::String SeccompPolicy::exportPfc() const {
  int fd = memfd_create("tlstap-seccomp-pfc", MFD_CLOEXEC);
  KJ_SYSCALL(fd, "memfd_create");
  kj::AutoCloseFd owned(fd);
  int rc = seccomp_export_pfc(context, fd);
  KJ_REQUIRE(rc == 0, "seccomp_export_pfc", strerror(-rc));
  KJ_SYSCALL(lseek(fd, 0, SEEK_SET));
  kj::Vector<char> text;
  char buffer[4096];
  for (;;) {
    ssize_t n;
    KJ_SYSCALL(n = ::read(fd, buffer, sizeof(buffer)));
    if (n == 0) break;
    text.addAll(buffer, buffer + n);
  }
  text.add('\0');
  return kj::String(text.releaseAsArray());
}

}  // namespace tlstap
