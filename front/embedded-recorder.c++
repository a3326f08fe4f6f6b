#include "embedded-recorder.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <kj/debug.h>
#include <kj/vector.h>

#include "common/log.h"
#include "common/supervisor-protocol.h"

extern char** environ;

namespace tlstap {

namespace {

constexpr int CHILD_CONTROL_FD = supervisor::CONTROL_FD;
// How long the destructor gives the supervisor (and its recorder) to finish before killing it.
constexpr int EXIT_GRACE_MS = 5000;

kj::String directoryOfThisProgram() {
  char buffer[4096];
  ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (n <= 0) return kj::str(".");
  buffer[n] = '\0';
  char* slash = strrchr(buffer, '/');
  if (slash == nullptr) return kj::str(".");
  *slash = '\0';
  return kj::str(buffer);
}

// posix_spawn's attributes and file actions, each destroyed with its owner.
struct SpawnAttributes {
  posix_spawnattr_t attr;
  SpawnAttributes() { posix_spawnattr_init(&attr); }
  ~SpawnAttributes() { posix_spawnattr_destroy(&attr); }
  KJ_DISALLOW_COPY(SpawnAttributes);
};

struct SpawnFileActions {
  posix_spawn_file_actions_t actions;
  SpawnFileActions() { posix_spawn_file_actions_init(&actions); }
  ~SpawnFileActions() { posix_spawn_file_actions_destroy(&actions); }
  KJ_DISALLOW_COPY(SpawnFileActions);
};

}  // namespace

kj::Array<kj::String> recorderEnvironment(const char* const* from) {
  // An allow-list, not a deny-list: a password given as env:NAME (or any other secret a service
  // manager put there) must not reach a process that never needs it, whatever its name.
  static const kj::StringPtr NAMES[] = {"PATH"_kj, "TZ"_kj, "LANG"_kj, "LD_LIBRARY_PATH"_kj,
                                        "ASAN_OPTIONS"_kj, "UBSAN_OPTIONS"_kj,
                                        "LSAN_OPTIONS"_kj,
                                        // The seccomp debug switch reaches the recorder too.
                                        "TLSTAP_SECCOMP_LOG"_kj};
  kj::Vector<kj::String> kept;
  for (auto entry = from; entry != nullptr && *entry != nullptr; entry++) {
    kj::StringPtr variable = *entry;
    bool keep = variable.startsWith("LC_");
    for (auto name : NAMES) {
      keep = keep || (variable.startsWith(name) && variable.size() > name.size() &&
                      variable[name.size()] == '=');
    }
    if (keep) kept.add(kj::heapString(variable));
  }
  return kept.releaseAsArray();
}

kj::Array<kj::String> recorderArguments(const RecordingOutputs& outputs) {
  kj::Vector<kj::String> args;
  KJ_IF_MAYBE(dir, outputs.outputDir) {
    args.add(kj::str("-o"));
    args.add(kj::str(*dir));
  }
  KJ_IF_MAYBE(file, outputs.writeFile) {
    args.add(kj::str("-w"));
    args.add(kj::str(*file));
  }
  for (auto& target : outputs.pcapOverIp) {
    args.add(kj::str("--pcapoverip"));
    args.add(kj::str(target));
  }
  for (auto& target : outputs.pcapOverIpConnect) {
    args.add(kj::str("--pcapoveripconnect"));
    args.add(kj::str(target));
  }
  args.add(kj::str("--autoflush"));
  args.add(kj::str(outputs.autoflushSeconds));
  if (outputs.retainHours > 0) {
    args.add(kj::str("--retain-hours"));
    args.add(kj::str(outputs.retainHours));
  }
  if (outputs.maxBytes > 0) {
    args.add(kj::str("--max-bytes"));
    args.add(kj::str(outputs.maxBytes));
  }
  if (outputs.statsIntervalSeconds != DEFAULT_STATS_INTERVAL_SECONDS) {
    args.add(kj::str("--stats-interval"));
    args.add(kj::str(outputs.statsIntervalSeconds));
  }
  if (outputs.verbose) args.add(kj::str("-v"));
  KJ_IF_MAYBE(user, outputs.user) {
    args.add(kj::str("--user"));
    args.add(kj::str(*user));
  }
  return args.releaseAsArray();
}

kj::Maybe<kj::String> findRecorderBinary(kj::String& path) {
  const char* override = getenv("TLSTAP_RECORDER");
  if (override != nullptr && *override != '\0') {
    if (access(override, X_OK) != 0) {
      return kj::str("TLSTAP_RECORDER=", override, ": ", strerror(errno));
    }
    path = kj::str(override);
    return nullptr;
  }
  auto here = directoryOfThisProgram();
  kj::String candidates[] = {kj::str(here, "/tlstap-recorder"),
                             kj::str(here, "/../recorder/tlstap-recorder")};
  for (auto& candidate : candidates) {
    if (access(candidate.cStr(), X_OK) == 0) {
      path = kj::mv(candidate);
      return nullptr;
    }
  }
  return kj::str("tlstap-recorder not found beside ", here,
                 " (install it there or set TLSTAP_RECORDER)");
}

// ---------------------------------------------------------------------------------------------

EmbeddedRecorder::~EmbeddedRecorder() noexcept {
  control = nullptr;  // the supervisor ends when its control socket closes
  if (child <= 0 || reaped) return;
  for (int waited = 0; waited < EXIT_GRACE_MS; waited += 10) {
    if (checkExited() != nullptr) return;
    struct timespec pause = {0, 10 * 1000 * 1000};
    nanosleep(&pause, nullptr);
  }
  logError("the embedded recorder's supervisor (pid ", child, ") did not exit; killing it");
  kill(child, SIGKILL);
  int result;
  while (waitpid(child, &result, 0) < 0 && errno == EINTR) {}
}

kj::Maybe<kj::String> EmbeddedRecorder::start(const RecordingOutputs& outputs) {
  KJ_REQUIRE(child <= 0, "the embedded recorder was already started");
  KJ_IF_MAYBE(error, findRecorderBinary(path)) return kj::mv(*error);

  int fds[2];
  // SOCK_SEQPACKET: each request and answer arrives whole (common/supervisor-protocol.h).
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    return kj::str("embedded recorder: socketpair: ", strerror(errno));
  }
  kj::AutoCloseFd ours(fds[0]);
  kj::AutoCloseFd theirs(fds[1]);
  if (theirs.get() == CHILD_CONTROL_FD) {
    // dup2() onto itself would keep FD_CLOEXEC on some libcs: move it out of the way first.
    int moved = fcntl(theirs, F_DUPFD_CLOEXEC, 10);
    if (moved < 0) return kj::str("embedded recorder: fcntl: ", strerror(errno));
    theirs = kj::AutoCloseFd(moved);
  }

