#include "pcap-writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <kj/debug.h>
#include <kj/exception.h>

#include "common/log.h"

namespace tlstap {

namespace {

constexpr uint32_t SNAPLEN = 65535;
constexpr uint32_t LINKTYPE_ETHERNET = 1;
constexpr size_t RECORD_HEADER = 16;
// Few, large write() calls at gigabytes per second; also the most one write-out hands over at
// once, so that a nearly full disk still takes what fits.
constexpr size_t CHUNK_BYTES = 1 << 20;
constexpr int64_t SECOND_US = 1000000;
constexpr int64_t MINUTE_US = 60 * SECOND_US;
constexpr int64_t HOUR_US = 3600 * SECOND_US;
constexpr int64_t RETRY_US = SECOND_US;
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

void put32(kj::byte* out, uint32_t value) { memcpy(out, &value, 4); }  // host order, as libpcap
void put16(kj::byte* out, uint16_t value) { memcpy(out, &value, 2); }

// The length of the longest prefix of `records` (whole pcap records) that is at most `limit`
// bytes, but at least one record.
size_t wholeRecordPrefix(kj::ArrayPtr<const kj::byte> records, size_t limit) {
  size_t at = 0;
  while (at < records.size()) {
    uint32_t caplen;
    memcpy(&caplen, records.begin() + at + 8, 4);
    size_t next = at + RECORD_HEADER + caplen;
    if (next > limit && at > 0) break;
    at = next;
  }
  return at;
}

kj::String mib(size_t bytes) { return kj::str((bytes + (1 << 19)) >> 20, " MiB"); }

// Errors that waiting can cure: the disk or the quota is full, or a file size limit was reached
// (which the writer meets like a full disk). At start-up these do not stop the recorder: it
// waits for space as it does when the disk fills while it runs. Anything else when a file is
// created (a missing directory, a permission, a read-only file system) is a configuration error.
bool waitsForSpace(int error) { return error == ENOSPC || error == EDQUOT || error == EFBIG; }

}  // namespace

// An open pcap file and its size, which always ends at a whole record: a write that fails part
// way is cut back off. The global header is written by start(), which -w FILE on a full disk
// retries until it succeeds.
class PcapFile {
public:
  PcapFile(kj::AutoCloseFd fd, kj::String name) : fd(kj::mv(fd)), name(kj::mv(name)) {}
  KJ_DISALLOW_COPY(PcapFile);

  // Writes the global header unless it is there. Returns 0 or the errno.
  int start() {
    if (size > 0) return 0;
    kj::byte header[24];
    put32(header, 0xa1b2c3d4);  // microsecond timestamps
    put16(header + 4, 2);
    put16(header + 6, 4);
    put32(header + 8, 0);   // thiszone
    put32(header + 12, 0);  // sigfigs
    put32(header + 16, SNAPLEN);
    put32(header + 20, LINKTYPE_ETHERNET);
    return write(header);
  }

  bool started() const { return size > 0; }

  // Writes all of `data` or none of it, after the header. Returns 0 or the errno.
  int append(kj::ArrayPtr<const kj::byte> data) {
    KJ_REQUIRE(started(), "records before the pcap header");
    return write(data);
  }

  kj::StringPtr path() const { return name; }
  uint64_t bytes() const { return size; }

private:
  kj::AutoCloseFd fd;
  kj::String name;
  uint64_t size = 0;

  int write(kj::ArrayPtr<const kj::byte> data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd, data.begin() + done, data.size() - done);
      if (n > 0) {
        done += n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      int error = n < 0 ? errno : ENOSPC;
      // A torn record would make the rest of the file unreadable: cut it back off. Shrinking
      // needs no space, and the next write goes at the end of the file (O_APPEND is not used,
      // so move the offset back too).
      if (done > 0 && (::ftruncate(fd, size) != 0 || ::lseek(fd, size, SEEK_SET) < 0)) {
        logError("cannot cut ", name, " back to its last whole record: ", strerror(errno));
      }
      return error;
    }
    size += data.size();
    return 0;
  }
};

// ---------------------------------------------------------------------------------------------

PcapWriter::PcapWriter(Clock& clock, size_t pendingLimit)
    : clock(clock), pendingLimit(kj::max(pendingLimit, CHUNK_BYTES)) {}

PcapWriter::~PcapWriter() noexcept(false) {}

