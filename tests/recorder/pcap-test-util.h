// Test-only helpers for the pcap writer tests: a fake clock, a temporary directory, and a pcap
// reader that is libpcap itself (an independent reading of what the writer wrote).
#pragma once

#include <dirent.h>
#include <pcap/pcap.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <string>
#include <vector>

#include "recorder/pcap-writer.h"
#include "tests/recorder/frame-parser.h"

namespace tlstap {

// 2026-11-26 14:05:12 UTC.
constexpr int64_t T_140512 = 1795701912ll * 1000000;
constexpr int64_t T_135959 = 1795701599ll * 1000000;
constexpr int64_t T_140000 = 1795701600ll * 1000000;
constexpr int64_t HOUR = 3600ll * 1000000;

inline SystemClock wallClock;

class FakeClock final : public Clock {
public:
  explicit FakeClock(int64_t now) : now(now) {}
  int64_t nowUs() override { return now; }
  int64_t now;
};

class TempDir {
public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string templ = std::string(base != nullptr && *base ? base : "/tmp") + "/pcapw-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) abort();
    path = buf.data();
  }
  ~TempDir() {
    chmod(path.c_str(), 0700);
    for (auto& name : list()) unlink((path + "/" + name).c_str());
    rmdir(path.c_str());
  }
  // Sorted file names, as `ls` in the C locale shows them.
  std::vector<std::string> list() const {
    std::vector<std::string> out;
    DIR* d = opendir(path.c_str());
    if (d == nullptr) return out;
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") out.push_back(name);
    }
    closedir(d);
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::string path;
};

struct PcapContents {
  std::string error;  // from pcap_open_offline or a truncated record
  int linkType = -1;
  int snapLen = -1;
  std::vector<test::CapturedPacket> packets;
};

inline PcapContents readPcap(const std::string& path) {
  PcapContents out;
  char errbuf[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path.c_str(), errbuf);
  if (p == nullptr) {
    out.error = errbuf;
    return out;
  }
  out.linkType = pcap_datalink(p);
  out.snapLen = pcap_snapshot(p);
  struct pcap_pkthdr* h;
  const u_char* data;
  int rc;
  while ((rc = pcap_next_ex(p, &h, &data)) == 1) {
    int64_t t = int64_t(h->ts.tv_sec) * 1000000 + h->ts.tv_usec;
    out.packets.push_back({t, std::vector<uint8_t>(data, data + h->caplen)});
  }
  if (rc == -1) out.error = pcap_geterr(p);
  pcap_close(p);
  return out;
}

inline std::vector<kj::byte> frameOf(size_t size, uint8_t fill) {
  return std::vector<kj::byte>(size, fill);
}
inline kj::ArrayPtr<const kj::byte> view(const std::vector<kj::byte>& v) {
  return kj::arrayPtr(v.data(), v.size());
}

inline std::string current(const RotatingPcapWriter& writer) {
  return writer.currentFileName().cStr();
}

}  // namespace tlstap