  SpawnFileActions files;
  // The copy at fd 3 is made without FD_CLOEXEC; every other fd of the front (listening sockets,
  // certificate files, the front's own end) stays behind.
  posix_spawn_file_actions_adddup2(&files.actions, theirs, CHILD_CONTROL_FD);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&files.actions, CHILD_CONTROL_FD + 1);
#endif

  SpawnAttributes attributes;
  // The front ignores SIGPIPE and may block signals; the supervisor starts from the defaults. Its
  // own process group, which its recorders share, keeps a terminal's Ctrl-C away from them (see
  // the header).
  sigset_t all;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attributes.attr, &all);
  posix_spawnattr_setsigmask(&attributes.attr, &none);
  posix_spawnattr_setpgroup(&attributes.attr, 0);
  posix_spawnattr_setflags(&attributes.attr,
                           POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);

  auto args = recorderArguments(outputs);
  auto controlFd = kj::str(CHILD_CONTROL_FD);
  kj::Vector<char*> argv;
  argv.add(const_cast<char*>(path.cStr()));
  argv.add(const_cast<char*>(supervisor::MODE_OPTION));
  argv.add(const_cast<char*>(controlFd.cStr()));
  for (auto& arg : args) argv.add(const_cast<char*>(arg.cStr()));
  argv.add(nullptr);

  // glibc's posix_spawn is a vfork-like clone followed by exec: no copy of the front's memory,
  // which holds the keys by now, is ever made for the child.
  pid_t pid;
  auto environment = recorderEnvironment(environ);
  kj::Vector<char*> envp;
  for (auto& variable : environment) envp.add(const_cast<char*>(variable.cStr()));
  envp.add(nullptr);
  int error = posix_spawn(&pid, path.cStr(), &files.actions, &attributes.attr, argv.begin(),
                          envp.begin());
  if (error != 0) return kj::str("cannot run ", path, ": ", strerror(error));
  child = pid;
  control = kj::mv(ours);
  logDebug("started the embedded recorder's supervisor ", path, " (pid ", child, ")");
  return nullptr;  // `theirs` closes here: from now on only the child holds that end
}

kj::AutoCloseFd EmbeddedRecorder::takeControl() { return kj::mv(control); }

int EmbeddedRecorder::wait() {
  KJ_REQUIRE(child > 0, "the embedded recorder was not started");
  while (!reaped) {
    int result;
    pid_t pid = waitpid(child, &result, 0);
    if (pid == child) {
      reaped = true;
      status = result;
    } else if (errno != EINTR) {
      // ECHILD: someone reaped it for us (SIGCHLD ignored); its status is gone.
      KJ_FAIL_SYSCALL("waitpid", errno, child);
    }
  }
  return exitCode(status);
}

kj::Maybe<kj::String> EmbeddedRecorder::checkExited() {
  if (child <= 0) return nullptr;
  if (!reaped) {
    int result;
    pid_t pid = waitpid(child, &result, WNOHANG);
    if (pid == 0 || (pid < 0 && errno == EINTR)) return nullptr;
    if (pid < 0) {
      // ECHILD: already reaped elsewhere (SIGCHLD ignored). It is gone; never signal that pid.
      reaped = true;
      return kj::str("tlstap-recorder exited (status unknown)");
    }
    reaped = true;
    status = result;
  }
  return describe(status);
}

kj::String EmbeddedRecorder::describe(int status) {
  if (WIFSIGNALED(status)) {
    return kj::str("tlstap-recorder was killed by signal ", WTERMSIG(status), " (",
                   strsignal(WTERMSIG(status)), ")");
  }
  return kj::str("tlstap-recorder exited with status ", WEXITSTATUS(status));
}

int EmbeddedRecorder::exitCode(int status) {
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

}  // namespace tlstap
