#include "recorder/pcap-writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>
#include <kj/function.h>

#include "recorder/tcp-synth.h"
#include "tests/recorder/frame-parser.h"
#include "tests/recorder/pcap-test-util.h"

namespace tlstap {
namespace {


std::string describe(kj::Function<void()> f) {
  try {
    f();
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
  return "(no exception)";
}

TEST(PcapWriterNames, FormatAndSortByTime) {
  EXPECT_EQ(RotatingPcapWriter::fileNameForHour(T_140512 + 345678), "tlstap-20261126-140000.pcap");
  EXPECT_EQ(RotatingPcapWriter::fileNameForTime(T_140512 + 345678), "tlstap-20261126-140512.pcap");
  EXPECT_EQ(RotatingPcapWriter::fileNameForTime(T_140512, 1), "tlstap-20261126-140512_01.pcap");
  EXPECT_EQ(RotatingPcapWriter::fileNameForHour(T_135959), "tlstap-20261126-130000.pcap");
  EXPECT_EQ(RotatingPcapWriter::fileNameForHour(T_140000), "tlstap-20261126-140000.pcap");
  // The names a writer can pick, in the order it would create them, sort in that order.
  std::vector<std::string> created = {
      RotatingPcapWriter::fileNameForHour(T_135959).cStr(),
      RotatingPcapWriter::fileNameForHour(T_140000).cStr(),
      RotatingPcapWriter::fileNameForTime(T_140000).cStr(),
      RotatingPcapWriter::fileNameForTime(T_140000, 1).cStr(),
      RotatingPcapWriter::fileNameForTime(T_140000, 2).cStr(),
      RotatingPcapWriter::fileNameForTime(T_140000, 12).cStr(),
      RotatingPcapWriter::fileNameForTime(T_140512).cStr(),
      RotatingPcapWriter::fileNameForTime(T_140512, 1).cStr(),
      RotatingPcapWriter::fileNameForHour(T_140000 + HOUR).cStr(),
  };
  auto sorted = created;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, created);
}

TEST(SinglePcapWriter, WritesReadableCapture) {
  TempDir dir;
  std::string path = dir.file("out.pcap");
  {
    SinglePcapWriter writer(path.c_str(), wallClock);
    writer.writePacket(T_140512 + 1, view(frameOf(60, 1)));
    writer.writePacket(T_140512 + 999999, view(frameOf(1514, 2)));
    writer.writePacket(T_140512 + 1000000, view(frameOf(54, 3)));
    writer.close();
    EXPECT_EQ(writer.lostPackets(), 0u);
  }
  auto pcap = readPcap(path);
  ASSERT_EQ(pcap.error, "");
  EXPECT_EQ(pcap.linkType, DLT_EN10MB);
  EXPECT_EQ(pcap.snapLen, 65535);
  ASSERT_EQ(pcap.packets.size(), 3u);
  EXPECT_EQ(pcap.packets[0].timeUs, T_140512 + 1);
  EXPECT_EQ(pcap.packets[1].timeUs, T_140512 + 999999);
  EXPECT_EQ(pcap.packets[2].timeUs, T_140512 + 1000000);
  EXPECT_EQ(pcap.packets[1].frame, frameOf(1514, 2));
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  mode_t mask = umask(0);
  umask(mask);
  EXPECT_EQ(st.st_mode & 0777, 0640u & ~mask);
}

TEST(SinglePcapWriter, FlushMakesPacketsVisibleWhileOpen) {
  TempDir dir;
  std::string path = dir.file("live.pcap");
  SinglePcapWriter writer(path.c_str(), wallClock);
  // The header is written at once: a reader can open the file before the first packet.
  auto empty = readPcap(path);
  EXPECT_EQ(empty.error, "");
  EXPECT_EQ(empty.packets.size(), 0u);
  writer.writePacket(T_140512, view(frameOf(100, 7)));
  writer.writePacket(T_140512 + 5, view(frameOf(100, 8)));
  EXPECT_EQ(readPcap(path).packets.size(), 0u);  // still in the writer's buffer
  writer.flush();
  auto live = readPcap(path);
  EXPECT_EQ(live.error, "");
  EXPECT_EQ(live.packets.size(), 2u);
}

// The recorder acknowledges data once whenWritten() resolves: by then the packets are in the
// file, and many calls in one event-loop turn share one write-out.
TEST(SinglePcapWriter, WhenWrittenResolvesOnceThePacketsAreInTheFile) {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  TempDir dir;
  std::string path = dir.file("acked.pcap");
  SinglePcapWriter writer(path.c_str(), wallClock);
  EXPECT_TRUE(writer.whenWritten().poll(waitScope));  // nothing to wait for
  for (int round = 0; round < 3; round++) {
    std::vector<kj::Promise<void>> acks;
    for (int i = 0; i < 5; i++) {
      writer.writePacket(T_140512 + round * 10 + i, view(frameOf(200, i)));
      acks.push_back(writer.whenWritten());
    }
    EXPECT_EQ(readPcap(path).packets.size(), size_t(round * 5));  // not yet: still buffered
    for (auto& ack : acks) ack.wait(waitScope);
    auto pcap = readPcap(path);
    EXPECT_EQ(pcap.error, "");
    EXPECT_EQ(pcap.packets.size(), size_t(round * 5 + 5));
  }
  EXPECT_EQ(writer.counters().packetsWritten, 15u);
  EXPECT_EQ(writer.counters().bytesWritten, 24u + 15 * (16 + 200));
}

TEST(SinglePcapWriter, NeverOverwritesAnExistingFile) {
  TempDir dir;
  std::string path = dir.file("again.pcap");
  {
    SinglePcapWriter writer(path.c_str(), wallClock);
    writer.writePacket(T_140512, view(frameOf(80, 0)));
  }
  EXPECT_EQ(describe([&]() { SinglePcapWriter(path.c_str(), wallClock); }),
            "cannot create " + path + ": File exists");
  auto pcap = readPcap(path);
  ASSERT_EQ(pcap.packets.size(), 1u);
  EXPECT_EQ(pcap.packets[0].timeUs, T_140512);
}

TEST(SinglePcapWriter, CreationFailuresAreOneLine) {
  EXPECT_EQ(describe([&]() { SinglePcapWriter("/nonexistent-tlstap-dir/x.pcap", wallClock); }),
            "cannot create /nonexistent-tlstap-dir/x.pcap: No such file or directory");
  // An existing path is never reused, not even a device.
  EXPECT_EQ(describe([&]() { SinglePcapWriter("/dev/full", wallClock); }),
            "cannot create /dev/full: File exists");
}

TEST(RotatingPcapWriter, RotatesOnTheHour) {
  TempDir dir;
  FakeClock clock(T_135959);
  RotatingPcapWriter writer(dir.path.c_str(), clock);
  EXPECT_EQ(current(writer), "tlstap-20261126-130000.pcap");
  for (int i = 0; i < 3; i++) writer.writePacket(T_135959 + i, view(frameOf(64, i)));
  clock.now = T_140000 - 1;
  writer.writePacket(T_135959 + 3, view(frameOf(64, 3)));
  EXPECT_EQ(current(writer), "tlstap-20261126-130000.pcap");
  clock.now = T_140000;
  // Packet timestamps do not choose the file: this one claims to be from last hour.
  writer.writePacket(T_135959 + 4, view(frameOf(64, 4)));
  writer.writePacket(T_140000 + 1, view(frameOf(64, 5)));
  EXPECT_EQ(current(writer), "tlstap-20261126-140000.pcap");

  // The previous file is complete while the writer goes on.
  auto first = readPcap(dir.file("tlstap-20261126-130000.pcap"));
  EXPECT_EQ(first.error, "");
  ASSERT_EQ(first.packets.size(), 4u);
  EXPECT_EQ(first.packets[3].frame, frameOf(64, 3));

  writer.close();
  auto second = readPcap(dir.file("tlstap-20261126-140000.pcap"));
  EXPECT_EQ(second.error, "");
  ASSERT_EQ(second.packets.size(), 2u);
  EXPECT_EQ(second.packets[0].timeUs, T_135959 + 4);
  EXPECT_EQ(dir.list().size(), 2u);
  EXPECT_EQ(writer.lostPackets(), 0u);
}

TEST(RotatingPcapWriter, RotateIfDueClosesAnIdleFile) {
  TempDir dir;
  FakeClock clock(T_140512);
  RotatingPcapWriter writer(dir.path.c_str(), clock);
  writer.writePacket(T_140512, view(frameOf(70, 1)));
  writer.rotateIfDue();  // same hour: nothing changes
  EXPECT_EQ(dir.list().size(), 1u);
  clock.now = T_140000 + HOUR + 3;
  writer.rotateIfDue();
  EXPECT_EQ(current(writer), "tlstap-20261126-150000.pcap");
  EXPECT_EQ(readPcap(dir.file("tlstap-20261126-140000.pcap")).packets.size(), 1u);
  auto fresh = readPcap(dir.file("tlstap-20261126-150000.pcap"));
  EXPECT_EQ(fresh.error, "");
  EXPECT_EQ(fresh.packets.size(), 0u);
}

TEST(RotatingPcapWriter, NameCollisionsUseTheOpeningTime) {
  TempDir dir;
  {
    std::ofstream existing(dir.file("tlstap-20261126-140000.pcap"));
    existing << "from before the restart";
  }
  FakeClock clock(T_140512 + 250000);
  std::vector<std::string> names;
  for (int i = 0; i < 3; i++) {
    RotatingPcapWriter writer(dir.path.c_str(), clock);
    writer.writePacket(clock.now, view(frameOf(90, i)));
    names.push_back(current(writer));
  }
  EXPECT_EQ(names, (std::vector<std::string>{"tlstap-20261126-140512.pcap",
                                             "tlstap-20261126-140512_01.pcap",
                                             "tlstap-20261126-140512_02.pcap"}));
  std::ifstream existing(dir.file("tlstap-20261126-140000.pcap"));
  std::string content((std::istreambuf_iterator<char>(existing)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "from before the restart");
  auto listed = dir.list();
  EXPECT_EQ(std::vector<std::string>(listed.begin() + 1, listed.end()), names);
  for (auto& n : names) EXPECT_EQ(readPcap(dir.file(n)).packets.size(), 1u);
}

TEST(RotatingPcapWriter, BadDirectoriesThrowOneLine) {
  FakeClock clock(T_140512);
  EXPECT_EQ(describe([&]() { RotatingPcapWriter("/nonexistent-tlstap-dir/captures", clock); }),
            "cannot create directory /nonexistent-tlstap-dir/captures: No such file or directory");
  TempDir dir;
  std::ofstream(dir.file("plain")) << "x";
  auto plain = dir.file("plain");
  EXPECT_EQ(describe([&]() { RotatingPcapWriter(plain.c_str(), clock); }),
            "cannot open directory " + plain + ": Not a directory");
}

TEST(RotatingPcapWriter, CreatesAMissingLastDirectory) {
  FakeClock clock(T_140512);
  TempDir dir;
  auto captures = dir.file("captures");
  {
    RotatingPcapWriter writer(captures.c_str(), clock);
    EXPECT_EQ(std::string(writer.currentFileName().cStr()), "tlstap-20261126-140000.pcap");
  }
  struct stat info;
  ASSERT_EQ(stat(captures.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0750u);
  EXPECT_EQ(readPcap(captures + "/tlstap-20261126-140000.pcap").packets.size(), 0u);
}

TEST(RotatingPcapWriter, NonWritableDirectoryThrows) {
  TempDir dir;
  ASSERT_EQ(chmod(dir.path.c_str(), 0555), 0);
  std::string expected = "cannot create " + dir.path +
                         "/tlstap-20261126-140000.pcap: Permission denied";
  auto attempt = [&]() {
    FakeClock clock(T_140512);
    return describe([&]() { RotatingPcapWriter(dir.path.c_str(), clock); });
  };
  if (geteuid() != 0) {
    EXPECT_EQ(attempt(), expected);
  } else {
    // Root writes anywhere: try as nobody in a child so the permission check is real.
    auto asNobody = [&]() {
      if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
      std::string got = attempt();
      fprintf(stderr, "%s\n", got.c_str());
      _exit(got == expected ? 0 : 1);
    };
    EXPECT_EXIT(asNobody(), ::testing::ExitedWithCode(0), "Permission denied");
  }
  EXPECT_TRUE(dir.list().empty());
}

// ---------------------------------------------------------------------------------------------
// End to end: synthesized flows written to a file, read back by tshark.

class CountingSink final : public PacketSink {
public:
  void writePacket(int64_t, kj::ArrayPtr<const kj::byte>) override { count++; }
  size_t count = 0;
};

// Runs a shell command and returns its standard output; `status` gets pclose()'s result.
std::string run(const std::string& command, int& status) {
  FILE* p = popen((command + " 2>/dev/null").c_str(), "r");
  std::string out;
  if (p == nullptr) {
    status = -1;
    return out;
  }
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  status = pclose(p);
  return out;
}

std::string hex(const std::vector<kj::byte>& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

// `-z follow,tcp,raw,N` prints each stream's bytes in hex, one line per segment run, the
// second node's lines indented by a tab.
std::map<int, std::pair<std::string, std::string>> parseFollow(const std::string& text) {
  std::map<int, std::pair<std::string, std::string>> streams;
  int current = -1;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Filter: tcp.stream eq ", 0) == 0) {
      current = std::stoi(line.substr(22));
      streams[current];
    } else if (current < 0 || line.empty() || line[0] == '=' || line.rfind("Node ", 0) == 0 ||
               line.rfind("Follow:", 0) == 0) {
      continue;
    } else if (line[0] == '\t') {
      streams[current].second += line.substr(1);
    } else {
      streams[current].first += line;
    }
  }
  return streams;
}

FlowEndpoints endpoints4(uint8_t last, uint16_t clientPort, uint16_t serverPort) {
  FlowEndpoints e;
  kj::byte client[4] = {10, 0, 0, last};
  kj::byte server[4] = {192, 0, 2, 80};
  memcpy(e.clientIp, client, 4);
  memcpy(e.serverIp, server, 4);
  e.clientPort = clientPort;
  e.serverPort = serverPort;
  return e;
}

TEST(TsharkCheck, SynthesizedFlowsHaveNoTcpProblemsAndFollowGivesTheBytes) {
  int status;
  run("command -v tshark", status);
  if (status != 0) GTEST_SKIP() << "tshark is not installed";

  TempDir dir;
  std::string path = dir.file("flows.pcap");
  std::vector<kj::byte> sent[4][2];  // [stream][side]
  CountingSink counter;
  {
    SinglePcapWriter writer(path.c_str(), wallClock);
    FanOutSink sink;
    sink.add(writer);
    sink.add(counter);
    int64_t t = T_140512;
    auto send = [&](TcpSynthesizer& synth, int stream, Side from, std::vector<kj::byte> bytes) {
      synth.data(from, t += 10, view(bytes));
      auto& out = sent[stream][static_cast<int>(from)];
      out.insert(out.end(), bytes.begin(), bytes.end());
    };
    std::mt19937 rng(1234);
    auto randomBytes = [&](size_t n) {
      std::vector<kj::byte> v(n);
      for (auto& b : v) b = rng();
      return v;
    };

    // Stream 0: 3 MiB, both directions interleaved, chunk sizes from 1 byte to 64 KiB.
    TcpSynthesizer bidi(endpoints4(1, 40001, 443), sink);
    bidi.open(t);
    size_t total = 0;
    while (total < (3u << 20)) {
      size_t n = rng() % 4 == 0 ? 1 + rng() % 65536 : 1 + rng() % 2000;
      send(bidi, 0, rng() % 3 == 0 ? Side::CLIENT : Side::SERVER, randomBytes(n));
      total += n;
    }
    bidi.closeOrderly(t += 10);

    // Stream 1: IPv6, the client half-closes and the server answers after that.
    FlowEndpoints v6;
    v6.ipv6 = true;
    v6.clientIp[0] = 0x20, v6.clientIp[1] = 0x01, v6.clientIp[2] = 0x0d, v6.clientIp[3] = 0xb8;
    memcpy(v6.serverIp, v6.clientIp, 16);
    v6.clientIp[15] = 1;
    v6.serverIp[15] = 2;
    v6.clientPort = 50000;
    v6.serverPort = 80;
    TcpSynthesizer small(v6, sink);
    small.open(t += 10);
    send(small, 1, Side::CLIENT, randomBytes(300));
    small.fin(Side::CLIENT, t += 10);
    send(small, 1, Side::SERVER, randomBytes(5000));
    small.closeOrderly(t += 10);

    // Stream 2: 10 MiB one way in 16 KiB reads.
    TcpSynthesizer bulk(endpoints4(2, 40002, 80), sink);
    bulk.open(t += 10);
    send(bulk, 2, Side::CLIENT, randomBytes(100));
    for (int i = 0; i < 640; i++) send(bulk, 2, Side::SERVER, randomBytes(16384));
    bulk.closeOrderly(t += 10);

    // Stream 3: aborted by the server.
    TcpSynthesizer aborted(endpoints4(3, 40003, 80), sink);
    aborted.open(t += 10);
    send(aborted, 3, Side::CLIENT, randomBytes(1000));
    aborted.reset(Side::SERVER, t += 10);
    writer.close();
  }

  auto numbers = run("tshark -r " + path + " -T fields -e frame.number", status);
  ASSERT_EQ(status, 0);
  EXPECT_EQ(size_t(std::count(numbers.begin(), numbers.end(), '\n')), counter.count);

  // Only the first lines of a failure: one bad rule flags thousands of frames.
  auto flagged = run("tshark -r " + path + " -Y tcp.analysis.flags", status);
  ASSERT_EQ(status, 0);
  EXPECT_EQ(std::count(flagged.begin(), flagged.end(), '\n'), 0) << flagged.substr(0, 1000);

  auto badSums = run("tshark -r " + path +
                         " -o tcp.check_checksum:TRUE -o ip.check_checksum:TRUE"
                         " -Y 'tcp.checksum.status != 1 || ip.checksum.status != 1'",
                     status);
  ASSERT_EQ(status, 0);
  EXPECT_EQ(std::count(badSums.begin(), badSums.end(), '\n'), 0) << badSums.substr(0, 1000);

  std::string follow = "tshark -r " + path + " -q";
  for (int s = 0; s < 4; s++) follow += " -z follow,tcp,raw," + std::to_string(s);
  auto streams = parseFollow(run(follow, status));
  ASSERT_EQ(status, 0);
  ASSERT_EQ(streams.size(), 4u);
  for (int s = 0; s < 4; s++) {
    SCOPED_TRACE("stream " + std::to_string(s));
    EXPECT_GT(sent[s][0].size(), 0u);
    // EXPECT_TRUE rather than EXPECT_EQ: a mismatch would print megabytes of hex.
    EXPECT_TRUE(streams[s].first == hex(sent[s][0]));
    EXPECT_TRUE(streams[s].second == hex(sent[s][1]));
  }
}

}  // namespace
}  // namespace tlstap
