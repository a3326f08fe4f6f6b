// Packet sinks that write classic pcap files (microsecond timestamps, snaplen 65535, Ethernet):
// one file for -w FILE, or hourly files in a directory for -o DIR.
//
// Records are collected in the writer's own buffer and handed to the kernel with write(2) in
// chunks of whole records, so a reader of a growing file never sees a cut-off record at the end,
// and "written" has one meaning: whenWritten() resolves once the kernel has every packet given so
// far (the recorder acknowledges a front's data only then).
//
// A write error (disk full, a file size limit, an I/O error) never stops the recorder and never
// tears a record: the file is truncated back to its last whole record, the error is logged once,
// packets wait in the buffer (bounded by `pendingLimit`, beyond which they are counted as lost),
// whenWritten() waits, and tick() retries every second. When space returns, writing resumes in
// the same file, in order, with nothing duplicated.
//
// Files in DIR are created with openat() on a directory fd opened by the constructor, because
// the recorder's sandbox later allows file creation only that way; retention (pcap-retention.h)
// deletes through the same fd.
//
// Not thread-safe: one writer is driven by one thread. whenWritten() needs a KJ event loop.
#pragma once

#include <stdint.h>
#include <kj/array.h>
#include <kj/async.h>
#include <kj/io.h>
#include <kj/memory.h>
#include <kj/string.h>
#include <kj/vector.h>

#include "common/clock.h"
#include "recorder/packet-sink.h"
#include "recorder/pcap-retention.h"

namespace tlstap {

// Wall time as the writer sees it; tests inject a fake one to cross hour boundaries.
class Clock {
public:
  virtual ~Clock() = default;
  virtual int64_t nowUs() = 0;  // microseconds since the Unix epoch, UTC
};

class SystemClock final : public Clock {
public:
  int64_t nowUs() override { return wallClockUs(); }
};

// What a writer has done since it was created (the recorder's counters line).
struct PcapWriterCounters {
  uint64_t packetsWritten = 0;  // records handed to the kernel
  uint64_t bytesWritten = 0;    // file bytes handed to the kernel, pcap headers included
  uint64_t packetsLost = 0;     // records dropped: the buffer was full while writing failed
  uint64_t bytesLost = 0;       // frame bytes of those records
  uint64_t filesWritten = 0;    // files created
  uint64_t filesDeleted = 0;    // files removed by retention
};

// One open pcap file; defined in pcap-writer.c++.
class PcapFile;

// What both writers share: the record buffer, the retry after a write error, whenWritten().
class PcapWriter : public PacketSink {
public:
  static constexpr size_t DEFAULT_PENDING_LIMIT = 64u << 20;

  ~PcapWriter() noexcept(false);
  KJ_DISALLOW_COPY(PcapWriter);

  // Appends the record to the buffer; writes out once the buffer holds a chunk's worth.
  void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) override;
  // Resolves once every packet given so far has been handed to the kernel (or lost, or the writer
  // closed). Schedules a write-out on the event loop, so a burst of calls costs one write(2).
  kj::Promise<void> whenWritten() override;
  // Hands what is buffered to the kernel; called every --autoflush seconds.
  void flush();
  // Called every second: retries after an error; the rotating writer also rotates and applies
  // retention here.
  virtual void tick();
  // Writes out what it can and closes the file (complete and readable); later packets are lost.
  // Also done by the destructor.
  void close();

  // False while packets wait for a write that failed (disk full): the front gets backpressure.
  bool writable() const { return failure == nullptr; }
  const PcapWriterCounters& counters() const { return stats; }
  uint64_t lostPackets() const { return stats.packetsLost; }
  // Bytes of records waiting in the buffer.
  size_t pendingBytes() const { return pending.size() - pendingStart; }

protected:
  PcapWriter(Clock& clock, size_t pendingLimit);

  // The file to write into now, opening or rotating as needed; nullptr if none can be opened (the
  // subclass has logged why and writeOut() retries a second later).
  virtual kj::Maybe<PcapFile&> fileFor(int64_t nowUs) = 0;
  // Called after a file was closed (rotation), for retention.
  virtual void fileClosed() {}

  // Closes the file at close(); later packets are lost.
  virtual void dropFile() = 0;

  // Writes the pending records out, chunk by chunk. False if some are still pending (or no file
  // could be opened).
  bool writeOut(int64_t nowUs);
  // Writes what is pending into `file` (it is about to close) and closes it. What does not fit
  // stays pending for the next file.
  void closeFile(kj::Maybe<kj::Own<PcapFile>>& file);
  // A file could not be opened or written: logs `problem` once and retries a second later.
  void noteFailure(int64_t nowUs, kj::String problem);
  // Takes the fd and writes the pcap header; `error` is 0 or why the header could not be
  // written (the file is returned either way).
  kj::Own<PcapFile> createFile(kj::AutoCloseFd fd, kj::String path, int& error);
  // Writes `file`'s header if it has none yet. Returns 0 or the errno.
  int startFile(PcapFile& file);

  Clock& clock;
  PcapWriterCounters stats;
  bool closed = false;

private:
  void append(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame);
  // Writes pending chunks into `file` until all are written or one fails (its errno).
  int writeInto(PcapFile& file);
  void release();  // fulfils the waiters whose packets are written
  void recovered();

