// Retention for -o DIR (--retain-hours, --max-bytes): which closed capture files to delete,
// oldest first, and deleting them through the writer's directory fd (the recorder's sandbox
// allows nothing else).
//
// Only names the rotating writer creates (tlstap-YYYYMMDD-HHMMSS.pcap, with an optional _NN) are
// ever considered, so whatever else lives in the directory is never touched; the file being
// written is never deleted. Names sort by time, so "oldest" is "first by name".
#pragma once

#include <stdint.h>
#include <kj/array.h>
#include <kj/string.h>

namespace tlstap {

struct RetentionPolicy {
  uint64_t retainHours = 0;  // 0: no age limit; else delete files last written longer ago
  uint64_t maxBytes = 0;     // 0: no size limit; else keep the files' total at or below this

  bool active() const { return retainHours > 0 || maxBytes > 0; }
};

struct CaptureFile {
  kj::String name;
  uint64_t bytes;
  int64_t modifiedUs;  // last write, microseconds since the epoch
};

// True for the names the rotating writer creates.
bool isCaptureFileName(kj::StringPtr name);

// The files to delete, oldest first: those older than retainHours, then more of the oldest until
// the total (the open file included) is within maxBytes. `files` holds capture files in any
// order; `openName` is never chosen.
kj::Array<kj::String> chooseFilesToDelete(kj::ArrayPtr<const CaptureFile> files,
                                          kj::StringPtr openName, const RetentionPolicy& policy,
                                          int64_t nowUs);

// Lists the capture files in `dirFd`, deletes what the policy chooses with unlinkat() and logs
// each deletion as "DIR/NAME" (`dirPath` is for log lines). Returns how many were deleted.
uint64_t applyRetention(int dirFd, kj::StringPtr dirPath, kj::StringPtr openName,
                        const RetentionPolicy& policy, int64_t nowUs);

}  // namespace tlstap
