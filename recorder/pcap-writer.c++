#include "pcap-writer.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <kj/exception.h>

#include "common/log.h"

namespace tlstap {

namespace {

constexpr int SNAPLEN = 65535;
constexpr size_t STDIO_BUFFER = 1 << 20;  // few, large write() calls at gigabytes per second
constexpr int64_t SECOND_US = 1000000;
constexpr int64_t HOUR_US = 3600 * SECOND_US;
constexpr int64_t RETRY_US = 60 * SECOND_US;
constexpr unsigned MAX_COLLISIONS = 99;

int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// A kj::Exception whose description is the whole message: main() prints it as the one line a
// user sees, so it must not carry KJ's "file:line: failed: ..." decoration.
[[noreturn]] void throwOneLine(kj::String message) {
  kj::throwFatalException(
      kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::mv(message)));
}

// One RAII owner per C handle.
class StdioFile {
public:
  explicit StdioFile(FILE* file) : file(file) {}
  ~StdioFile() {
    if (file != nullptr) fclose(file);
  }
  KJ_DISALLOW_COPY(StdioFile);
  FILE* get() const { return file; }
  FILE* release() {
    FILE* f = file;
    file = nullptr;
    return f;
  }

private:
  FILE* file;
};

class DeadPcap {
public:
  DeadPcap() : pcap(pcap_open_dead(DLT_EN10MB, SNAPLEN)) {}
  ~DeadPcap() {
    if (pcap != nullptr) pcap_close(pcap);
  }
  KJ_DISALLOW_COPY(DeadPcap);
  pcap_t* get() const { return pcap; }

private:
  pcap_t* pcap;
};

// Owns the dumper and, through it, the FILE (pcap_dump_close() fcloses it).
class PcapDumper {
public:
  PcapDumper() = default;
  ~PcapDumper() { close(); }
  KJ_DISALLOW_COPY(PcapDumper);
  void reset(pcap_dumper_t* d) {
    close();
    dumper = d;
  }
  pcap_dumper_t* get() const { return dumper; }
  void close() {
    if (dumper != nullptr) pcap_dump_close(dumper);
    dumper = nullptr;
  }

private:
  pcap_dumper_t* dumper = nullptr;
};

kj::String formatTime(int64_t timeUs, bool wholeHour, unsigned collision) {
  time_t seconds = floorDiv(timeUs, SECOND_US);
  struct tm tm;
  gmtime_r(&seconds, &tm);
  char name[64];
  char suffix[16] = "";
  if (collision > 0) snprintf(suffix, sizeof(suffix), "_%02u", collision);
  snprintf(name, sizeof(name), "tlstap-%04d%02d%02d-%02d%02d%02d%s.pcap", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, wholeHour ? 0 : tm.tm_min,
           wholeHour ? 0 : tm.tm_sec, suffix);
  return kj::str(name);
}

}  // namespace

// A pcap file being written: the stdio buffer, the pcap handle that describes the link type,
// and the dumper that owns the FILE, destroyed in that reverse order.
class PcapFile {
public:
  // Takes the fd (closed on failure too), writes the global header and flushes it, so the file is
  // a valid, empty capture from the start. Throws "cannot create NAME: reason".
  PcapFile(kj::AutoCloseFd fd, kj::String name)
      : name(kj::mv(name)), buffer(kj::heapArray<kj::byte>(STDIO_BUFFER)) {
    FILE* f = fdopen(fd.get(), "wb");
    if (f == nullptr) throwOneLine(kj::str("cannot create ", this->name, ": ", strerror(errno)));
    fd.release();
    StdioFile owned(f);
    setvbuf(f, reinterpret_cast<char*>(buffer.begin()), _IOFBF, buffer.size());
    // Only one thread writes a file; stdio's per-call locking would be pure overhead.
    __fsetlocking(f, FSETLOCKING_BYCALLER);
    if (pcap.get() == nullptr) throwOneLine(kj::str("cannot create ", this->name, ": pcap"));
    pcap_dumper_t* d = pcap_dump_fopen(pcap.get(), f);
    if (d == nullptr) {
      throwOneLine(kj::str("cannot create ", this->name, ": ", pcap_geterr(pcap.get())));
    }
    owned.release();
    dumper.reset(d);
    file = f;
    if (!flush()) throwOneLine(kj::str("cannot create ", this->name, ": ", strerror(err)));
  }
  KJ_DISALLOW_COPY(PcapFile);

