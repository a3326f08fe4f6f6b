#include "recorder/pcap-retention.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <fstream>
#include <string>
#include <vector>

#include "common/options.h"
#include "tests/recorder/pcap-test-util.h"

namespace tlstap {
namespace {

std::vector<std::string> strings(kj::ArrayPtr<const kj::String> names) {
  std::vector<std::string> out;
  for (auto& name : names) out.push_back(name.cStr());
  return out;
}

void writeFile(const std::string& path, size_t bytes) {
  std::ofstream out(path);
  out << std::string(bytes, 'x');
}

void setModified(const std::string& path, int64_t timeUs) {
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = timeUs / 1000000;
  times[0].tv_nsec = times[1].tv_nsec = 0;
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

std::vector<std::string> without(std::vector<std::string> names, const std::string& drop) {
  names.erase(std::remove(names.begin(), names.end(), drop), names.end());
  return names;
}

TEST(PcapRetention, OnlyTheWritersNamesAreCaptureFiles) {
  EXPECT_TRUE(isCaptureFileName("tlstap-20261126-140000.pcap"));
  EXPECT_TRUE(isCaptureFileName("tlstap-20261126-140512_01.pcap"));
  EXPECT_FALSE(isCaptureFileName("tlstap-20261126-140000.pcap.gz"));
  EXPECT_FALSE(isCaptureFileName("tlstap-20261126-1400.pcap"));
  EXPECT_FALSE(isCaptureFileName("tlstap-2026112a-140000.pcap"));
  EXPECT_FALSE(isCaptureFileName("tlstap-20261126-140000_1.pcap"));
  EXPECT_FALSE(isCaptureFileName("other-20261126-140000.pcap"));
  EXPECT_FALSE(isCaptureFileName("notes.txt"));
  EXPECT_FALSE(isCaptureFileName("../tlstap-20261126-140000.pcap"));
}

TEST(PcapRetention, ChoosesTheOldestFirstAndNeverTheOpenFile) {
  const int64_t now = T_140512;
  std::vector<CaptureFile> files;
  // Out of order on purpose: the choice goes by name.
  files.push_back({kj::str("tlstap-20261126-130000.pcap"), 100, now - HOUR});
  files.push_back({kj::str("tlstap-20261126-110000.pcap"), 100, now - 3 * HOUR});
  files.push_back({kj::str("tlstap-20261126-140000.pcap"), 100, now});
  files.push_back({kj::str("tlstap-20261126-120000.pcap"), 100, now - 2 * HOUR - 1});
  auto open = "tlstap-20261126-140000.pcap";

  RetentionPolicy bySize{0, 250};
  EXPECT_EQ(strings(chooseFilesToDelete(kj::arrayPtr(files.data(), files.size()), open, bySize,
                                        now)),
            (std::vector<std::string>{"tlstap-20261126-110000.pcap",
                                      "tlstap-20261126-120000.pcap"}));
  RetentionPolicy byAge{2, 0};
  EXPECT_EQ(strings(chooseFilesToDelete(kj::arrayPtr(files.data(), files.size()), open, byAge,
                                        now)),
            (std::vector<std::string>{"tlstap-20261126-110000.pcap",
                                      "tlstap-20261126-120000.pcap"}));
  // A limit smaller than the open file alone: every closed file goes, the open one stays.
  RetentionPolicy tiny{0, 1};
  EXPECT_EQ(chooseFilesToDelete(kj::arrayPtr(files.data(), files.size()), open, tiny, now).size(),
            3u);
  // Within both limits: nothing.
  RetentionPolicy roomy{5, 400};
  EXPECT_EQ(chooseFilesToDelete(kj::arrayPtr(files.data(), files.size()), open, roomy, now).size(),
            0u);
}

// The writer crosses several hours with --max-bytes set: after each rotation only the newest
// files fit, the open one is never deleted, and files that are not its own are left alone.
TEST(PcapRetention, RotatingWriterKeepsWithinMaxBytes) {
  TempDir dir;
  writeFile(dir.file("notes.txt"), 10000);
  writeFile(dir.file("tlstap-old.pcap"), 10000);
  writeFile(dir.file("tlstap-20261126-100000.pcap.gz"), 10000);
  FakeClock clock(T_140000);
  // Each hour's file: a 24-byte header and 10 records of 16 + 1000 bytes.
  const uint64_t perFile = 24 + 10 * 1016;
  RotatingPcapWriter writer(dir.path.c_str(), clock, RetentionPolicy{0, 2 * perFile + 100});
  std::vector<std::string> foreign = {"notes.txt", "tlstap-20261126-100000.pcap.gz",
                                      "tlstap-old.pcap"};
  for (int hour = 0; hour < 5; hour++) {
    clock.now = T_140000 + hour * HOUR + 10;
    for (int i = 0; i < 10; i++) writer.writePacket(clock.now, view(frameOf(1000, hour)));
    writer.flush();
  }
  // Checked when each file opened: at 18:00 the closed 15, 16 and 17 and the new, nearly empty
  // 18 were over the limit, so 15 went (14 went at 17:00).
  auto expected = foreign;
  for (auto hour : {"16", "17", "18"}) {
    expected.push_back(std::string("tlstap-20261126-") + hour + "0000.pcap");
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(dir.list(), expected);
  EXPECT_EQ(writer.counters().filesDeleted, 2u);
  EXPECT_EQ(writer.counters().filesWritten, 5u);

  // The open file has grown since: the check a minute later deletes the oldest again, and never
  // the open file, however large.
  clock.now += 61 * 1000000ll;
  writer.tick();
  expected.erase(std::find(expected.begin(), expected.end(), "tlstap-20261126-160000.pcap"));
  EXPECT_EQ(dir.list(), expected);
  EXPECT_EQ(current(writer), "tlstap-20261126-180000.pcap");
  EXPECT_EQ(writer.counters().filesDeleted, 3u);
  // The survivors are whole captures.
  EXPECT_EQ(readPcap(dir.file("tlstap-20261126-170000.pcap")).packets.size(), 10u);
  writer.close();
  EXPECT_EQ(readPcap(dir.file("tlstap-20261126-180000.pcap")).packets.size(), 10u);
}

TEST(PcapRetention, RotatingWriterDeletesOldFilesAtStartAndOnTick) {
  TempDir dir;
  int64_t now = wallClockUs();
  // Files from an earlier run: last written 30, 5 and 1 hours ago.
  writeFile(dir.file("tlstap-20200120-080000.pcap"), 100);
  writeFile(dir.file("tlstap-20200121-090000.pcap"), 100);
  writeFile(dir.file("tlstap-20200121-130000.pcap"), 100);
  writeFile(dir.file("keep-me.pcap"), 100);
  setModified(dir.file("tlstap-20200120-080000.pcap"), now - 30 * HOUR);
  setModified(dir.file("tlstap-20200121-090000.pcap"), now - 5 * HOUR);
  setModified(dir.file("tlstap-20200121-130000.pcap"), now - 1 * HOUR);
  setModified(dir.file("keep-me.pcap"), now - 100 * HOUR);
  FakeClock clock(now);
  RotatingPcapWriter writer(dir.path.c_str(), clock, RetentionPolicy{6, 0});
  auto open = current(writer);
  EXPECT_EQ(dir.list(), (std::vector<std::string>{"keep-me.pcap", "tlstap-20200121-090000.pcap",
                                                  "tlstap-20200121-130000.pcap", open}));
  // Two hours later the 5-hour-old file is 7 hours old; the one from an hour ago is 3 hours old;
  // the retention check runs once a minute from tick().
  clock.now = now + 2 * HOUR;
  writer.tick();
  auto list = dir.list();
  EXPECT_EQ(std::count(list.begin(), list.end(), "tlstap-20200121-090000.pcap"), 0);
  EXPECT_EQ(std::count(list.begin(), list.end(), "tlstap-20200121-130000.pcap"), 1);
  EXPECT_EQ(std::count(list.begin(), list.end(), "keep-me.pcap"), 1);
  EXPECT_EQ(writer.counters().filesDeleted, 2u);
  EXPECT_EQ(without(list, "keep-me.pcap").size(), 3u);  // 13:00, the first file and the open one
}

TEST(ByteSize, SuffixesAndErrors) {
  EXPECT_EQ(parseByteSize("1048576"), uint64_t(1048576));
  EXPECT_EQ(parseByteSize("64K"), uint64_t(64) << 10);
  EXPECT_EQ(parseByteSize("512M"), uint64_t(512) << 20);
  EXPECT_EQ(parseByteSize("10G"), uint64_t(10) << 30);
  EXPECT_EQ(parseByteSize("2T"), uint64_t(2) << 40);
  EXPECT_EQ(parseByteSize("3gib"), uint64_t(3) << 30);
  EXPECT_EQ(parseByteSize("5MB"), uint64_t(5) << 20);
  EXPECT_EQ(parseByteSize("0"), nullptr);
  EXPECT_EQ(parseByteSize(""), nullptr);
  EXPECT_EQ(parseByteSize("G"), nullptr);
  EXPECT_EQ(parseByteSize("10X"), nullptr);
  EXPECT_EQ(parseByteSize("10 G"), nullptr);
  EXPECT_EQ(parseByteSize("-1"), nullptr);
  EXPECT_EQ(parseByteSize("99999999999T"), nullptr);  // does not fit 64 bits
}

}  // namespace
}  // namespace tlstap
