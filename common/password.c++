#include "password.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <kj/map.h>

#include "common/options.h"

namespace tlstap {

namespace {

// A password is a line of text; anything longer than this is a mistake (a wrong file named).
constexpr size_t MAX_PASSWORD_BYTES = 4096;

void stripTrailingNewline(SecretString& secret) {
  auto chars = secret.asChars();
  if (chars.size() > 0 && chars[chars.size() - 1] == '\n') {
    bool crlf = chars.size() > 1 && chars[chars.size() - 2] == '\r';
    secret.truncate(crlf ? 2 : 1);
  }
}

}  // namespace

void wipe(void* data, size_t size) {
  if (data != nullptr && size > 0) explicit_bzero(data, size);
}

kj::Maybe<kj::String> readSecretFd(int fd, SecretString& out, size_t maxBytes) {
  // Grown by hand, never by realloc, so every old buffer is wiped before it is freed.
  kj::Array<char> buffer = kj::heapArray<char>(4096);
  size_t used = 0;
  KJ_DEFER({
    wipe(buffer.begin(), buffer.size());
  });
  for (;;) {
    if (used == buffer.size()) {
      if (buffer.size() > maxBytes) return kj::str("larger than ", maxBytes, " bytes");
      auto bigger = kj::heapArray<char>(buffer.size() * 2);
      memcpy(bigger.begin(), buffer.begin(), used);
      wipe(buffer.begin(), buffer.size());
      buffer = kj::mv(bigger);
    }
    ssize_t n = ::read(fd, buffer.begin() + used, buffer.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      return kj::str(strerror(errno));
    }
    if (n == 0) break;
    used += size_t(n);
  }
  if (used > maxBytes) return kj::str("larger than ", maxBytes, " bytes");
  out.assign(buffer.slice(0, used));
  return nullptr;
}

SecretDatum::~SecretDatum() noexcept {
  wipe(datum.data, datum.size);
  gnutls_free(datum.data);
}

SecretString::SecretString(SecretString&& other) noexcept : buffer(kj::mv(other.buffer)) {}

SecretString& SecretString::operator=(SecretString&& other) noexcept {
  if (this != &other) {
    clear();
    buffer = kj::mv(other.buffer);
  }
  return *this;
}

SecretString::~SecretString() noexcept(false) { clear(); }

void SecretString::assign(kj::ArrayPtr<const char> text) {
  auto fresh = kj::heapArray<char>(text.size() + 1);
  if (text.size() > 0) memcpy(fresh.begin(), text.begin(), text.size());
  fresh[text.size()] = '\0';
  clear();
  buffer = kj::mv(fresh);
}

void SecretString::truncate(size_t count) {
  size_t keep = count >= size() ? 0 : size() - count;
  // assign() copies before it wipes the old buffer, so passing a part of it is safe.
  assign(kj::arrayPtr(cStr(), keep));
}

void SecretString::clear() {
  wipe(buffer.begin(), buffer.size());
  buffer = nullptr;
}

kj::Maybe<kj::String> readSecretFile(kj::StringPtr path, SecretString& out, size_t maxBytes) {
  int fd = ::open(path.cStr(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kj::str("'", path, "': ", errno == ENOENT ? "not found" : strerror(errno));
  KJ_DEFER(::close(fd));
  KJ_IF_MAYBE(error, readSecretFd(fd, out, maxBytes)) return kj::str("'", path, "': ", *error);
  return nullptr;
}

namespace {

// The env: passwords read so far, by variable name, until forgetEnvPasswords(): the variable
// itself is gone after its first read.
kj::HashMap<kj::String, kj::Own<SecretString>>& envPasswordsTaken() {
  static kj::HashMap<kj::String, kj::Own<SecretString>> taken;
  return taken;
}

}  // namespace

void forgetEnvPasswords() {
  // kj::HashMap::clear() on a map that never held anything passes memset a null pointer.
  auto& taken = envPasswordsTaken();
  if (taken.size() > 0) taken.clear();
}

bool isLiteralPassword(kj::StringPtr spec) {
  return spec.size() > 0 && !spec.startsWith("file:") && !spec.startsWith("env:") &&
         !spec.startsWith("fd:");
}

kj::Maybe<kj::String> resolvePassword(kj::StringPtr spec, SecretString& out, bool& wasLiteral) {
  wasLiteral = false;
  if (spec.startsWith("file:")) {
    auto path = spec.slice(5);
    if (path.size() == 0) return kj::str("password file: empty path");
    SecretString contents;
    KJ_IF_MAYBE(error, readSecretFile(path, contents, MAX_PASSWORD_BYTES)) {
      return kj::str("password file ", *error);
    }
    auto chars = contents.asChars();
    const char* newline = static_cast<const char*>(memchr(chars.begin(), '\n', chars.size()));
    size_t line = newline == nullptr ? chars.size() : size_t(newline - chars.begin());
    if (line > 0 && chars[line - 1] == '\r') line--;
    out.assign(chars.slice(0, line));
    return nullptr;
  }
  if (spec.startsWith("env:")) {
    auto name = spec.slice(4);
    if (name.size() == 0) return kj::str("password env: empty variable name");
    auto& taken = envPasswordsTaken();
    char* value = getenv(name.cStr());
    if (value == nullptr) {
      KJ_IF_MAYBE(earlier, taken.find(name)) {
        // An earlier option named the same variable (one password for several key files).
        out.assign((*earlier)->asChars());
        return nullptr;
      }
      return kj::str("password environment variable ", name, " is not set");
    }
    out.assign(kj::arrayPtr(value, strlen(value)));
    stripTrailingNewline(out);
    auto kept = kj::heap<SecretString>();
    kept->assign(out.asChars());
    taken.upsert(kj::str(name), kj::mv(kept), [](auto& old, auto&& replacement) {
      old = kj::mv(replacement);
    });
    // Read once, then gone: children inherit the environment, and the process's own copy (for a
    // variable it started with, the block /proc/PID/environ shows) would outlive its use. Wiped
    // in place first, since unsetenv() only drops the pointer.
    wipe(value, strlen(value));
    unsetenv(name.cStr());
    return nullptr;
  }
  if (spec.startsWith("fd:")) {
    KJ_IF_MAYBE(fd, parseUnsigned(spec.slice(3), 0, 1 << 20)) {
      auto error = readSecretFd(int(*fd), out, MAX_PASSWORD_BYTES);
      // The descriptor was handed over for this one read; keeping it open would only leak it
      // into the sandboxed process.
      ::close(int(*fd));
      KJ_IF_MAYBE(e, error) return kj::str("password fd:", *fd, ": ", *e);
      stripTrailingNewline(out);
      return nullptr;
    }
    return kj::str("password fd: needs a descriptor number");
  }
  wasLiteral = true;
  out.assign(spec);
  return nullptr;
}

}  // namespace tlstap
