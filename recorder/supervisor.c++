#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <kj/array.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <kj/vector.h>

#include "common/log.h"
#include "common/options.h"
#include "common/supervisor-protocol.h"
#include "recorder/recorder-options.h"
#include "sandbox/lock-down.h"

extern char** environ;

namespace tlstap {

namespace {

constexpr const char* PROGRAM = "tlstap-recorder supervisor";

// Restart delays after a recorder died: doubling from the first to the last, and back to the
// first once a recorder has lived STABLE_RUN_MS (a crash now and then is not a crash loop).
constexpr int64_t FIRST_DELAY_MS = 100;
constexpr int64_t MAX_DELAY_MS = 5000;
constexpr int64_t STABLE_RUN_MS = 10000;
// A recorder that should exit (its link is closed) gets this long to finish its files before
// SIGTERM, and as long again before SIGKILL.
constexpr int64_t EXIT_GRACE_MS = 10000;
// The index of the last of "tlstap-recorder --connection-fd 3" in the recorder's argv.
constexpr size_t RESTARTED_AFTER_ARG = 2;
// Socket buffers of each link (see startRecorder()).
constexpr int LINK_BUFFER_BYTES = 4 << 20;

int64_t nowMs() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

kj::String describeExit(int status) {
  if (WIFSIGNALED(status)) {
    return kj::str("was killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)),
                   ")");
  }
  return kj::str("exited with status ", WEXITSTATUS(status));
}

kj::String seconds(int64_t ms) { return kj::str(ms / 1000, ".", ms % 1000 / 100, " s"); }

void setDefaultSignals() {
  struct sigaction defaults;
  memset(&defaults, 0, sizeof(defaults));
  defaults.sa_handler = SIG_DFL;
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD}) {
    sigaction(signal, &defaults, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

class Supervisor {
public:
  Supervisor(kj::AutoCloseFd control, kj::AutoCloseFd program, kj::AutoCloseFd childSignals,
             kj::Array<kj::String> args)
      : control(kj::mv(control)), program(kj::mv(program)),
        childSignals(kj::mv(childSignals)), recorderArgs(kj::mv(args)) {}
  KJ_DISALLOW_COPY(Supervisor);

  int run();

private:
  kj::AutoCloseFd control;       // to the front; closed once supervision ends
  kj::AutoCloseFd program;       // this program's executable (see startRecorder())
  kj::AutoCloseFd childSignals;  // signalfd for SIGCHLD and SIGUSR1
  kj::Array<kj::String> recorderArgs;

  pid_t recorder = -1;
  kj::AutoCloseFd spareLink;  // the front's end of the running recorder's link, not handed out
  unsigned started = 0;
  int64_t startedAtMs = 0;
  int64_t delayMs = FIRST_DELAY_MS;
  kj::Maybe<int64_t> restartAtMs;  // when to start a recorder again (none running)
  bool requestPending = false;
  bool refused = false;            // a recorder exited 2: never start one again
  bool ended = false;              // the front is gone (or misbehaved): finish and exit
  int lastStatus = -1;             // wait status of the last recorder that exited
  int64_t stopDeadlineMs = -1;     // when a recorder that should exit gets the next signal
  int stopSignal = SIGTERM;

  void startRecorder();
  void answer();
  void readRequest();
  void sendReply(kj::byte reply, int fd);
  void reapChildren();
  void onRecorderExit(int status);
  void endSupervision();
  void expectRecorderExit();
  void escalateStop();
  int pollTimeoutMs();
  int exitStatus() const;
};

int Supervisor::run() {
  // The first recorder starts at the front's first request, when the front's own start-up has
  // succeeded: a front that fails (a bad certificate) leaves no recorder and no empty file.
  for (;;) {
    if (ended && recorder < 0) return exitStatus();
    if (!ended && !refused && recorder < 0) {
      KJ_IF_MAYBE(at, restartAtMs) {
        if (nowMs() >= *at) startRecorder();
      }
    }
    if (!ended && requestPending) answer();
    escalateStop();
    if (ended && recorder < 0) return exitStatus();

    struct pollfd fds[2];
    int count = 0;
    fds[count++] = {childSignals.get(), POLLIN, 0};
    if (!ended) fds[count++] = {control.get(), POLLIN, 0};
    int ready = poll(fds, count, pollTimeoutMs());
    if (ready < 0 && errno != EINTR) {
      logError("poll: ", strerror(errno));
      return 1;
    }
    if (ready <= 0) continue;
    if (fds[0].revents != 0) reapChildren();
    if (count > 1 && fds[1].revents != 0) readRequest();
  }
}

void Supervisor::startRecorder() {
  restartAtMs = nullptr;
  auto failed = [this](kj::StringPtr what) {
    logError("cannot start tlstap-recorder: ", what, ": ", strerror(errno), "; trying again in ",
             seconds(delayMs));
    restartAtMs = nowMs() + delayMs;
    delayMs = kj::min(delayMs * 2, MAX_DELAY_MS);
  };
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return failed("socketpair");
  kj::AutoCloseFd ours(fds[0]);
  kj::AutoCloseFd theirs(fds[1]);
  // The default (~200 KiB) fills with three batches: the front then waits on the recorder and
  // both wake once per batch. A few MiB lets the recorder take many batches per wake-up; Cap'n
  // Proto sizes its flow-control window from this too. Best effort: capped by net.core.wmem_max.
  int linkBuffer = LINK_BUFFER_BYTES;
  setsockopt(ours, SOL_SOCKET, SO_SNDBUF, &linkBuffer, sizeof(linkBuffer));
  setsockopt(theirs, SOL_SOCKET, SO_RCVBUF, &linkBuffer, sizeof(linkBuffer));

  // Everything the child needs is built before fork(): it only makes system calls. A recorder
  // started in place of another is told so (after --connection-fd 3), so that it writes a -w
  // FILE of its own rather than failing on its predecessor's.
  static const char RESTARTED[] = "--restarted";
  kj::Vector<char*> argv(recorderArgs.size() + 2);
  for (auto i : kj::indices(recorderArgs)) {
    argv.add(const_cast<char*>(recorderArgs[i].cStr()));
    if (i == RESTARTED_AFTER_ARG && started > 0) argv.add(const_cast<char*>(RESTARTED));
  }
  argv.add(nullptr);
  static const char EXEC_FAILED[] = "tlstap-recorder supervisor: error: cannot execute "
                                    "tlstap-recorder\n";

  pid_t pid = fork();
  if (pid < 0) return failed("fork");
  if (pid == 0) {
    // The recorder starts from default signal handling; every fd of ours is close-on-exec but
    // its link, which dup2() puts at the fd number it is told.
    setDefaultSignals();
    int link = theirs.get();
    if (link == supervisor::RECORDER_LINK_FD) {
      fcntl(link, F_SETFD, 0);
    } else if (dup2(link, supervisor::RECORDER_LINK_FD) < 0) {
      _exit(127);
    }
    // The program this supervisor was started as, by the fd opened then: a package upgrade
    // meanwhile must not give the running front a recorder of another version.
    fexecve(program, argv.begin(), environ);
    ssize_t ignored = write(STDERR_FILENO, EXEC_FAILED, sizeof(EXEC_FAILED) - 1);
    (void)ignored;
    _exit(127);
  }
  recorder = pid;
  spareLink = kj::mv(ours);
  startedAtMs = nowMs();
  if (started++ == 0) {
    logDebug("started tlstap-recorder (pid ", pid, ")");
  } else {
    logInfo("started tlstap-recorder again (pid ", pid, ")");
  }
}

void Supervisor::answer() {
  if (refused) {
    if (recorder >= 0) return;  // not possible: refused only once none runs
    sendReply(supervisor::REPLY_REFUSED, -1);
    requestPending = false;
    endSupervision();
    return;
  }
  if (recorder < 0) {
    // Started at once unless a crash delay runs; then the loop starts it when that ends.
    if (restartAtMs == nullptr) startRecorder();
    if (recorder < 0) return;
  }
  if (spareLink.get() < 0) {
    // The front asks again while the recorder it was given still runs: it has given up that
    // link, and the recorder exits when the front's end is closed. A new one starts after that.
    expectRecorderExit();
    return;
  }
  int fd = spareLink.get();
  sendReply(supervisor::REPLY_LINK, fd);
  // Only the front holds its end now, so the recorder sees the link close when the front does.
  spareLink = nullptr;
  requestPending = false;
}

void Supervisor::readRequest() {
  kj::byte buffer[2];
  struct iovec piece = {buffer, sizeof(buffer)};
  struct msghdr message;
  memset(&message, 0, sizeof(message));
  message.msg_iov = &piece;
  message.msg_iovlen = 1;
  // No room for ancillary data: an fd the front attaches is closed by the kernel (MSG_CTRUNC).
  ssize_t n = recvmsg(control, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    // EOF (a zero-length message on a SOCK_SEQPACKET socket looks the same, and is no request).
    logDebug("the front closed the control socket");
    endSupervision();
    return;
  }
  if (n != 1 || (message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
      buffer[0] != supervisor::REQUEST_LINK || requestPending) {
    logError("unexpected message on the control socket; ending supervision");
    endSupervision();
    return;
  }
  requestPending = true;
}

void Supervisor::sendReply(kj::byte reply, int fd) {
  struct iovec piece = {&reply, 1};
  struct msghdr message;
  memset(&message, 0, sizeof(message));
  message.msg_iov = &piece;
  message.msg_iovlen = 1;
  alignas(struct cmsghdr) char space[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    memset(space, 0, sizeof(space));
    message.msg_control = space;
    message.msg_controllen = sizeof(space);
    struct cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &fd, sizeof(int));
  }
  // Never blocks: one reply per request, so a front that does not read cannot stall this loop.
  if (sendmsg(control, &message, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
    logDebug("cannot answer the front: ", strerror(errno));
    endSupervision();
  }
}

void Supervisor::reapChildren() {
  struct signalfd_siginfo info;
  while (read(childSignals, &info, sizeof(info)) == sizeof(info)) {
    // `pkill -USR1 tlstap-recorder` reaches this process too: the counters line is the
    // recorder's to print.
    if (info.ssi_signo == SIGUSR1 && recorder > 0) kill(recorder, SIGUSR1);
  }
  // Signals merge, so every child that has exited is collected, not one per SIGCHLD.
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    if (pid == recorder) onRecorderExit(status);
  }
}

void Supervisor::onRecorderExit(int status) {
  pid_t pid = recorder;
  recorder = -1;
  spareLink = nullptr;
  stopDeadlineMs = -1;
  lastStatus = status;
  int64_t ran = nowMs() - startedAtMs;
  if (ended) {
    logDebug("tlstap-recorder (pid ", pid, ") ", describeExit(status));
    return;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 2 && started == 1) {
    // The first recorder refused its options, and said why in the one line the user should
    // see: the same options will not do better. A later recorder that exits 2 was given
    // options that worked before, so what it met (a port taken meanwhile, a directory made
    // unwritable) may pass: it is started again like one that crashed.
    refused = true;
    return;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    logDebug("tlstap-recorder (pid ", pid, ") exited; starting one when the front asks");
    return;
  }
  if (ran >= STABLE_RUN_MS) delayMs = FIRST_DELAY_MS;
  logWarning("tlstap-recorder (pid ", pid, ") ", describeExit(status), "; starting it again in ",
             seconds(delayMs));
  restartAtMs = nowMs() + delayMs;
  delayMs = kj::min(delayMs * 2, MAX_DELAY_MS);
}

void Supervisor::endSupervision() {
  if (ended) return;
  ended = true;
  control = nullptr;
  // With the link the front never took closed too, the recorder has no reader left: it
  // finishes its files and exits.
  spareLink = nullptr;
  restartAtMs = nullptr;
  if (recorder >= 0) expectRecorderExit();
}

void Supervisor::expectRecorderExit() {
  if (stopDeadlineMs >= 0) return;
  stopDeadlineMs = nowMs() + EXIT_GRACE_MS;
  stopSignal = SIGTERM;
}

void Supervisor::escalateStop() {
  if (recorder < 0 || stopDeadlineMs < 0 || nowMs() < stopDeadlineMs) return;
  logWarning("tlstap-recorder (pid ", recorder, ") did not exit after its link closed; sending ",
             stopSignal == SIGTERM ? "SIGTERM" : "SIGKILL");
  kill(recorder, stopSignal);
  if (stopSignal == SIGTERM) {
    stopSignal = SIGKILL;
    stopDeadlineMs = nowMs() + EXIT_GRACE_MS;
  } else {
    stopDeadlineMs = -1;  // SIGKILL cannot be ignored: the exit follows
  }
}

int Supervisor::pollTimeoutMs() {
  int64_t next = -1;
  auto consider = [&next](int64_t at) {
    if (at >= 0 && (next < 0 || at < next)) next = at;
  };
  KJ_IF_MAYBE(at, restartAtMs) {
    if (!ended && !refused && recorder < 0) consider(*at);
  }
  if (recorder >= 0) consider(stopDeadlineMs);
  if (next < 0) return -1;
  return int(kj::max(next - nowMs(), int64_t(0)));
}

int Supervisor::exitStatus() const {
  if (refused) return 2;
  if (started == 0) return 0;  // the front never asked: nothing was recorded, nothing failed
  if (lastStatus >= 0 && WIFEXITED(lastStatus) && WEXITSTATUS(lastStatus) == 0) return 0;
  return 1;
}

// The directories the recorders write in, opened O_PATH for the supervisor's Landlock rules:
// -o DIR (or, while DIR does not exist, the directory the first recorder makes it in) and the
// directory of -w FILE (where a recorder started again writes FILE-N). A path that cannot be
// opened gets no rule: the recorder itself then refuses its options with the reason.
kj::Vector<kj::AutoCloseFd> recorderWriteDirectories(kj::ArrayPtr<const kj::String> args) {
  RecorderOptions options;
  OptionParser parser(PROGRAM, "");
  addRecorderOptions(parser, options);
  kj::Vector<kj::StringPtr> view;
  for (auto& arg : args.slice(1, args.size())) view.add(arg);
  kj::Vector<kj::AutoCloseFd> dirs;
  if (parser.parse(view) != nullptr) return dirs;  // the recorder says what is wrong
  auto parentOf = [](kj::StringPtr path) -> kj::String {
    KJ_IF_MAYBE(slash, path.findLast('/')) {
      return *slash == 0 ? kj::str("/") : kj::heapString(path.slice(0, *slash));
    }
    return kj::str(".");
  };
  auto add = [&dirs](kj::StringPtr path) {
    int fd = open(path.cStr(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) dirs.add(fd);
    return fd >= 0;
  };
  KJ_IF_MAYBE(dir, options.outputDir) {
    if (!add(*dir)) add(parentOf(*dir));
  }
  KJ_IF_MAYBE(file, options.writeFile) add(parentOf(*file));
  return dirs;
}

}  // namespace

int runSupervisor(int argc, char** argv) {
  setLogProgram(PROGRAM);
  if (argc < 3) {
    exitWithUsageError(PROGRAM, "--supervise: FD and the recorder's options expected");
  }
  int controlFd = -1;
  KJ_IF_MAYBE(fd, parseUnsigned(argv[2], 3, 65535)) {
    controlFd = int(*fd);
  } else {
    exitWithUsageError(PROGRAM, kj::str("--supervise: '", argv[2], "' is not an fd number"));
  }
  // Only the front's control socket will do: any other fd would be read as requests.
  int type = 0;
  socklen_t length = sizeof(type);
  if (getsockopt(controlFd, SOL_SOCKET, SO_TYPE, &type, &length) != 0 || type != SOCK_SEQPACKET) {
    exitWithUsageError(PROGRAM, kj::str("--supervise: fd ", controlFd,
                                        " is not a SOCK_SEQPACKET socket"));
  }
  fcntl(controlFd, F_SETFD, FD_CLOEXEC);
  kj::AutoCloseFd control(controlFd);

  kj::Vector<kj::String> args;
  args.add(kj::str("tlstap-recorder"));
  args.add(kj::str("--connection-fd"));
  args.add(kj::str(supervisor::RECORDER_LINK_FD));
  for (int i = 3; i < argc; i++) {
    kj::StringPtr arg = argv[i];
    // The supervisor says more only when the recorder does.
    if (arg == "-v" || arg == "--verbose") setLogVerbose(true);
    args.add(kj::heapString(arg));
  }

  kj::AutoCloseFd program(open("/proc/self/exe", O_PATH | O_CLOEXEC));
  if (program.get() < 0) {
    exitWithUsageError(PROGRAM, kj::str("/proc/self/exe: ", strerror(errno)));
  }

  // A terminal's Ctrl-C or a service manager's SIGTERM must not end supervision: the front
  // drains the recording first and then closes the control socket, which is the signal to end.
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  sigset_t watchedSignals;
  sigemptyset(&watchedSignals);
  sigaddset(&watchedSignals, SIGCHLD);
  sigaddset(&watchedSignals, SIGUSR1);
  sigprocmask(SIG_BLOCK, &watchedSignals, nullptr);
  kj::AutoCloseFd childSignals(signalfd(-1, &watchedSignals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (childSignals.get() < 0) {
    exitWithUsageError(PROGRAM, kj::str("signalfd: ", strerror(errno)));
  }

  // Lock-down before the first recorder starts (sandbox/lock-down.h): started as root this
  // process keeps uid 0, since each recorder it starts needs root for its own start-up, but only
  // the few capabilities that start-up uses; then no_new_privs, Landlock (writes only where the
  // recorders write) and a seccomp filter, which every recorder inherits beneath its own.
  // Everything above needed no more than that.
  auto writable = recorderWriteDirectories(args);
  kj::Vector<int> writableFds;
  for (auto& dir : writable) writableFds.add(dir.get());
  KJ_IF_MAYBE(error, lockDownSupervisor(writableFds)) {
    exitWithUsageError(PROGRAM, kj::str("sandbox: ", *error));
  }

  Supervisor supervisor(kj::mv(control), kj::mv(program), kj::mv(childSignals),
                        args.releaseAsArray());
  return supervisor.run();
}

}  // namespace tlstap