  // False once writing has failed; the reason is in error().
  bool write(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) {
    struct pcap_pkthdr header;
    int64_t seconds = floorDiv(timeUs, SECOND_US);
    header.ts.tv_sec = seconds;
    header.ts.tv_usec = timeUs - seconds * SECOND_US;
    header.len = frame.size();
    header.caplen = kj::min(frame.size(), size_t(SNAPLEN));
    errno = 0;
    pcap_dump(reinterpret_cast<u_char*>(dumper.get()), &header, frame.begin());
    // pcap_dump() ignores fwrite()'s result; the stream's error flag remembers it.
    if (KJ_UNLIKELY(ferror_unlocked(file))) {
      err = errno != 0 ? errno : EIO;
      return false;
    }
    return true;
  }

  bool flush() {
    if (pcap_dump_flush(dumper.get()) != 0 || ferror_unlocked(file)) {
      err = errno != 0 ? errno : EIO;
      return false;
    }
    return true;
  }

  // Flushes and closes; false if the last data could not be written.
  bool close() {
    bool ok = flush();
    dumper.close();
    return ok;
  }

  kj::StringPtr path() const { return name; }
  int error() const { return err; }

private:
  kj::String name;
  kj::Array<kj::byte> buffer;  // stdio's buffer: must outlive the FILE
  DeadPcap pcap;
  PcapDumper dumper;
  FILE* file = nullptr;  // owned by `dumper`
  int err = 0;
};

// ---------------------------------------------------------------------------------------------

SinglePcapWriter::SinglePcapWriter(kj::StringPtr path) : path(kj::str(path)) {
  int fd = ::open(path.cStr(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) throwOneLine(kj::str("cannot create ", path, ": ", strerror(errno)));
  file = kj::heap<PcapFile>(kj::AutoCloseFd(fd), kj::str(path));
}

SinglePcapWriter::~SinglePcapWriter() noexcept(false) { close(); }

void SinglePcapWriter::writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) {
  KJ_IF_MAYBE(f, file) {
    if (KJ_LIKELY((*f)->write(timeUs, frame))) return;
    logError("cannot write ", (*f)->path(), ": ", strerror((*f)->error()),
             "; recording to it stops");
    file = nullptr;
  }
  lost++;
}

void SinglePcapWriter::flush() {
  KJ_IF_MAYBE(f, file) {
    if ((*f)->flush()) return;
    logError("cannot write ", (*f)->path(), ": ", strerror((*f)->error()),
             "; recording to it stops");
    file = nullptr;
  }
}

void SinglePcapWriter::close() {
  KJ_IF_MAYBE(f, file) {
    if (!(*f)->close()) {
      logError("cannot write ", (*f)->path(), ": ", strerror((*f)->error()));
    }
  }
  file = nullptr;
  if (lost > 0 && !lossReported) {
    logError(path, ": ", lost, " packets could not be recorded");
    lossReported = true;
  }
}

// ---------------------------------------------------------------------------------------------

kj::String RotatingPcapWriter::fileNameForHour(int64_t timeUs) {
  return formatTime(timeUs, true, 0);
}

kj::String RotatingPcapWriter::fileNameForTime(int64_t timeUs, unsigned collision) {
  return formatTime(timeUs, false, collision);
}