kj::Own<PcapFile> PcapWriter::createFile(kj::AutoCloseFd fd, kj::String path, int& error) {
  auto file = kj::heap<PcapFile>(kj::mv(fd), kj::mv(path));
  error = startFile(*file);
  return file;
}

int PcapWriter::startFile(PcapFile& file) {
  if (file.started()) return 0;
  int error = file.start();
  if (error != 0) return error;
  stats.filesWritten++;
  stats.bytesWritten += file.bytes();
  return 0;
}

void PcapWriter::append(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) {
  size_t caplen = kj::min(frame.size(), size_t(SNAPLEN));
  kj::byte header[RECORD_HEADER];
  int64_t seconds = floorDiv(timeUs, SECOND_US);
  put32(header, uint32_t(seconds));
  put32(header + 4, uint32_t(timeUs - seconds * SECOND_US));
  put32(header + 8, caplen);
  put32(header + 12, frame.size());
  pending.addAll(kj::arrayPtr(header, RECORD_HEADER));
  pending.addAll(frame.slice(0, caplen));
  appendedSeq += RECORD_HEADER + caplen;
}

void PcapWriter::writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) {
  if (KJ_UNLIKELY(closed)) {
    stats.packetsLost++;
    stats.bytesLost += frame.size();
    return;
  }
  int64_t nowUs = clock.nowUs();
  // The subclass may rotate here even when nothing is written out.
  if (failure == nullptr) fileFor(nowUs);
  size_t recordSize = RECORD_HEADER + kj::min(frame.size(), size_t(SNAPLEN));
  if (KJ_UNLIKELY(pendingBytes() + recordSize > pendingLimit)) {
    if (failure == nullptr) writeOut(nowUs);
    if (pendingBytes() + recordSize > pendingLimit) {
      stats.packetsLost++;
      stats.bytesLost += frame.size();
      return;
    }
  }
  append(timeUs, frame);
  if (failure == nullptr && pendingBytes() >= CHUNK_BYTES) writeOut(nowUs);
}

int PcapWriter::writeInto(PcapFile& file) {
  int error = startFile(file);
  if (error != 0) return error;
  while (pendingBytes() > 0) {
    auto rest = pending.asPtr().slice(pendingStart, pending.size());
    size_t chunk = wholeRecordPrefix(rest, CHUNK_BYTES);
    error = file.append(rest.slice(0, chunk));
    if (error != 0) return error;
    for (size_t at = 0; at < chunk; stats.packetsWritten++) {
      uint32_t caplen;
      memcpy(&caplen, rest.begin() + at + 8, 4);
      at += RECORD_HEADER + caplen;
    }
    stats.bytesWritten += chunk;
    pendingStart += chunk;
    writtenSeq += chunk;
  }
  return 0;
}

bool PcapWriter::writeOut(int64_t nowUs) {
  bool haveFile = false;
  if (pendingBytes() > 0 || failure != nullptr) {
    KJ_IF_MAYBE(file, fileFor(nowUs)) {
      haveFile = true;
      int error = writeInto(*file);
      if (error != 0) {
        haveFile = false;
        noteFailure(nowUs, kj::str("cannot write ", file->path(), ": ", strerror(error)));
      }
    }
  }
  bool done = pendingBytes() == 0 && (failure == nullptr || haveFile);
  if (pendingBytes() == 0) {
    // After a long stall the buffer may have grown large; do not keep that memory.
    if (pending.capacity() > 4 * CHUNK_BYTES) {
      pending = kj::Vector<kj::byte>();
    } else {
      pending.clear();
    }
    pendingStart = 0;
  } else if (pendingStart >= CHUNK_BYTES) {
    // Partly written: move the rest to the front so the buffer does not creep.
    auto rest = pendingBytes();
    memmove(pending.begin(), pending.begin() + pendingStart, rest);
    pending.resize(rest);
    pendingStart = 0;
  }
  if (done && failure != nullptr) recovered();
  release();
  return done;
}

void PcapWriter::noteFailure(int64_t nowUs, kj::String problem) {
  KJ_IF_MAYBE(f, failure) {
    f->retryAtUs = nowUs + RETRY_US;
    return;
  }
  logError(problem, "; keeping up to ", mib(pendingLimit),
           " of packets and retrying every second (fronts are slowed down meanwhile)");
  failure = Failure{nowUs, nowUs + RETRY_US, stats.packetsLost};
}

