// EmbeddedRecorder with stand-ins for the supervisor (small shell scripts named by
// TLSTAP_RECORDER): the arguments it gets, the control socket on fd 3, nothing else inherited,
// and its exit status. The real supervisor is tested in supervised-recorder-source-test.c++.
#include "front/embedded-recorder.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <kj/debug.h>
#include <kj/vector.h>


namespace tlstap {
namespace {

// A temporary directory holding one stand-in recorder script, named by TLSTAP_RECORDER while the
// object lives.
class FakeRecorderScript {
public:
  explicit FakeRecorderScript(kj::StringPtr body) {
    char dirTemplate[] = "/tmp/tlstap-embedded-XXXXXX";
    KJ_ASSERT(mkdtemp(dirTemplate) != nullptr);
    dir = kj::str(dirTemplate);
    script = kj::str(dir, "/recorder.sh");
    auto text = kj::str("#!/bin/sh\n", body);
    kj::AutoCloseFd fd(open(script.cStr(), O_WRONLY | O_CREAT | O_CLOEXEC, 0755));
    KJ_ASSERT(fd.get() >= 0);
    KJ_ASSERT(write(fd, text.begin(), text.size()) == ssize_t(text.size()));
    setenv("TLSTAP_RECORDER", script.cStr(), 1);
  }
  ~FakeRecorderScript() {
    unsetenv("TLSTAP_RECORDER");
    KJ_SYSCALL(system(kj::str("rm -rf '", dir, "'").cStr()));
  }