kj::AutoCloseFd RotatingPcapWriter::openDirectory(kj::StringPtr dir, bool& created) {
  // Like PolarProxy's -o, a missing last directory is created (owner and group only: it will
  // hold decrypted traffic); a missing parent is still an error.
  created = mkdir(dir.cStr(), 0750) == 0;
  if (!created && errno != EEXIST) {
    throwOneLine(kj::str("cannot create directory ", dir, ": ", strerror(errno)));
  }
  int fd = ::open(dir.cStr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throwOneLine(kj::str("cannot open directory ", dir, ": ", strerror(errno)));
  return kj::AutoCloseFd(fd);
}

RotatingPcapWriter::RotatingPcapWriter(kj::StringPtr dir, Clock& clock)
    : RotatingPcapWriter(
          [&]() {
            bool created;
            return openDirectory(dir, created);
          }(),
          dir, clock) {}

RotatingPcapWriter::RotatingPcapWriter(kj::AutoCloseFd directory, kj::StringPtr dir,
                                       Clock& clock)
    : dirPath(kj::str(dir)), dirFd(kj::mv(directory)), clock(clock) {
  openFile(clock.nowUs(), true);
}

RotatingPcapWriter::~RotatingPcapWriter() noexcept(false) { close(); }

kj::StringPtr RotatingPcapWriter::currentFileName() const {
  if (file == nullptr) return "";
  return currentName;
}

void RotatingPcapWriter::openFile(int64_t nowUs, bool throwOnFailure) {
  hourStartUs = floorDiv(nowUs, HOUR_US) * HOUR_US;
  // O_EXCL: never append to or truncate a file that exists, e.g. from before a restart.
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
  kj::String name = fileNameForHour(nowUs);
  int fd = ::openat(dirFd, name.cStr(), flags, 0640);
  for (unsigned n = 0; fd < 0 && errno == EEXIST && n <= MAX_COLLISIONS; n++) {
    name = fileNameForTime(nowUs, n);
    fd = ::openat(dirFd, name.cStr(), flags, 0640);
  }
  kj::Maybe<kj::String> problem;
  if (fd < 0) {
    problem = kj::str("cannot create ", dirPath, "/", name, ": ", strerror(errno));
  } else {
    auto path = kj::str(dirPath, "/", name);
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      file = kj::heap<PcapFile>(kj::AutoCloseFd(fd), kj::mv(path));
    })) {
      problem = kj::str(e->getDescription());
      // An empty or headerless file would only confuse readers and retention.
      ::unlinkat(dirFd, name.cStr(), 0);
    }
  }
  KJ_IF_MAYBE(p, problem) {
    if (throwOnFailure) throwOneLine(kj::mv(*p));
    logError(*p, "; packets are lost until a retry in a minute succeeds");
    retryAtUs = nowUs + RETRY_US;
    return;
  }
  currentName = kj::mv(name);
  if (lostSinceFailure > 0) {
    logWarning("recording resumed in ", dirPath, "/", currentName, "; ", lostSinceFailure,
               " packets were lost");
    lostSinceFailure = 0;
  }
}

void RotatingPcapWriter::closeFile() {
  KJ_IF_MAYBE(f, file) {
    if (!(*f)->close()) logError("cannot write ", (*f)->path(), ": ", strerror((*f)->error()));
  }
  file = nullptr;
}

void RotatingPcapWriter::failed(int64_t nowUs, int error) {
  KJ_IF_MAYBE(f, file) {
    logError("cannot write ", (*f)->path(), ": ", strerror(error),
             "; packets are lost until a new file opens (retry in a minute)");
  }
  file = nullptr;
  retryAtUs = nowUs + RETRY_US;
}

void RotatingPcapWriter::update(int64_t nowUs) {
  if (closed) return;
  bool sameHour = nowUs >= hourStartUs && nowUs - hourStartUs < HOUR_US;
  if (file != nullptr) {
    if (KJ_LIKELY(sameHour)) return;
    closeFile();
  } else if (sameHour && nowUs < retryAtUs) {
    return;
  }
  openFile(nowUs, false);
}

void RotatingPcapWriter::writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) {
  int64_t nowUs = clock.nowUs();
  update(nowUs);
  KJ_IF_MAYBE(f, file) {
    if (KJ_LIKELY((*f)->write(timeUs, frame))) return;
    failed(nowUs, (*f)->error());
  }
  lost++;
  lostSinceFailure++;
}

void RotatingPcapWriter::flush() {
  KJ_IF_MAYBE(f, file) {
    if (!(*f)->flush()) failed(clock.nowUs(), (*f)->error());
  }
}

void RotatingPcapWriter::rotateIfDue() { update(clock.nowUs()); }

void RotatingPcapWriter::close() {
  closeFile();
  closed = true;
}

}  // namespace tlstap
