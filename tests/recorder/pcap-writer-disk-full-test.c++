// The pcap writers when writing fails. A file size limit (RLIMIT_FSIZE with SIGXFSZ ignored) makes
// write() fail with EFBIG, after a short write, exactly as a full disk fails with ENOSPC; raising
// the limit again is "space returns". Each scenario runs in a child process so that the limit and
// the captured stderr do not leak into other tests.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>
#include <fstream>
#include <functional>
#include <string>
#include <kj/async.h>

#include "tests/recorder/pcap-test-util.h"

namespace tlstap {
namespace {

constexpr int64_t SECOND = 1000000;
constexpr size_t FRAME = 1000;

// Frame i carries i in its first four bytes, so order, gaps and duplicates show.
std::vector<kj::byte> numbered(uint32_t i) {
  std::vector<kj::byte> frame(FRAME, kj::byte(i));
  memcpy(frame.data(), &i, 4);
  return frame;
}

uint32_t numberOf(const test::CapturedPacket& packet) {
  uint32_t i;
  memcpy(&i, packet.frame.data(), 4);
  return i;
}

// Packet numbers in the files, in file order.
std::vector<uint32_t> numbersIn(const TempDir& dir, const std::vector<std::string>& names,
                                std::string& error) {
  std::vector<uint32_t> out;
  for (auto& name : names) {
    auto pcap = readPcap(dir.file(name));
    if (!pcap.error.empty()) error = name + ": " + pcap.error;
    for (auto& p : pcap.packets) out.push_back(numberOf(p));
  }
  return out;
}

// Runs `scenario` in a child with stderr going to `log`; the child exits 0 when every outcome is
// as expected, else 1 with the reason on the test's stderr.
using Fail = std::function<void(const std::string&)>;
[[noreturn]] void inChild(const std::string& log, std::function<void(Fail)> scenario) {
  int saved = dup(2);
  int logFd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  dup2(logFd, 2);
  signal(SIGXFSZ, SIG_IGN);
  scenario([saved](const std::string& why) {
    dprintf(saved, "%s\n", why.c_str());
    _exit(1);
  });
  _exit(0);
}

void limitFileSize(rlim_t bytes, Fail& fail) {
  struct rlimit limit;
  getrlimit(RLIMIT_FSIZE, &limit);
  limit.rlim_cur = bytes;
  if (setrlimit(RLIMIT_FSIZE, &limit) != 0) fail("setrlimit");
}

void unlimitFileSize() {
  struct rlimit limit;
  getrlimit(RLIMIT_FSIZE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_FSIZE, &limit);
}

int countLines(const std::string& log, const std::string& needle) {
  std::ifstream in(log);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) n += line.find(needle) != std::string::npos;
  return n;
}

std::string expectSequence(const std::vector<uint32_t>& got, uint32_t count) {
  if (got.size() != count) {
    return "expected " + std::to_string(count) + " packets, found " + std::to_string(got.size());
  }
  for (uint32_t i = 0; i < count; i++) {
    if (got[i] != i) return "packet " + std::to_string(i) + " is " + std::to_string(got[i]);
  }
  return "";
}

// The disk fills in the middle of a write: the file is cut back to whole records, packets wait,
// the data call waits, and when space returns everything is in the same file, once, in order.
TEST(PcapWriterDiskFull, NothingLostNoTornRecordResumesInOrder) {
  TempDir dir;
  std::string log = dir.file("stderr.txt");
  auto scenario = [&](Fail fail) {
    kj::EventLoop loop;
    kj::WaitScope waitScope(loop);
    // Not a whole number of records: the write that hits the limit is a short one.
    limitFileSize((2 << 20) + 777, fail);
    FakeClock clock(T_140512);
    RotatingPcapWriter writer(dir.path.c_str(), clock);
    const uint32_t total = 5000;  // ~5 MiB: more than fits
    for (uint32_t i = 0; i < total / 2; i++) writer.writePacket(T_140512 + i, view(numbered(i)));
    auto acked = writer.whenWritten();
    for (uint32_t i = total / 2; i < total; i++) {
      writer.writePacket(T_140512 + i, view(numbered(i)));
    }
    auto ackedAll = writer.whenWritten();
    if (writer.writable()) fail("the writer did not notice the full disk");
    if (ackedAll.poll(waitScope)) fail("data acknowledged while it could not be written");
    // What is on disk now is a valid capture ending in a whole record.
    std::string error;
    auto before = numbersIn(dir, {"tlstap-20261126-140000.pcap"}, error);
    if (!error.empty()) fail("torn file while the disk is full: " + error);
    if (before.size() < 1000 || before.size() >= total) fail("unexpected amount written");
    if (writer.lostPackets() != 0) fail("packets lost although the buffer had room");

    // No retry within the second; then space returns and the next tick writes everything.
    clock.now += SECOND / 2;
    writer.tick();
    if (writer.writable()) fail("retried too early");
    clock.now += SECOND;
    writer.tick();  // a retry that fails again: the waiting data calls stay waiting
    if (writer.writable()) fail("resumed while the disk is still full");
    if (ackedAll.poll(waitScope)) fail("the data call ended while the disk is still full");
    unlimitFileSize();
    clock.now += SECOND;
    writer.tick();
    if (!writer.writable() || writer.pendingBytes() != 0) fail("did not resume");
    if (!ackedAll.poll(waitScope)) fail("data not acknowledged after resuming");
    ackedAll.wait(waitScope);
    acked.wait(waitScope);
    writer.close();
    if (dir.list().size() != 2) fail("expected one capture file beside the log");
    auto after = numbersIn(dir, {"tlstap-20261126-140000.pcap"}, error);
    if (!error.empty()) fail(error);
    auto problem = expectSequence(after, total);
    if (!problem.empty()) fail(problem);
    if (writer.counters().packetsWritten != total) fail("packetsWritten is wrong");
    if (countLines(log, "error: cannot write") != 1) fail("expected one error line");
    if (countLines(log, "writing again after 2 s; no packet was lost") != 1) {
      fail("expected one line saying writing resumed");
    }
  };
  EXPECT_EXIT(inChild(log, scenario), ::testing::ExitedWithCode(0), "");
}

// With a small buffer, what does not fit is counted as lost, never written twice, and the
// rest stays in order.
TEST(PcapWriterDiskFull, BeyondTheBufferPacketsAreCountedAsLost) {
  TempDir dir;
  std::string log = dir.file("stderr.txt");
  auto scenario = [&](Fail fail) {
    limitFileSize(1 << 20, fail);
    FakeClock clock(T_140512);
    RotatingPcapWriter writer(dir.path.c_str(), clock, RetentionPolicy{}, 1 << 20);
    const uint32_t total = 4000;
    for (uint32_t i = 0; i < total; i++) writer.writePacket(T_140512 + i, view(numbered(i)));
    uint64_t lost = writer.lostPackets();
    if (lost == 0) fail("nothing was lost with a 1 MiB buffer and 4 MB of packets");
    if (writer.counters().bytesLost != lost * FRAME) fail("bytesLost is wrong");
    unlimitFileSize();
    clock.now += 2 * SECOND;
    writer.tick();
    for (uint32_t i = total; i < total + 10; i++) {
      writer.writePacket(clock.now + i, view(numbered(i)));
    }
    writer.close();
    std::string error;
    auto got = numbersIn(dir, {"tlstap-20261126-140000.pcap"}, error);
    if (!error.empty()) fail(error);
    if (got.size() + lost != total + 10) fail("written + lost is not what was given");
    for (size_t i = 1; i < got.size(); i++) {
      if (got[i] <= got[i - 1]) fail("packets out of order or duplicated");
    }
    if (got.back() != total + 9) fail("the packets after resuming are missing");
    if (countLines(log, "packets were lost (the buffer was full)") != 1) {
      fail("the resume line does not say packets were lost");
    }
  };
  EXPECT_EXIT(inChild(log, scenario), ::testing::ExitedWithCode(0), "");
}

// The hour ends while the disk is full: the old file keeps what it could take, the waiting
// packets go into the next hour's file, and nothing is lost across the two.
TEST(PcapWriterDiskFull, RotationWhileFullLosesNothing) {
  TempDir dir;
  std::string log = dir.file("stderr.txt");
  auto scenario = [&](Fail fail) {
    limitFileSize((1 << 20) + 100, fail);
    FakeClock clock(T_140512);
    RotatingPcapWriter writer(dir.path.c_str(), clock);
    const uint32_t total = 3000;
    for (uint32_t i = 0; i < total; i++) writer.writePacket(T_140512 + i, view(numbered(i)));
    if (writer.writable()) fail("the writer did not notice the full disk");
    clock.now = T_140000 + HOUR + 5 * SECOND;
    unlimitFileSize();
    writer.tick();
    if (!writer.writable()) fail("did not resume after the hour changed");
    if (current(writer) != "tlstap-20261126-150000.pcap") fail("no file for the new hour");
    writer.close();
    std::string error;
    auto got = numbersIn(dir, {"tlstap-20261126-140000.pcap", "tlstap-20261126-150000.pcap"},
                         error);
    if (!error.empty()) fail(error);
    auto problem = expectSequence(got, total);
    if (!problem.empty()) fail(problem);
  };
  EXPECT_EXIT(inChild(log, scenario), ::testing::ExitedWithCode(0), "");
}

// -w FILE resumes in the same file.
TEST(PcapWriterDiskFull, SingleFileResumes) {
  TempDir dir;
  std::string log = dir.file("stderr.txt");
  std::string path = dir.file("one.pcap");
  auto scenario = [&](Fail fail) {
    limitFileSize((1 << 20) + 333, fail);
    FakeClock clock(T_140512);
    SinglePcapWriter writer(path.c_str(), clock);
    const uint32_t total = 2500;
    for (uint32_t i = 0; i < total; i++) writer.writePacket(T_140512 + i, view(numbered(i)));
    writer.flush();
    if (writer.writable()) fail("the writer did not notice the full disk");
    unlimitFileSize();
    clock.now += SECOND;
    writer.tick();
    writer.close();
    auto pcap = readPcap(path);
    if (!pcap.error.empty()) fail(pcap.error);
    std::vector<uint32_t> got;
    for (auto& p : pcap.packets) got.push_back(numberOf(p));
    auto problem = expectSequence(got, total);
    if (!problem.empty()) fail(problem);
  };
  EXPECT_EXIT(inChild(log, scenario), ::testing::ExitedWithCode(0), "");
}


// The disk is full before the writer starts (a recorder started again on a full disk): it starts
// all the same, keeps the packets, creates its file once there is room, and loses nothing.
TEST(PcapWriterDiskFull, RotatingWriterStartsOnAFullDisk) {
  TempDir dir;
  std::string log = dir.file("stderr.txt");
  auto scenario = [&](Fail fail) {
    kj::EventLoop loop;
    kj::WaitScope waitScope(loop);
    // The limit of 0 bytes would stop the log file too: the log lines go to a pipe meanwhile.
    int lines[2];
    if (pipe(lines) != 0) fail("pipe");
    int logFile = dup(2);
    dup2(lines[1], 2);
    limitFileSize(0, fail);
    FakeClock clock(T_140512);
    RotatingPcapWriter writer(dir.path.c_str(), clock);
    if (writer.writable()) fail("the writer did not notice the full disk");
    if (dir.list().size() != 1) fail("a file was left behind although none could be written");
    const uint32_t total = 300;
    for (uint32_t i = 0; i < total; i++) writer.writePacket(T_140512 + i, view(numbered(i)));
    auto acked = writer.whenWritten();
    clock.now += SECOND;
    writer.tick();  // still full
    if (acked.poll(waitScope)) fail("data acknowledged while it could not be written");
    unlimitFileSize();
    clock.now += SECOND;
    writer.tick();
    if (!writer.writable() || writer.pendingBytes() != 0) fail("did not start writing");
    if (!acked.poll(waitScope)) fail("data not acknowledged once written");
    acked.wait(waitScope);
    writer.close();
    dup2(logFile, 2);
    close(lines[1]);
    char text[65536];
    ssize_t n = read(lines[0], text, sizeof(text));
    if (n > 0 && write(2, text, size_t(n)) != n) fail("cannot copy the log lines");
    std::string error;
    auto got = numbersIn(dir, {"tlstap-20261126-140000.pcap"}, error);
    if (!error.empty()) fail(error);
    auto problem = expectSequence(got, total);
    if (!problem.empty()) fail(problem);
    if (countLines(log, "error: cannot create") != 1) fail("expected one error line");
    if (countLines(log, "writing again after 2 s; no packet was lost") != 1) {
      fail("expected one line saying writing began");
    }
  };
  EXPECT_EXIT(inChild(log, scenario), ::testing::ExitedWithCode(0), "");
}

// -w FILE on a full disk: FILE is created empty, and its header comes with the first packets.
TEST(PcapWriterDiskFull, SingleWriterStartsOnAFullDisk) {
  TempDir dir;
  std::string log = dir.file("stderr.txt");
  std::string path = dir.file("one.pcap");
  auto scenario = [&](Fail fail) {
    limitFileSize(0, fail);
    FakeClock clock(T_140512);
    SinglePcapWriter writer(path.c_str(), clock);
    if (writer.writable()) fail("the writer did not notice the full disk");
    const uint32_t total = 300;
    for (uint32_t i = 0; i < total; i++) writer.writePacket(T_140512 + i, view(numbered(i)));
    unlimitFileSize();
    clock.now += SECOND;
    writer.tick();
    if (!writer.writable()) fail("did not start writing");
    writer.close();
    auto pcap = readPcap(path);
    if (!pcap.error.empty()) fail(pcap.error);
    std::vector<uint32_t> got;
    for (auto& p : pcap.packets) got.push_back(numberOf(p));
    auto problem = expectSequence(got, total);
    if (!problem.empty()) fail(problem);
  };
  EXPECT_EXIT(inChild(log, scenario), ::testing::ExitedWithCode(0), "");
}

// Only a full disk waits: a directory that is not one is still an error at once.
TEST(PcapWriterDiskFull, ConfigurationErrorsStillThrow) {
  TempDir dir;
  std::string notADirectory = dir.file("plain-file");
  close(open(notADirectory.c_str(), O_WRONLY | O_CREAT, 0600));
  FakeClock clock(T_140512);
  EXPECT_ANY_THROW(RotatingPcapWriter(notADirectory.c_str(), clock));
  EXPECT_ANY_THROW(SinglePcapWriter((notADirectory + "/x.pcap").c_str(), clock));
  EXPECT_ANY_THROW(SinglePcapWriter(notADirectory.c_str(), clock));  // exists
}

}  // namespace
}  // namespace tlstap