  const size_t pendingLimit;
  kj::Vector<kj::byte> pending;  // whole records, [pendingStart, size) not yet written
  size_t pendingStart = 0;
  uint64_t appendedSeq = 0;  // record bytes ever appended to `pending`
  uint64_t writtenSeq = 0;   // record bytes ever handed to the kernel (or given up at close)

  struct Waiter {
    uint64_t seq;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };
  kj::Vector<Waiter> waiters;
  kj::Maybe<kj::Promise<void>> scheduled;  // a write-out at the end of this event-loop turn
  bool writeOutScheduled = false;

  struct Failure {
    int64_t sinceUs;
    int64_t retryAtUs;
    uint64_t lostBefore;  // stats.packetsLost when it began
  };
  kj::Maybe<Failure> failure;
};

// -w FILE: one file, no rotation. An existing file is never overwritten: it may be an
// earlier capture.
class SinglePcapWriter final : public PcapWriter {
public:
  // Creates FILE and writes the pcap header. Throws kj::Exception "cannot create FILE: reason"
  // (FILE exists, or its directory is missing or closed). On a full disk (ENOSPC, EDQUOT,
  // EFBIG) FILE stays empty and the header is written with the first packets once there is
  // room, as after any write error.
  explicit SinglePcapWriter(kj::StringPtr path, Clock& clock,
                            size_t pendingLimit = DEFAULT_PENDING_LIMIT);
  ~SinglePcapWriter() noexcept(false);

private:
  kj::Maybe<PcapFile&> fileFor(int64_t nowUs) override;
  void dropFile() override;

  kj::Maybe<kj::Own<PcapFile>> file;
};

// -o DIR: one file per UTC hour, switched on the hour by the injected clock (the time of
// writing; packet timestamps come from the untrusted front and never choose a file).
//
// Names sort by time: tlstap-YYYYMMDD-HH0000.pcap for the hour; if that exists (a restart within
// the hour) tlstap-YYYYMMDD-HHMMSS.pcap with the opening time; if that exists too,
// tlstap-YYYYMMDD-HHMMSS_NN.pcap (NN = 01..99, which sorts after the name without suffix).
class RotatingPcapWriter final : public PcapWriter {
public:
  // Opens DIR and creates the first file at once. Throws a one-line kj::Exception if DIR is
  // missing, not a directory or not writable ("cannot open directory DIR: reason" or
  // "cannot create DIR/NAME: reason"). On a full disk (ENOSPC, EDQUOT, EFBIG) it does not throw:
  // it starts as after a write error (writable() false) and creates the file once there is
  // room. Applies `retention` at once, after each file closes and at least once a minute.
  RotatingPcapWriter(kj::StringPtr dir, Clock& clock, RetentionPolicy retention = {},
                     size_t pendingLimit = DEFAULT_PENDING_LIMIT);
  // The same with DIR already opened by openDirectory(): a recorder that drops privileges opens
  // DIR as root (its parents may be closed to the recorder's user) and creates files after.
  RotatingPcapWriter(kj::AutoCloseFd dirFd, kj::StringPtr dir, Clock& clock,
                     RetentionPolicy retention = {}, size_t pendingLimit = DEFAULT_PENDING_LIMIT);
  // Creates DIR (mode 0750) if missing, setting `created`, and opens it. Throws like the
  // constructor.
  static kj::AutoCloseFd openDirectory(kj::StringPtr dir, bool& created);
  ~RotatingPcapWriter() noexcept(false);

  // Rotates if the clock's hour changed (so that a file closes on the hour even when no packet
  // arrives), retries after an error, applies retention once a minute.
  void tick() override;
  // The old name of tick().
  void rotateIfDue() { tick(); }

  // The open output directory: the only fd the recorder's sandbox lets it create files in.
  int directoryFd() const { return dirFd; }

  // The name (without the directory) of the file being written, "" if none is open.
  kj::StringPtr currentFileName() const;

  // "tlstap-YYYYMMDD-HH0000.pcap" for the UTC hour containing timeUs.
  static kj::String fileNameForHour(int64_t timeUs);
  // "tlstap-YYYYMMDD-HHMMSS.pcap" for the UTC second containing timeUs, with "_NN" before
  // ".pcap" when collision > 0.
  static kj::String fileNameForTime(int64_t timeUs, unsigned collision = 0);

private:
  kj::Maybe<PcapFile&> fileFor(int64_t nowUs) override;
  void fileClosed() override;
  void dropFile() override;
  // Creates the file for `nowUs`. Returns 0, or the errno with a one-line `problem`.
  int openFile(int64_t nowUs, kj::String& problem);
  void applyRetention(int64_t nowUs);

  kj::String dirPath;
  kj::AutoCloseFd dirFd;
  RetentionPolicy retention;
  kj::Maybe<kj::Own<PcapFile>> file;
  kj::String currentName;
  int64_t hourStartUs = 0;      // start of the UTC hour the current file is for
  int64_t nextRetentionUs = 0;  // when retention runs again
};

}  // namespace tlstap
