#include "log.h"

#include <stdio.h>
#include <unistd.h>

namespace tlstap {

namespace {
// Plain statics rather than a logger object: logging must work from any callback, before main()
// has wired anything, and must never throw.
const char* programName = "tlstap";
bool verbose = false;

const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::ERROR: return "error";
    case LogLevel::WARNING: return "warning";
    case LogLevel::INFO: return "info";
    case LogLevel::DEBUG: return "debug";
  }
  return "?";
}
}  // namespace

void setLogProgram(kj::StringPtr name) { programName = name.cStr(); }
void setLogVerbose(bool v) { verbose = v; }
bool logVerbose() { return verbose; }

void logLine(LogLevel level, kj::StringPtr message) {
  // One write() per line so lines from several threads or processes do not interleave.
  auto line = kj::str(programName, ": ", levelName(level), ": ", message, "\n");
  const char* p = line.begin();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;
    p += n;
    left -= n;
  }
}

}  // namespace tlstap
