// The recorder the front starts itself when no --recorder is given: tlstap-recorder as a child
// process, serving Cap'n Proto RPC on one end of a socket pair (its fd 3) and exiting when that
// closes. The front keeps the other end for its RecorderClient.
//
//     EmbeddedRecorder recorder;
//     KJ_IF_MAYBE(error, recorder.start(outputs)) exitWithUsageError(PROGRAM, *error);
//     RecorderClient client(wrapSocketFd(base, recorder.takeLink()));
//     client.whenReady()...  // rejects if the recorder refused its options and exited
//     ...
//     client.drainAndClose()...;  // closes the link: the recorder finishes its files and exits
//     recorder.wait();
//
// The child inherits stderr, so a recorder that refuses its options (exit status 2, one line
// naming the option) is heard directly. It runs in its own process group, so a terminal's Ctrl-C
// reaches only the front, which then drains the recording before the recorder is told to stop.
#pragma once

#include <sys/types.h>
#include <kj/array.h>
#include <kj/io.h>
#include <kj/string.h>

namespace tlstap {

// The recording options the front passes through to its embedded recorder.
struct RecordingOutputs {
  kj::Maybe<kj::StringPtr> outputDir;                 // -o DIR
  kj::Maybe<kj::StringPtr> writeFile;                 // -w FILE
  kj::ArrayPtr<const kj::String> pcapOverIp;          // --pcapoverip X, each
  kj::ArrayPtr<const kj::String> pcapOverIpConnect;   // --pcapoveripconnect X, each
  uint32_t autoflushSeconds = 1;                      // --autoflush N
  bool verbose = false;                               // -v
  kj::Maybe<kj::StringPtr> user;  // --user: the recorder drops to it (the front runs as root)
};

// The recorder's arguments after argv[0]: "--connection-fd 3" and the outputs.
kj::Array<kj::String> recorderArguments(const RecordingOutputs& outputs);

// Where tlstap-recorder is: $TLSTAP_RECORDER if set; else beside this program (installed), or
// at ../recorder/tlstap-recorder from it (the build tree). The reason if none is executable.
kj::Maybe<kj::String> findRecorderBinary(kj::String& path);

class EmbeddedRecorder {
public:
  EmbeddedRecorder() = default;
  // If the child still runs: closes the link if it was not taken, waits a few seconds for the
  // child to exit, then kills it. Destroy the RecorderClient (or close the link) first.
  ~EmbeddedRecorder() noexcept;
  KJ_DISALLOW_COPY(EmbeddedRecorder);

  // Finds the binary and starts it. Returns a one-line reason on failure (for exit status 2).
  kj::Maybe<kj::String> start(const RecordingOutputs& outputs);

  // The front's end of the socket pair (once).
  kj::AutoCloseFd takeLink();

  pid_t pid() const { return child; }
  kj::StringPtr binary() const { return path; }

  // Waits for the child to exit (it does once the link is closed) and returns its exit status,
  // or 128 + the signal that killed it.
  int wait();

  // How the child ended, if it has: e.g. "tlstap-recorder exited with status 2". Does not block.
  kj::Maybe<kj::String> checkExited();

private:
  static kj::String describe(int status);
  static int exitCode(int status);

  kj::String path;
  kj::AutoCloseFd link;
  pid_t child = -1;
  bool reaped = false;
  int status = 0;
};

}  // namespace tlstap
