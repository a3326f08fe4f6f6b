#include "config-file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <kj/debug.h>

#include "common/log.h"

namespace tlstap {

namespace {

// A config file is a few dozen lines; anything this large is a wrong file named.
constexpr size_t MAX_CONFIG_BYTES = 1 << 20;

// The file may hold passwords: every buffer that held its text is overwritten before it is freed.
class WipedBuffer {
public:
  explicit WipedBuffer(size_t size) : bytes(kj::heapArray<char>(size)) {}
  ~WipedBuffer() noexcept { explicit_bzero(bytes.begin(), bytes.size()); }
  KJ_DISALLOW_COPY(WipedBuffer);

  char* begin() { return bytes.begin(); }
  size_t size() const { return bytes.size(); }

private:
  kj::Array<char> bytes;
};

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// Splits one line (already trimmed, not empty, not a comment) into option and value and applies
// it. The copy is NUL-terminated where kj::StringPtr needs it and wiped afterwards.
kj::Maybe<kj::String> applyLine(OptionParser& parser, kj::ArrayPtr<const char> line) {
  WipedBuffer copy(line.size() + 1);
  char* text = copy.begin();
  memcpy(text, line.begin(), line.size());
  text[line.size()] = '\0';

  size_t nameEnd = 0;
  while (nameEnd < line.size() && !isSpace(text[nameEnd])) nameEnd++;
  size_t valueStart = nameEnd;
  // "name=value" as on the command line, for long names only: "-o=x" is not a short option.
  bool shortName = line.size() >= 2 && text[0] == '-' && text[1] != '-';
  if (!shortName) {
    auto equals = static_cast<char*>(memchr(text, '=', nameEnd));
    if (equals != nullptr) {
      nameEnd = size_t(equals - text);
      valueStart = nameEnd + 1;
    }
  }
  bool hasEquals = valueStart > nameEnd;
  while (valueStart < line.size() && isSpace(text[valueStart])) valueStart++;
  text[nameEnd] = '\0';

  kj::StringPtr name(text, nameEnd);
  kj::Maybe<kj::StringPtr> value;
  // "option=" gives an empty value (which its handler judges); "option" alone is a flag.
  if (valueStart < line.size() || hasEquals) {
    value = kj::StringPtr(text + valueStart, line.size() - valueStart);
  }
  return parser.applyOne(name, value);
}

// Reads fd to EOF into `out` (at most MAX_CONFIG_BYTES); returns errno, or -1 when too large.
int readAll(int fd, kj::Own<WipedBuffer>& out, size_t& used) {
  auto buffer = kj::heap<WipedBuffer>(4096);
  used = 0;
  for (;;) {
    if (used == buffer->size()) {
      if (buffer->size() > MAX_CONFIG_BYTES) return -1;
      // Grown by hand, never by realloc, so the old buffer is wiped before it is freed.
      auto bigger = kj::heap<WipedBuffer>(buffer->size() * 2);
      memcpy(bigger->begin(), buffer->begin(), used);
      buffer = kj::mv(bigger);
    }
    ssize_t n = ::read(fd, buffer->begin() + used, buffer->size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) break;
    used += size_t(n);
  }
  if (used > MAX_CONFIG_BYTES) return -1;
  out = kj::mv(buffer);
  return 0;
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

  kj::Own<WipedBuffer> contents;
  size_t used = 0;
  int error = readAll(fd, contents, used);
  if (error < 0) return kj::str(path, ": larger than ", MAX_CONFIG_BYTES, " bytes");
  if (error > 0) return kj::str(path, ": ", strerror(error));

  uint64_t secretsBefore = parser.literalSecretCount();
  KJ_IF_MAYBE(failure, applyConfigText(parser, path, kj::arrayPtr(contents->begin(), used))) {
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