void PcapWriter::recovered() {
  auto& f = KJ_ASSERT_NONNULL(failure);
  int64_t seconds = (clock.nowUs() - f.sinceUs) / SECOND_US;
  uint64_t lost = stats.packetsLost - f.lostBefore;
  if (lost == 0) {
    logInfo("writing again after ", seconds, " s; no packet was lost");
  } else {
    logError("writing again after ", seconds, " s; ", lost,
             " packets were lost (the buffer was full)");
  }
  failure = nullptr;
}

void PcapWriter::release() {
  // Waiters are in the order of their sequence numbers: release a prefix.
  size_t done = 0;
  while (done < waiters.size() && waiters[done].seq <= writtenSeq) {
    waiters[done++].fulfiller->fulfill();
  }
  if (done == 0) return;
  for (size_t i = done; i < waiters.size(); i++) waiters[i - done] = kj::mv(waiters[i]);
  waiters.resize(waiters.size() - done);
}

kj::Promise<void> PcapWriter::whenWritten() {
  if (writtenSeq >= appendedSeq || closed) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  waiters.add(Waiter{appendedSeq, kj::mv(paf.fulfiller)});
  if (!writeOutScheduled && failure == nullptr) {
    // At the end of this turn: every data call that arrived with it shares one write-out. (The
    // promise is replaced the next time, never from inside its own callback.)
    writeOutScheduled = true;
    scheduled = kj::evalLater([this]() {
                  writeOutScheduled = false;
                  if (failure == nullptr && !closed) writeOut(clock.nowUs());
                }).eagerlyEvaluate([](kj::Exception&& e) {
      logError("writing the capture: ", e.getDescription());
    });
  }
  return kj::mv(paf.promise);
}

void PcapWriter::flush() {
  if (closed || failure != nullptr) return;
  writeOut(clock.nowUs());
}

void PcapWriter::tick() {
  if (closed) return;
  int64_t nowUs = clock.nowUs();
  KJ_IF_MAYBE(f, failure) {
    if (nowUs >= f->retryAtUs) writeOut(nowUs);
  }
}

void PcapWriter::closeFile(kj::Maybe<kj::Own<PcapFile>>& file) {
  KJ_IF_MAYBE(f, file) {
    // What is pending belongs to this file's time; if it cannot go in, it goes into the next.
    if (failure == nullptr) writeInto(**f);
    release();
    file = nullptr;
    fileClosed();
  }
}

void PcapWriter::close() {
  if (closed) return;
  writeOut(clock.nowUs());
  closed = true;
  if (pendingBytes() > 0) {
    uint64_t records = 0;
    auto rest = pending.asPtr().slice(pendingStart, pending.size());
    for (size_t at = 0; at < rest.size(); records++) {
      uint32_t caplen;
      memcpy(&caplen, rest.begin() + at + 8, 4);
      at += RECORD_HEADER + caplen;
      stats.bytesLost += caplen;
    }
    stats.packetsLost += records;
    logError("closing the capture with ", records, " packets unwritten");
    pending = kj::Vector<kj::byte>();
    pendingStart = 0;
  }
  if (stats.packetsLost > 0) logError(stats.packetsLost, " packets could not be recorded");
  writtenSeq = appendedSeq;
  release();
  dropFile();
}

// ---------------------------------------------------------------------------------------------

