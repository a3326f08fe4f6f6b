// One-line log messages on stderr, prefixed with the program name and the level.
// Both programs log through this so that a user reads one format.
#pragma once

#include <kj/string.h>

namespace tlstap {

enum class LogLevel { ERROR, WARNING, INFO, DEBUG };

// Set once by main(): the prefix of every line, and whether DEBUG lines are printed.
void setLogProgram(kj::StringPtr name);
void setLogVerbose(bool verbose);
bool logVerbose();

void logLine(LogLevel level, kj::StringPtr message);

template <typename... Params>
void logError(Params&&... params) {
  logLine(LogLevel::ERROR, kj::str(kj::fwd<Params>(params)...));
}
template <typename... Params>
void logWarning(Params&&... params) {
  logLine(LogLevel::WARNING, kj::str(kj::fwd<Params>(params)...));
}
template <typename... Params>
void logInfo(Params&&... params) {
  logLine(LogLevel::INFO, kj::str(kj::fwd<Params>(params)...));
}
template <typename... Params>
void logDebug(Params&&... params) {
  if (logVerbose()) logLine(LogLevel::DEBUG, kj::str(kj::fwd<Params>(params)...));
}

}  // namespace tlstap