  kj::String read(kj::StringPtr name) const {
    kj::AutoCloseFd fd(open(kj::str(dir, "/", name).cStr(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return kj::str("<missing>");
    kj::Vector<char> all;
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) all.addAll(buffer, buffer + n);
    all.add('\0');
    return kj::String(all.releaseAsArray());
  }

  kj::String dir;
  kj::String script;
};

TEST(EmbeddedRecorder, ArgumentsPassTheRecordingOptionsThrough) {
  kj::String overIp[] = {kj::str("57012"), kj::str("127.0.0.1:57013")};
  kj::String connect[] = {kj::str("analyst.example:57014")};
  RecordingOutputs outputs;
  outputs.outputDir = "/var/log/tlstap"_kj;
  outputs.writeFile = "/tmp/all.pcap"_kj;
  outputs.pcapOverIp = overIp;
  outputs.pcapOverIpConnect = connect;
  outputs.autoflushSeconds = 5;
  outputs.retainHours = 48;
  outputs.maxBytes = uint64_t(20) << 30;
  outputs.statsIntervalSeconds = 60;
  outputs.verbose = true;
  auto args = recorderArguments(outputs);
  EXPECT_EQ(kj::strArray(args, " "),
            "-o /var/log/tlstap -w /tmp/all.pcap --pcapoverip 57012 "
            "--pcapoverip 127.0.0.1:57013 --pcapoveripconnect analyst.example:57014 "
            "--autoflush 5 --retain-hours 48 --max-bytes 21474836480 --stats-interval 60 -v");

  RecordingOutputs minimal;
  minimal.outputDir = "out"_kj;
  EXPECT_EQ(kj::strArray(recorderArguments(minimal), " "),
            "-o out --autoflush 1");

  // Started as root, the front passes the recorder's own user on.
  minimal.user = "tlstap-rec"_kj;
  EXPECT_EQ(kj::strArray(recorderArguments(minimal), " "), "-o out --autoflush 1 --user tlstap-rec");
}

TEST(EmbeddedRecorder, EnvironmentKeepsOnlyWhatTheRecorderMayNeed) {
  const char* const from[] = {"PATH=/usr/bin:/bin", "P12_PASSWORD=secret", "TZ=UTC",
                              "LC_ALL=C.UTF-8", "LANG=C", "PATHS_ELSEWHERE=x", "HOME=/root",
                              "LD_PRELOAD=/tmp/evil.so", "ASAN_OPTIONS=detect_leaks=0",
                              nullptr};
  EXPECT_EQ(kj::strArray(recorderEnvironment(from), " "),
            "PATH=/usr/bin:/bin TZ=UTC LC_ALL=C.UTF-8 LANG=C ASAN_OPTIONS=detect_leaks=0");
}

TEST(EmbeddedRecorder, SupervisorGetsItsArgumentsAndTheControlSocketOnFd3AndNothingElse) {
  // Saves its arguments and open fds, greets on fd 3, then records what arrives until EOF.
  FakeRecorderScript fake(
      "dir=$(dirname \"$0\")\n"
      "printf '%s\\n' \"$@\" > \"$dir/args\"\n"
      "ls /proc/$$/fd > \"$dir/fds\"\n"
      "printf '%s' \"${TLSTAP_TEST_PASSWORD-unset}\" > \"$dir/password\"\n"
      "printf ready >&3\n"
      "cat <&3 > \"$dir/got\"\n"
      "exit 0\n");
  // A password the front reads from its environment (env:NAME), set before the child starts.
  setenv("TLSTAP_TEST_PASSWORD", "secret", 1);
  // An fd the front forgot to mark close-on-exec (a listening socket, a key file...).
  kj::AutoCloseFd leaky(fcntl(STDERR_FILENO, F_DUPFD, 200));
  ASSERT_EQ(leaky.get(), 200);

  RecordingOutputs outputs;
  outputs.outputDir = "/some/dir"_kj;
  EmbeddedRecorder recorder;
  KJ_IF_MAYBE(error, recorder.start(outputs)) FAIL() << error->cStr();
  EXPECT_EQ(recorder.binary(), fake.script);
  auto link = recorder.takeControl();
  int type = 0;
  socklen_t length = sizeof(type);
  ASSERT_EQ(getsockopt(link, SOL_SOCKET, SO_TYPE, &type, &length), 0);
  EXPECT_EQ(type, SOCK_SEQPACKET) << "requests and answers must arrive whole";
  char greeting[5];
  ASSERT_EQ(::read(link, greeting, 5), 5);
  EXPECT_EQ(kj::StringPtr(greeting, 5), "ready");
  ASSERT_EQ(::write(link, "bye", 3), 3);
  link = nullptr;  // EOF for the child, which then exits
  EXPECT_EQ(recorder.wait(), 0);

  EXPECT_EQ(fake.read("args"), "--supervise\n3\n-o\n/some/dir\n--autoflush\n1\n");
  unsetenv("TLSTAP_TEST_PASSWORD");
  EXPECT_EQ(fake.read("got"), "bye");
  EXPECT_EQ(fake.read("password"), "unset") << "the environment's password reached the child";
  auto fds = fake.read("fds");
  kj::Vector<kj::String> open;
  for (const char* p = fds.cStr(); *p != '\0';) {
    const char* end = strchr(p, '\n');
    if (end == nullptr) end = p + strlen(p);
    open.add(kj::heapString(p, end - p));
    p = *end == '\0' ? end : end + 1;
  }
  bool has3 = false;
  for (auto& fd : open) {
    if (fd == "3") has3 = true;
    EXPECT_NE(fd, "200") << "an fd of the front leaked into the recorder";
  }
  EXPECT_TRUE(has3);
}

TEST(EmbeddedRecorder, ExitStatusOfTheSupervisorIsReported) {
  // The supervisor exits with the status of a recorder that refused its options.
  FakeRecorderScript fake("exit 2\n");
  EmbeddedRecorder recorder;
  KJ_IF_MAYBE(error, recorder.start(RecordingOutputs())) FAIL() << error->cStr();
  EXPECT_EQ(recorder.wait(), 2);
  EXPECT_EQ(KJ_ASSERT_NONNULL(recorder.checkExited()), "tlstap-recorder exited with status 2");
}

TEST(EmbeddedRecorder, MissingBinaryIsAOneLineError) {
  setenv("TLSTAP_RECORDER", "/nonexistent/tlstap-recorder", 1);
  EmbeddedRecorder recorder;
  auto error = recorder.start(RecordingOutputs());
  unsetenv("TLSTAP_RECORDER");
  KJ_IF_MAYBE(e, error) {
    EXPECT_NE(strstr(e->cStr(), "/nonexistent/tlstap-recorder"), nullptr) << e->cStr();
    EXPECT_EQ(strchr(e->cStr(), '\n'), nullptr);
  } else {
    ADD_FAILURE() << "started a recorder that does not exist";
  }
}

TEST(EmbeddedRecorder, DestructorClosesTheLinkAndReapsTheChild) {
  FakeRecorderScript fake("cat <&3 >/dev/null\nexit 0\n");
  pid_t pid;
  {
    EmbeddedRecorder recorder;
    KJ_IF_MAYBE(error, recorder.start(RecordingOutputs())) FAIL() << error->cStr();
    pid = recorder.pid();
    ASSERT_GT(pid, 0);
    EXPECT_EQ(kill(pid, 0), 0);
  }
  // Reaped: the pid is no child of ours any more.
  EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

}  // namespace
}  // namespace tlstap