SinglePcapWriter::SinglePcapWriter(kj::StringPtr path, Clock& clock, size_t pendingLimit)
    : PcapWriter(clock, pendingLimit) {
  int fd = ::open(path.cStr(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) throwOneLine(kj::str("cannot create ", path, ": ", strerror(errno)));
  int error;
  file = createFile(kj::AutoCloseFd(fd), kj::str(path), error);
  if (error == 0) return;
  auto problem = kj::str("cannot write ", path, ": ", strerror(error));
  if (!waitsForSpace(error)) throwOneLine(kj::mv(problem));
  // The file exists and is this writer's; its header is written with the first packets once
  // there is room (the recorder cannot create FILE again after its lock-down).
  noteFailure(clock.nowUs(), kj::mv(problem));
}

SinglePcapWriter::~SinglePcapWriter() noexcept(false) { close(); }

void SinglePcapWriter::dropFile() { file = nullptr; }

kj::Maybe<PcapFile&> SinglePcapWriter::fileFor(int64_t) {
  KJ_IF_MAYBE(f, file) return **f;
  return nullptr;
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

RotatingPcapWriter::RotatingPcapWriter(kj::StringPtr dir, Clock& clock,
                                       RetentionPolicy retention, size_t pendingLimit)
    : RotatingPcapWriter(
          [&]() {
            bool created;
            return openDirectory(dir, created);
          }(),
          dir, clock, retention, pendingLimit) {}

RotatingPcapWriter::RotatingPcapWriter(kj::AutoCloseFd directory, kj::StringPtr dir,
                                       Clock& clock, RetentionPolicy retention,
                                       size_t pendingLimit)
    : PcapWriter(clock, pendingLimit), dirPath(kj::str(dir)), dirFd(kj::mv(directory)),
      retention(retention) {
  int64_t nowUs = clock.nowUs();
  kj::String problem;
  int error = openFile(nowUs, problem);
  if (error != 0) {
    if (!waitsForSpace(error)) throwOneLine(kj::mv(problem));
    // A full disk at start-up is met like one that fills later: the file is created (and
    // packets kept meanwhile) once there is room, tried every second.
    noteFailure(nowUs, kj::mv(problem));
  }
  applyRetention(nowUs);
}

RotatingPcapWriter::~RotatingPcapWriter() noexcept(false) { close(); }

void RotatingPcapWriter::dropFile() { file = nullptr; }

kj::StringPtr RotatingPcapWriter::currentFileName() const {
  if (file == nullptr) return "";
  return currentName;
}

int RotatingPcapWriter::openFile(int64_t nowUs, kj::String& problem) {
  hourStartUs = floorDiv(nowUs, HOUR_US) * HOUR_US;
  // O_EXCL: never append to or truncate a file that exists, e.g. from before a restart.
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
  kj::String name = fileNameForHour(nowUs);
  int fd = ::openat(dirFd, name.cStr(), flags, 0640);
  for (unsigned n = 0; fd < 0 && errno == EEXIST && n <= MAX_COLLISIONS; n++) {
    name = fileNameForTime(nowUs, n);
    fd = ::openat(dirFd, name.cStr(), flags, 0640);
  }
  if (fd < 0) {
    int error = errno;
    problem = kj::str("cannot create ", dirPath, "/", name, ": ", strerror(error));
    return error;
  }
  int error;
  auto created = createFile(kj::AutoCloseFd(fd), kj::str(dirPath, "/", name), error);
  if (error != 0) {
    // An empty or headerless file would only confuse readers and retention.
    ::unlinkat(dirFd, name.cStr(), 0);
    problem = kj::str("cannot create ", dirPath, "/", name, ": ", strerror(error));
    return error;
  }
  file = kj::mv(created);
  currentName = kj::mv(name);
  return 0;
}

kj::Maybe<PcapFile&> RotatingPcapWriter::fileFor(int64_t nowUs) {
  if (closed) return nullptr;
  bool sameHour = nowUs >= hourStartUs && nowUs - hourStartUs < HOUR_US;
  KJ_IF_MAYBE(f, file) {
    if (KJ_LIKELY(sameHour)) return **f;
    // A new hour: finish the old file (what is pending goes in first, if it can).
    closeFile(file);
  }
  kj::String problem;
  if (openFile(nowUs, problem) != 0) {
    noteFailure(nowUs, kj::mv(problem));
    return nullptr;
  }
  applyRetention(nowUs);
  return *KJ_ASSERT_NONNULL(file);
}

void RotatingPcapWriter::fileClosed() { nextRetentionUs = 0; }

void RotatingPcapWriter::tick() {
  if (closed) return;
  int64_t nowUs = clock.nowUs();
  PcapWriter::tick();
  // Rotates on the hour when nothing was pending to write.
  if (writable()) fileFor(nowUs);
  if (nowUs >= nextRetentionUs) applyRetention(nowUs);
}

void RotatingPcapWriter::applyRetention(int64_t nowUs) {
  nextRetentionUs = nowUs + MINUTE_US;
  if (!retention.active()) return;
  stats.filesDeleted += tlstap::applyRetention(dirFd, dirPath, currentFileName(), retention,
                                               nowUs);
}

}  // namespace tlstap
