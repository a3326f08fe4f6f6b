// Packet sinks that write classic pcap files (microsecond timestamps, snaplen 65535, Ethernet):
// one file for -w FILE, or hourly files in a directory for -o DIR.
//
// Files in DIR are created with openat() on a directory fd opened by the constructor, because
// the recorder's sandbox later allows file creation only that way. A write error (disk full, a
// file size limit) never stops the recorder: it is logged once, the packets are counted as lost,
// and the rotating writer tries a fresh file at most once a minute.
//
// Not thread-safe: one writer is driven by one thread (stdio locking is turned off).
#pragma once

#include <stdint.h>
#include <kj/array.h>
#include <kj/io.h>
#include <kj/memory.h>
#include <kj/string.h>

#include "common/clock.h"
#include "recorder/packet-sink.h"

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

// One open pcap file; defined in pcap-writer.c++.
class PcapFile;

// -w FILE: one file, no rotation. An existing file is never overwritten: it may be an
// earlier capture.
class SinglePcapWriter final : public PacketSink {
public:
  // Creates FILE and writes the pcap header. Throws kj::Exception "cannot create FILE: reason".
  explicit SinglePcapWriter(kj::StringPtr path);
  ~SinglePcapWriter() noexcept(false);
  KJ_DISALLOW_COPY(SinglePcapWriter);

  // After a write error the file is closed (it ends with a partial record) and later packets are
  // only counted: appending to a torn file would make the rest unreadable.
  void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) override;
  // Makes everything written so far visible to readers of the file.
  void flush();
  // Flushes and closes; later packets are dropped. Also done by the destructor.
  void close();

  uint64_t lostPackets() const { return lost; }

private:
  kj::String path;
  kj::Maybe<kj::Own<PcapFile>> file;
  uint64_t lost = 0;
  bool lossReported = false;
};

// -o DIR: one file per UTC hour, switched on the hour by the injected clock (the time of
// writing; packet timestamps come from the untrusted front and never choose a file).
//
// Names sort by time: tlstap-YYYYMMDD-HH0000.pcap for the hour; if that exists (a restart within
// the hour) tlstap-YYYYMMDD-HHMMSS.pcap with the opening time; if that exists too,
// tlstap-YYYYMMDD-HHMMSS_NN.pcap (NN = 01..99, which sorts after the name without suffix).
class RotatingPcapWriter final : public PacketSink {
public:
  // Opens DIR and creates the first file at once. Throws a one-line kj::Exception if DIR is
  // missing, not a directory or not writable ("cannot open directory DIR: reason" or
  // "cannot create DIR/NAME: reason").
  RotatingPcapWriter(kj::StringPtr dir, Clock& clock);
  // The same with DIR already opened by openDirectory(): a recorder that drops privileges opens
  // DIR as root (its parents may be closed to the recorder's user) and creates files after.
  RotatingPcapWriter(kj::AutoCloseFd dirFd, kj::StringPtr dir, Clock& clock);
  // Creates DIR (mode 0750) if missing, setting `created`, and opens it. Throws like the
  // constructor.
  static kj::AutoCloseFd openDirectory(kj::StringPtr dir, bool& created);
  ~RotatingPcapWriter() noexcept(false);
  KJ_DISALLOW_COPY(RotatingPcapWriter);

  // Rotates first if the clock's hour changed.
  void writePacket(int64_t timeUs, kj::ArrayPtr<const kj::byte> frame) override;
  // fflush; called every --autoflush seconds.
  void flush();
  // Called by a timer so that a file closes on the hour even when no packet arrives; also
  // retries after a failure.
  void rotateIfDue();
  // Flushes and closes the current file (complete and readable); later packets are dropped.
  void close();

  // The open output directory: the only fd the recorder's sandbox lets it create files in.
  int directoryFd() const { return dirFd; }

  // The name (without the directory) of the file being written, "" if none is open.
  kj::StringPtr currentFileName() const;
  // Packets that could not be written since the constructor.
  uint64_t lostPackets() const { return lost; }

  // "tlstap-YYYYMMDD-HH0000.pcap" for the UTC hour containing timeUs.
  static kj::String fileNameForHour(int64_t timeUs);
  // "tlstap-YYYYMMDD-HHMMSS.pcap" for the UTC second containing timeUs, with "_NN" before
  // ".pcap" when collision > 0.
  static kj::String fileNameForTime(int64_t timeUs, unsigned collision = 0);

private:
  // Opens the next file for `nowUs`; on failure throws if `throwOnFailure`, otherwise logs and
  // schedules a retry.
  void openFile(int64_t nowUs, bool throwOnFailure);
  // Rotates or retries if due at `nowUs`.
  void update(int64_t nowUs);
  void closeFile();
  void failed(int64_t nowUs, int error);

  kj::String dirPath;
  kj::AutoCloseFd dirFd;
  Clock& clock;
  kj::Maybe<kj::Own<PcapFile>> file;
  kj::String currentName;
  int64_t hourStartUs = 0;    // start of the UTC hour the current file (or retry) is for
  int64_t retryAtUs = 0;      // no file: when to try again
  bool closed = false;
  uint64_t lost = 0;
  uint64_t lostSinceFailure = 0;
};

}  // namespace tlstap
