// The recorder the front starts itself when no --recorder is given, kept running by a supervisor:
// `tlstap-recorder --supervise 3 ARGS...` as a child process (recorder/supervisor.h), with a
// control socket on its fd 3 (common/supervisor-protocol.h). The supervisor starts the recorder
// itself, starts it again when it dies, and hands the front a new link each time it asks through
// SupervisedRecorderSource (supervised-recorder-source.h), also after the front's lock-down, when
// it can no longer fork, execute or make socket pairs. The process tree:
//
//     tlstap-front
//      `- tlstap-recorder --supervise 3 ...           (the supervisor; this class's child)
//          `- tlstap-recorder --connection-fd 3 ...   (the recorder; replaced when it dies)
//
//     EmbeddedRecorder recorder;
//     KJ_IF_MAYBE(error, recorder.start(outputs)) exitWithUsageError(PROGRAM, *error);
//     SupervisedRecorderSource source(base, recorder.takeControl());
//     ... source.connect() ...
//     source and client destroyed: the recorder finishes its files, the supervisor exits
//     recorder.wait();
//
// The supervisor is a fresh exec: it inherits none of the front's memory (keys, passwords), no
// fd but the control socket and stdin/stdout/stderr, and of the environment only what
// recorderEnvironment() keeps. It and its recorders inherit stderr, so a recorder that refuses
// its options (exit status 2, one line naming the option) is heard directly. They run in a
// process group of their own, so a terminal's Ctrl-C reaches only the front, which then drains
// the recording before the recorder is told to stop.
#pragma once

#include <sys/types.h>
#include <kj/array.h>
#include <kj/io.h>
#include <kj/string.h>

#include "common/stats.h"

namespace tlstap {

// The recording options the front passes through to its embedded recorder.
struct RecordingOutputs {
  kj::Maybe<kj::StringPtr> outputDir;                 // -o DIR
  kj::Maybe<kj::StringPtr> writeFile;                 // -w FILE
  kj::ArrayPtr<const kj::String> pcapOverIp;          // --pcapoverip X, each
  kj::ArrayPtr<const kj::String> pcapOverIpConnect;   // --pcapoveripconnect X, each
  uint32_t autoflushSeconds = 1;                      // --autoflush N
  uint64_t retainHours = 0;                           // --retain-hours N, if not 0
  uint64_t maxBytes = 0;                              // --max-bytes SIZE, if not 0
  uint32_t statsIntervalSeconds = DEFAULT_STATS_INTERVAL_SECONDS;  // --stats-interval N
  bool verbose = false;                               // -v
  kj::Maybe<kj::StringPtr> user;  // --user: the recorder drops to it (the front runs as root)
};

// The environment of the supervisor and its recorders: from `from` (environ), only PATH, TZ,
// LANG, LC_*, LD_LIBRARY_PATH and the sanitizers' options. The supervisor starts before the front
// reads a password given as env:NAME, and the recorder needs none of the rest.
kj::Array<kj::String> recorderEnvironment(const char* const* from);

// The recorder's arguments after argv[0]: the outputs. The supervisor adds "--connection-fd 3".
kj::Array<kj::String> recorderArguments(const RecordingOutputs& outputs);

// Where tlstap-recorder is: $TLSTAP_RECORDER if set; else beside this program (installed), or
// at ../recorder/tlstap-recorder from it (the build tree). The reason if none is executable.
kj::Maybe<kj::String> findRecorderBinary(kj::String& path);

class EmbeddedRecorder {
public:
  EmbeddedRecorder() = default;
  // If the supervisor still runs: closes the control socket if it was not taken, waits a few
  // seconds for it to exit, then kills it. Destroy the source and the client first.
  ~EmbeddedRecorder() noexcept;
  KJ_DISALLOW_COPY(EmbeddedRecorder);

  // Finds the binary and starts the supervisor, which starts the recorder. Returns a one-line
  // reason on failure (for exit status 2).
  kj::Maybe<kj::String> start(const RecordingOutputs& outputs);

  // The front's end of the control socket (once).
  kj::AutoCloseFd takeControl();

  pid_t pid() const { return child; }
  kj::StringPtr binary() const { return path; }

  // Waits for the supervisor to exit (it does once the control socket is closed and the recorder
  // has finished) and returns its exit status (the last recorder's), or 128 + the signal that
  // killed it.
  int wait();

  // How the child ended, if it has: e.g. "tlstap-recorder exited with status 2". Does not block.
  kj::Maybe<kj::String> checkExited();

private:
  static kj::String describe(int status);
  static int exitCode(int status);

  kj::String path;
  kj::AutoCloseFd control;
  pid_t child = -1;
  bool reaped = false;
  int status = 0;
};

}  // namespace tlstap
