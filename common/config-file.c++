#include "config-file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <kj/debug.h>

#include "common/log.h"
#include "common/password.h"

namespace tlstap {

namespace {

// A config file is a few dozen lines; anything this large is a wrong file named.
constexpr size_t MAX_CONFIG_BYTES = 1 << 20;

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// Splits one line (already trimmed, not empty, not a comment) into option and value and applies
// it. The line may hold a password: the copy that gives the value its NUL is a SecretString.
kj::Maybe<kj::String> applyLine(OptionParser& parser, kj::ArrayPtr<const char> line) {
  SecretString copy(line);
  const char* text = copy.cStr();

  size_t nameEnd = 0;
  while (nameEnd < line.size() && !isSpace(text[nameEnd])) nameEnd++;
  size_t valueStart = nameEnd;
  // "name=value" as on the command line, for long names only: "-o=x" is not a short option.
  bool shortName = line.size() >= 2 && text[0] == '-' && text[1] != '-';
  if (!shortName) {
    auto equals = static_cast<const char*>(memchr(text, '=', nameEnd));
    if (equals != nullptr) {
      nameEnd = size_t(equals - text);
      valueStart = nameEnd + 1;
    }
  }
  bool hasEquals = valueStart > nameEnd;
  while (valueStart < line.size() && isSpace(text[valueStart])) valueStart++;

  auto name = kj::heapString(text, nameEnd);
  kj::Maybe<kj::StringPtr> value;
  // "option=" gives an empty value (which its handler judges); "option" alone is a flag.
  if (valueStart < line.size() || hasEquals) {
    value = kj::StringPtr(text + valueStart, line.size() - valueStart);
  }
  return parser.applyOne(name, value);
}

}  // namespace

kj::Maybe<kj::String> applyConfigText(OptionParser& parser, kj::StringPtr name,
                                      kj::ArrayPtr<const char> text) {
  auto outer = parser.configFile();
  parser.setConfigFile(name);
  KJ_DEFER(parser.setConfigFile(outer));
  size_t position = 0;
  for (size_t lineNumber = 1; position < text.size(); lineNumber++) {
    size_t end = position;
    while (end < text.size() && text[end] != '\n') end++;
    size_t begin = position;
    position = end + 1;
    while (begin < end && isSpace(text[begin])) begin++;
    while (end > begin && isSpace(text[end - 1])) end--;
    if (begin == end || text[begin] == '#') continue;

    auto line = text.slice(begin, end);
    // A NUL would silently cut the value short where the handler reads it as a C string.
    if (memchr(line.begin(), '\0', line.size()) != nullptr) {
      return kj::str(name, ":", lineNumber, ": a NUL byte (not a text file?)");
    }
    KJ_IF_MAYBE(error, applyLine(parser, line)) {
      return kj::str(name, ":", lineNumber, ": ", *error);
    }
  }
  return nullptr;
}

kj::Maybe<kj::String> applyConfigFile(OptionParser& parser, kj::StringPtr path) {
  int fd = ::open(path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kj::str(path, ": ", strerror(errno));
  KJ_DEFER(::close(fd));
  struct stat status;
  if (::fstat(fd, &status) != 0) return kj::str(path, ": ", strerror(errno));

  SecretString contents;
  KJ_IF_MAYBE(error, readSecretFd(fd, contents, MAX_CONFIG_BYTES)) {
    return kj::str(path, ": ", *error);
  }

  uint64_t secretsBefore = parser.literalSecretCount();
  KJ_IF_MAYBE(failure, applyConfigText(parser, path, contents.asChars())) {
    return kj::mv(*failure);
  }

  // Only a regular file has a mode that means something here (a pipe from fd:N is private).
  bool othersCanRead = S_ISREG(status.st_mode) && (status.st_mode & (S_IRGRP | S_IROTH)) != 0;
  if (othersCanRead && parser.literalSecretCount() > secretsBefore) {
    char mode[8];
    snprintf(mode, sizeof(mode), "%04o", unsigned(status.st_mode & 07777));
    logWarning("--config: ", path, " holds a password and other users can read it (mode ", mode,
               "); make it readable by its owner only (chmod 600)");
  }
  return nullptr;
}

void addConfigOption(OptionParser& parser) {
  auto* p = &parser;
  parser.addOption("config", 0, "FILE",
                   "read options from FILE, one 'option value' a line ('#' comments)",
                   [p](kj::StringPtr path) -> kj::Maybe<kj::String> {
    // One level only: a file naming another is a loop waiting to happen, and one file is
    // enough to keep secrets off the command line.
    if (p->configFile() != nullptr) return kj::str("not allowed inside a config file");
    if (path.size() == 0) return kj::str("empty file name");
    return applyConfigFile(*p, path);
  });
}

}  // namespace tlstap
