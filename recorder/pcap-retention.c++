#include "pcap-retention.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <kj/vector.h>

#include "common/log.h"

namespace tlstap {

namespace {

constexpr int64_t HOUR_US = 3600ll * 1000000;

bool digits(kj::StringPtr text, size_t from, size_t count) {
  for (size_t i = from; i < from + count; i++) {
    if (text[i] < '0' || text[i] > '9') return false;
  }
  return true;
}

// One RAII owner for a DIR stream.
class Directory {
public:
  explicit Directory(DIR* dir) : dir(dir) {}
  ~Directory() {
    if (dir != nullptr) closedir(dir);
  }
  KJ_DISALLOW_COPY(Directory);
  DIR* get() const { return dir; }

private:
  DIR* dir;
};

}  // namespace

bool isCaptureFileName(kj::StringPtr name) {
  // tlstap-YYYYMMDD-HHMMSS.pcap (27 characters) or tlstap-YYYYMMDD-HHMMSS_NN.pcap (30).
  if (name.size() != 27 && name.size() != 30) return false;
  if (!name.startsWith("tlstap-") || !name.endsWith(".pcap")) return false;
  if (!digits(name, 7, 8) || name[15] != '-' || !digits(name, 16, 6)) return false;
  return name.size() == 27 || (name[22] == '_' && digits(name, 23, 2));
}

kj::Array<kj::String> chooseFilesToDelete(kj::ArrayPtr<const CaptureFile> files,
                                          kj::StringPtr openName, const RetentionPolicy& policy,
                                          int64_t nowUs) {
  kj::Vector<const CaptureFile*> sorted;
  uint64_t total = 0;
  for (auto& file : files) {
    sorted.add(&file);
    total += file.bytes;
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const CaptureFile* a, const CaptureFile* b) { return a->name < b->name; });
  kj::Vector<kj::String> doomed;
  int64_t oldestKeptUs = nowUs - int64_t(policy.retainHours) * HOUR_US;
  for (auto file : sorted) {
    if (file->name == openName) continue;
    bool tooOld = policy.retainHours > 0 && file->modifiedUs < oldestKeptUs;
    bool tooMuch = policy.maxBytes > 0 && total > policy.maxBytes;
    if (!tooOld && !tooMuch) continue;
    doomed.add(kj::str(file->name));
    total -= file->bytes;
  }
  return doomed.releaseAsArray();
}

uint64_t applyRetention(int dirFd, kj::StringPtr dirPath, kj::StringPtr openName,
                        const RetentionPolicy& policy, int64_t nowUs) {
  if (!policy.active()) return 0;
  // fdopendir() takes the fd it is given: read a duplicate, from its start.
  int copy = fcntl(dirFd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    logError("retention: cannot read ", dirPath, ": ", strerror(errno));
    return 0;
  }
  Directory dir(fdopendir(copy));
  if (dir.get() == nullptr) {
    logError("retention: cannot read ", dirPath, ": ", strerror(errno));
    ::close(copy);
    return 0;
  }
  rewinddir(dir.get());
  kj::Vector<CaptureFile> files;
  while (struct dirent* entry = readdir(dir.get())) {
    kj::StringPtr name = entry->d_name;
    if (!isCaptureFileName(name)) continue;
    struct stat st;
    if (fstatat(dirFd, name.cStr(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
      continue;
    }
    int64_t modifiedUs = int64_t(st.st_mtim.tv_sec) * 1000000 + st.st_mtim.tv_nsec / 1000;
    files.add(CaptureFile{kj::str(name), uint64_t(st.st_size), modifiedUs});
  }
  uint64_t deleted = 0;
  for (auto& name : chooseFilesToDelete(files, openName, policy, nowUs)) {
    if (unlinkat(dirFd, name.cStr(), 0) != 0) {
      logError("retention: cannot delete ", dirPath, "/", name, ": ", strerror(errno));
      continue;
    }
    deleted++;
    logInfo("retention: deleted ", dirPath, "/", name);
  }
  return deleted;
}

}  // namespace tlstap
