// The supervised embedded recorder end to end: EmbeddedRecorder starts the real
// `tlstap-recorder --supervise` (from the build tree), SupervisedRecorderSource asks it for
// links, and RecorderClient records flows over them into pcap files that tshark must read.
#include "front/supervised-recorder-source.h"

#include <dirent.h>
#include <algorithm>
#include <memory>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <kj/debug.h>
#include <kj/vector.h>

#include "common/event-port.h"
#include "common/supervisor-protocol.h"
#include "front/embedded-recorder.h"
#include "front/recorder-client.h"
#include "sandbox/privileges.h"

namespace tlstap {
namespace {

constexpr auto PATIENCE = 10 * kj::SECONDS;

class TempDir {
public:
  TempDir() {
    char pattern[] = "/tmp/tlstap-supervised-XXXXXX";
    KJ_ASSERT(mkdtemp(pattern) != nullptr);
    path = kj::str(pattern);
    // Started as root, the recorder drops to its default user (tlstap-rec) before it creates
    // its hourly files: the directory is that user's.
    struct passwd* user = geteuid() == 0 ? getpwnam(DEFAULT_RECORDER_USER) : nullptr;
    if (user != nullptr) {
      KJ_SYSCALL(chown(pattern, user->pw_uid, user->pw_gid));
    }
  }
  ~TempDir() { KJ_SYSCALL(system(kj::str("rm -rf '", path, "'").cStr())); }
  kj::String path;
};

kj::String readFile(kj::StringPtr path) {
  kj::AutoCloseFd fd(open(path.cStr(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return kj::str("");
  kj::Vector<char> all;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) all.addAll(buffer, buffer + n);
  all.add('\0');
  return kj::String(all.releaseAsArray());
}

// The recorders whose parent is `parent` (from /proc/PID/stat: the field after the command
// name), once they run the recorder (--connection-fd in /proc/PID/cmdline). Other children of
// the supervisor are not counted: in sanitizer builds its lock-down's leak check briefly runs a
// tracer process, a clone of the supervisor.
kj::Vector<pid_t> childrenOf(pid_t parent) {
  kj::Vector<pid_t> children;
  DIR* proc = opendir("/proc");
  KJ_ASSERT(proc != nullptr);
  while (struct dirent* entry = readdir(proc)) {
    pid_t pid = atoi(entry->d_name);
    if (pid <= 0) continue;
    auto stat = readFile(kj::str("/proc/", pid, "/stat"));
    const char* end = strrchr(stat.cStr(), ')');
    if (end == nullptr) continue;
    char state;
    int ppid;
    if (sscanf(end + 1, " %c %d", &state, &ppid) != 2 || ppid != parent || state == 'Z') {
      continue;
    }
    // NUL-separated arguments: readFile() stops at the first, so look for the option by hand.
    auto cmdline = kj::str("/proc/", pid, "/cmdline");
    int fd = open(cmdline.cStr(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char arguments[4096];
    ssize_t n = ::read(fd, arguments, sizeof(arguments));
    close(fd);
    if (n > 0 && memmem(arguments, size_t(n), "--connection-fd", 15) != nullptr) {
      children.add(pid);
    }
  }
  closedir(proc);
  return children;
}

void pause(int ms) {
  struct timespec time = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&time, nullptr);
}

// The one recorder the supervisor runs, other than `notThis`; -1 if none within 10 s.
pid_t recorderOf(pid_t supervisor, pid_t notThis = -1) {
  for (int waited = 0; waited < 10000; waited += 10) {
    auto children = childrenOf(supervisor);
    if (children.size() == 1 && children[0] != notThis) return children[0];
    pause(10);
  }
  return -1;
}

kj::Vector<kj::String> pcapFiles(kj::StringPtr dir) {
  kj::Vector<kj::String> files;
  DIR* listing = opendir(dir.cStr());
  KJ_ASSERT(listing != nullptr);
  while (struct dirent* entry = readdir(listing)) {
    if (kj::StringPtr(entry->d_name).endsWith(".pcap")) files.add(kj::str(dir, "/", entry->d_name));
  }
  closedir(listing);
  return files;
}

bool contains(kj::StringPtr haystack, size_t size, kj::StringPtr needle) {
  return memmem(haystack.begin(), size, needle.begin(), needle.size()) != nullptr;
}

// tshark reads the whole file without complaint (a file cut short makes it fail).
bool tsharkReads(kj::StringPtr path) {
  return system(kj::str("tshark -r '", path, "' -q > /dev/null 2>&1").cStr()) == 0;
}

// Now, in microseconds: the recorder refuses times outside 2000-2100.
int64_t nowUs() { return int64_t(time(nullptr)) * 1000000; }

FlowInfo flowInfo() {
  FlowInfo flow;
  KJ_ASSERT(parseIpPort("192.0.2.1:40000", flow.client) == nullptr);
  KJ_ASSERT(parseIpPort("198.51.100.7:443", flow.server) == nullptr);
  flow.pcapPort = 80;
  flow.sni = kj::str("www.example.com");
  flow.startTimeUs = nowUs();
  return flow;
}

kj::ArrayPtr<const kj::byte> bytes(kj::StringPtr text) { return text.asBytes(); }

// These tests hand the client one link each and watch what the supervisor does; a client that
// asks again after its link broke gets none.
class OneLinkSource final : public RecorderLinkSource {
public:
  explicit OneLinkSource(kj::Own<kj::AsyncIoStream> link) : link(kj::mv(link)) {}
  kj::Promise<kj::Own<kj::AsyncIoStream>> connect() override {
    KJ_IF_MAYBE(l, link) {
      auto out = kj::mv(*l);
      link = nullptr;
      return kj::mv(out);
    }
    return KJ_EXCEPTION(DISCONNECTED, "this test gives the client one link");
  }
  kj::StringPtr describe() const override { return "one test link"; }

private:
  kj::Maybe<kj::Own<kj::AsyncIoStream>> link;
};

kj::Own<RecorderLinkSource> oneLink(kj::Own<kj::AsyncIoStream> link) {
  return kj::heap<OneLinkSource>(kj::mv(link));
}

class SupervisedRecorderTest : public testing::Test {
protected:
  SupervisedRecorderTest() : base(event_base_new()) {
    unsetenv("TLSTAP_RECORDER");  // the real tlstap-recorder, from the build tree
    kj = std::make_unique<KjOnLibevent>(base);
  }
  ~SupervisedRecorderTest() {
    kj.reset();
    event_base_free(base);
  }

  KjOnLibevent& loop() { return *kj; }

  kj::Own<kj::AsyncIoStream> connect(SupervisedRecorderSource& source) {
    return source.connect()
        .exclusiveJoin(loop().timer().afterDelay(PATIENCE).then(
            []() -> kj::Own<kj::AsyncIoStream> { KJ_FAIL_ASSERT("no link within 10 s"); }))
        .wait(loop().waitScope());
  }

  void wait(kj::Promise<void> promise) {
    promise.exclusiveJoin(loop().timer().afterDelay(PATIENCE).then([]() {
      KJ_FAIL_ASSERT("timed out");
    })).wait(loop().waitScope());
  }

  // Runs the loop until `done` or 10 s have passed.
  bool runUntil(kj::Function<bool()> done) {
    for (int waited = 0; waited < 10000; waited += 10) {
      if (done()) return true;
      loop().timer().afterDelay(10 * kj::MILLISECONDS).wait(loop().waitScope());
    }
    return done();
  }

  // Opens a flow, records `marker` both ways and closes it, then drains and closes the link.
  void recordFlow(kj::Own<kj::AsyncIoStream> link, kj::StringPtr marker) {
    RecorderClient client(loop().timer(), oneLink(kj::mv(link)));
    wait(client.whenReady());
    auto flow = client.openFlow(flowInfo());
    flow->append(Side::CLIENT, nowUs() + 1000000, bytes(marker));
    flow->append(Side::SERVER, nowUs() + 1100000, bytes(marker));
    flow->close(nowUs() + 1200000, nullptr);
    wait(client.drainAndClose());
    EXPECT_EQ(client.counters().bytesLost, 0u);
  }

  event_base* base;
  std::unique_ptr<KjOnLibevent> kj;  // (not kj::Own: gtest fixtures need a noexcept destructor)
};

TEST_F(SupervisedRecorderTest, KilledRecorderIsReplacedAndTheNextLinkWorks) {
  TempDir dir;
  RecordingOutputs outputs;
  outputs.outputDir = dir.path.asPtr();
  EmbeddedRecorder embedded;
  testing::internal::CaptureStderr();  // the supervisor inherits our stderr
  KJ_IF_MAYBE(error, embedded.start(outputs)) FAIL() << error->cStr();
  {
    SupervisedRecorderSource source(base, embedded.takeControl());
    pid_t first = -1;
    {
      RecorderClient client(loop().timer(), oneLink(connect(source)));
      wait(client.whenReady());
      first = recorderOf(embedded.pid());
      ASSERT_GT(first, 0);
      auto flow = client.openFlow(flowInfo());
      flow->append(Side::CLIENT, nowUs() + 1000000, bytes("before the crash"));
      ASSERT_EQ(kill(first, SIGKILL), 0);
      ASSERT_TRUE(runUntil([&]() { return !client.linkUp(); })) << "the link stayed up";
      flow->close(nowUs() + 1100000, nullptr);
    }

    // The next link is to a new recorder, a child of the same supervisor, started 0.1 s after
    // the crash, and it records.
    auto second = recorderOf(embedded.pid(), first);
    ASSERT_GT(second, 0);
    recordFlow(connect(source), "after the restart");

    // The last recorder exited 0 when its link closed; asking starts another at once. A quick
    // crash of that one waits twice as long before the next start.
    {
      auto link = connect(source);
      pid_t third = recorderOf(embedded.pid());
      ASSERT_GT(third, 0);
      EXPECT_NE(third, second);
      ASSERT_EQ(kill(third, SIGKILL), 0);
    }
    recordFlow(connect(source), "after the second restart");
  }
  EXPECT_EQ(embedded.wait(), 0) << "the last recorder did not finish cleanly";
  auto log = testing::internal::GetCapturedStderr();
  EXPECT_NE(strstr(log.c_str(), "was killed by signal 9 (Killed); starting it again in 0.1 s"),
            nullptr) << log;
  EXPECT_NE(strstr(log.c_str(), "starting it again in 0.2 s"), nullptr) << log;

  // Each recorder wrote a file of its own; the ones that finished are complete.
  auto files = pcapFiles(dir.path);
  EXPECT_GE(files.size(), 2u);
  size_t withAfter = 0, withSecond = 0;
  for (auto& file : files) {
    auto text = readFile(file);
    auto size = text.size();
    bool after = contains(text, size, "after the restart");
    bool second = contains(text, size, "after the second restart");
    if (after || second) {
      EXPECT_TRUE(tsharkReads(file)) << file.cStr() << " is not complete";
    }
    withAfter += after;
    withSecond += second;
  }
  EXPECT_EQ(withAfter, 1u);
  EXPECT_EQ(withSecond, 1u);
}

TEST_F(SupervisedRecorderTest, WriteFileGoesOnInANewFileAfterARestart) {
  TempDir dir;
  auto file = kj::str(dir.path, "/all.pcap");
  RecordingOutputs outputs;
  outputs.writeFile = file.asPtr();
  EmbeddedRecorder embedded;
  KJ_IF_MAYBE(error, embedded.start(outputs)) FAIL() << error->cStr();
  pid_t first = -1;
  {
    SupervisedRecorderSource source(base, embedded.takeControl());
    {
      RecorderClient client(loop().timer(), oneLink(connect(source)));
      wait(client.whenReady());
      first = recorderOf(embedded.pid());
      ASSERT_GT(first, 0);
      auto flow = client.openFlow(flowInfo());
      flow->append(Side::CLIENT, nowUs() + 1000000, bytes("before the crash"));
      flow->close(nowUs() + 1100000, nullptr);
      // One --autoflush period: the first recorder's file holds the flow before it dies.
      loop().timer().afterDelay(1500 * kj::MILLISECONDS).wait(loop().waitScope());
      ASSERT_EQ(kill(first, SIGKILL), 0);
      ASSERT_TRUE(runUntil([&]() { return !client.linkUp(); }));
    }
    ASSERT_GT(recorderOf(embedded.pid(), first), 0);
    recordFlow(connect(source), "after the restart");
  }
  EXPECT_EQ(embedded.wait(), 0);

  // The first file is left as it was; the new recorder wrote all-1.pcap, complete.
  auto before = readFile(file);
  EXPECT_TRUE(contains(before, before.size(), "before the crash"));
  EXPECT_FALSE(contains(before, before.size(), "after the restart"));
  auto next = kj::str(dir.path, "/all-1.pcap");
  auto after = readFile(next);
  EXPECT_TRUE(contains(after, after.size(), "after the restart"));
  EXPECT_TRUE(tsharkReads(next)) << "all-1.pcap is not complete";
}

TEST_F(SupervisedRecorderTest, RecorderThatRefusesItsOptionsIsNotStartedAgain) {
  RecordingOutputs outputs;
  outputs.writeFile = "/nonexistent-tlstap-dir/all.pcap"_kj;
  EmbeddedRecorder embedded;
  testing::internal::CaptureStderr();
  KJ_IF_MAYBE(error, embedded.start(outputs)) FAIL() << error->cStr();
  {
    SupervisedRecorderSource source(base, embedded.takeControl());
    // What the front does at start-up: the first link (if asked before the recorder exited)
    // breaks; the next request is answered with the refusal.
    kj::Maybe<kj::Exception> failure;
    source.connect()
        .then([&](kj::Own<kj::AsyncIoStream> link) {
          auto client = kj::heap<RecorderClient>(loop().timer(), oneLink(kj::mv(link)));
          return client->whenReady().attach(kj::mv(client)).then([&]() -> kj::Promise<void> {
            ADD_FAILURE() << "a recorder that refused its options answered";
            return kj::READY_NOW;
          }, [&](kj::Exception&&) { return source.connect().ignoreResult(); });
        })
        .then([]() {}, [&](kj::Exception&& e) { failure = kj::mv(e); })
        .exclusiveJoin(loop().timer().afterDelay(PATIENCE))
        .wait(loop().waitScope());
    ASSERT_TRUE(failure != nullptr) << "no refusal";
    EXPECT_TRUE(source.refused());
    EXPECT_EQ(KJ_ASSERT_NONNULL(failure).getType(), kj::Exception::Type::FAILED);
    // Final: asking again gives the same answer, at once.
    EXPECT_ANY_THROW(source.connect().wait(loop().waitScope()));
  }
  // The supervisor has exited with the recorder's status: it is not restarting it in a loop.
  EXPECT_EQ(embedded.wait(), 2);
  auto output = testing::internal::GetCapturedStderr();
  // One line: the recorder's own, naming the option. Nothing from the supervisor or the source.
  EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
  EXPECT_EQ(output.rfind("tlstap-recorder: -w: ", 0), 0u) << output;
}

TEST_F(SupervisedRecorderTest, FrontGoneSupervisorWaitsForTheRecorderToFinishItsFile) {
  TempDir dir;
  auto file = kj::str(dir.path, "/all.pcap");
  RecordingOutputs outputs;
  outputs.writeFile = file.asPtr();
  EmbeddedRecorder embedded;
  KJ_IF_MAYBE(error, embedded.start(outputs)) FAIL() << error->cStr();
  auto source = kj::heap<SupervisedRecorderSource>(base, embedded.takeControl());
  auto client = kj::heap<RecorderClient>(loop().timer(), oneLink(connect(*source)));
  wait(client->whenReady());
  pid_t recorder = recorderOf(embedded.pid());
  ASSERT_GT(recorder, 0);
  auto flow = client->openFlow(flowInfo());
  flow->append(Side::CLIENT, nowUs() + 1000000, bytes("request while the front goes"));

  // The control socket closes first (the front's source is gone), the link is still open: the
  // recorder keeps running and the supervisor waits for it.
  source = nullptr;
  pause(300);
  EXPECT_TRUE(embedded.checkExited() == nullptr) << "the supervisor did not wait";
  EXPECT_EQ(kill(recorder, 0), 0) << "the recorder was stopped while its link was open";

  flow->append(Side::SERVER, nowUs() + 1100000, bytes("response after the control closed"));
  flow->close(nowUs() + 1200000, nullptr);
  wait(client->drainAndClose());
  client = nullptr;
  EXPECT_EQ(embedded.wait(), 0);

  auto text = readFile(file);
  EXPECT_TRUE(contains(text, text.size(), "response after the control closed"));
  EXPECT_TRUE(tsharkReads(file)) << "the pcap is not complete";
}

TEST_F(SupervisedRecorderTest, FrontThatNeverAsksStartsNoRecorder) {
  // A front whose own start-up fails (a bad certificate) exits before asking for a link.
  TempDir dir;
  auto file = kj::str(dir.path, "/all.pcap");
  RecordingOutputs outputs;
  outputs.writeFile = file.asPtr();
  EmbeddedRecorder embedded;
  KJ_IF_MAYBE(error, embedded.start(outputs)) FAIL() << error->cStr();
  pause(300);
  EXPECT_EQ(childrenOf(embedded.pid()).size(), 0u) << "a recorder started before the request";
  { auto control = embedded.takeControl(); }
  EXPECT_EQ(embedded.wait(), 0);
  EXPECT_NE(access(file.cStr(), F_OK), 0) << "a file was created for a front that never asked";
}

TEST_F(SupervisedRecorderTest, FrontGoneBeforeTakingTheRestartedRecordersLink) {
  TempDir dir;
  auto file = kj::str(dir.path, "/all.pcap");
  RecordingOutputs outputs;
  outputs.writeFile = file.asPtr();
  EmbeddedRecorder embedded;
  testing::internal::CaptureStderr();
  KJ_IF_MAYBE(error, embedded.start(outputs)) FAIL() << error->cStr();
  pid_t second = -1;
  {
    SupervisedRecorderSource source(base, embedded.takeControl());
    auto link = connect(source);
    pid_t first = recorderOf(embedded.pid());
    ASSERT_GT(first, 0);
    ASSERT_EQ(kill(first, SIGKILL), 0);
    // Started again without a request; the supervisor holds its link until the front asks.
    second = recorderOf(embedded.pid(), first);
    ASSERT_GT(second, 0);
  }
  // The front is gone: the supervisor closes the link nobody took, and the recorder finishes.
  EXPECT_EQ(embedded.wait(), 0);
  EXPECT_NE(kill(second, 0), 0) << "the restarted recorder outlived its supervisor";
  testing::internal::GetCapturedStderr();
  auto next = kj::str(dir.path, "/all-1.pcap");
  EXPECT_TRUE(tsharkReads(next)) << "the restarted recorder's file is not complete";
}

TEST_F(SupervisedRecorderTest, AnythingButTheOneByteRequestEndsSupervision) {
  struct Case {
    const char* what;
    kj::StringPtr bytes;
    bool withFd;
  };
  Case cases[] = {{"two bytes", "LL"_kj, false},
                  {"another byte", "X"_kj, false},
                  {"the request with an fd attached", "L"_kj, true}};
  for (auto& test : cases) {
    SCOPED_TRACE(test.what);
    TempDir dir;
    RecordingOutputs outputs;
    outputs.outputDir = dir.path.asPtr();
    EmbeddedRecorder embedded;
    testing::internal::CaptureStderr();
    KJ_IF_MAYBE(error, embedded.start(outputs)) FAIL() << error->cStr();
    auto control = embedded.takeControl();

    struct iovec piece = {const_cast<char*>(test.bytes.begin()), test.bytes.size()};
    struct msghdr message;
    memset(&message, 0, sizeof(message));
    message.msg_iov = &piece;
    message.msg_iovlen = 1;
    alignas(struct cmsghdr) char space[CMSG_SPACE(sizeof(int))];
    if (test.withFd) {
      message.msg_control = space;
      message.msg_controllen = sizeof(space);
      auto header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int));
      int fd = STDERR_FILENO;
      memcpy(CMSG_DATA(header), &fd, sizeof(int));
    }
    ASSERT_EQ(sendmsg(control, &message, MSG_NOSIGNAL), ssize_t(test.bytes.size()));

    // No link comes back: the supervisor closes the socket and exits, starting no recorder.
    char reply[4];
    EXPECT_EQ(recv(control, reply, sizeof(reply), 0), 0);
    EXPECT_EQ(embedded.wait(), 0);
    auto output = testing::internal::GetCapturedStderr();
    EXPECT_NE(strstr(output.c_str(), "unexpected message on the control socket"), nullptr)
        << output;
  }
}

TEST_F(SupervisedRecorderTest, AnAnswerNobodyWaitedForGoesToTheNextConnect) {
  TempDir dir;
  RecordingOutputs outputs;
  outputs.outputDir = dir.path.asPtr();
  EmbeddedRecorder embedded;
  KJ_IF_MAYBE(error, embedded.start(outputs)) FAIL() << error->cStr();
  {
    SupervisedRecorderSource source(base, embedded.takeControl());
    { auto dropped = source.connect(); }  // e.g. a reconnect cancelled by shutdown
    pid_t recorder = recorderOf(embedded.pid());  // started for the request all the same
    ASSERT_GT(recorder, 0);
    loop().timer().afterDelay(200 * kj::MILLISECONDS).wait(loop().waitScope());
    auto link = connect(source);
    // It is the link to the recorder already running: no other was started for it.
    auto children = childrenOf(embedded.pid());
    ASSERT_EQ(children.size(), 1u);
    EXPECT_EQ(children[0], recorder);
    recordFlow(kj::mv(link), "through the unclaimed link");
  }
  EXPECT_EQ(embedded.wait(), 0);
  auto files = pcapFiles(dir.path);
  ASSERT_EQ(files.size(), 1u);
  auto text = readFile(files[0]);
  EXPECT_TRUE(contains(text, text.size(), "through the unclaimed link"));
}

TEST_F(SupervisedRecorderTest, OverlappingConnectsAreAnsweredInOrder) {
  TempDir dir;
  RecordingOutputs outputs;
  outputs.outputDir = dir.path.asPtr();
  EmbeddedRecorder embedded;
  KJ_IF_MAYBE(error, embedded.start(outputs)) FAIL() << error->cStr();
  {
    SupervisedRecorderSource source(base, embedded.takeControl());
    kj::Maybe<kj::Own<kj::AsyncIoStream>> first, second;
    auto one = source.connect().then([&](kj::Own<kj::AsyncIoStream> link) {
      first = kj::mv(link);
    }).eagerlyEvaluate(nullptr);
    auto two = source.connect().then([&](kj::Own<kj::AsyncIoStream> link) {
      second = kj::mv(link);
    }).eagerlyEvaluate(nullptr);
    ASSERT_TRUE(runUntil([&]() { return first != nullptr; }));
    pid_t recorder = recorderOf(embedded.pid());
    ASSERT_GT(recorder, 0);
    // The second answer waits until the first link's recorder is done with: one recorder at a
    // time writes the outputs.
    loop().timer().afterDelay(300 * kj::MILLISECONDS).wait(loop().waitScope());
    EXPECT_TRUE(second == nullptr);
    first = nullptr;
    ASSERT_TRUE(runUntil([&]() { return second != nullptr; }));
    EXPECT_NE(recorderOf(embedded.pid(), recorder), -1);
    recordFlow(kj::mv(KJ_ASSERT_NONNULL(second)), "on the second link");
  }
  EXPECT_EQ(embedded.wait(), 0);
}

}  // namespace
}  // namespace tlstap
