// Secrets read at start-up: passwords for keys, and the raw bytes of key files. They live in
// SecretString, and key material GnuTLS hands out in SecretDatum; both wipe their buffer when
// freed, so no copy of a key or password is left in freed heap memory for a later bug to leak.
#pragma once

#include <gnutls/gnutls.h>
#include <kj/array.h>
#include <kj/common.h>
#include <kj/string.h>

namespace tlstap {

// An owned, NUL-terminated byte buffer that is wiped when freed or replaced. Not copyable, so a
// secret is never duplicated by accident; movable.
class SecretString {
public:
  SecretString() = default;
  explicit SecretString(kj::ArrayPtr<const char> text) { assign(text); }
  SecretString(SecretString&& other) noexcept;
  SecretString& operator=(SecretString&& other) noexcept;
  KJ_DISALLOW_COPY(SecretString);
  ~SecretString() noexcept(false);

  // Replaces the contents (wiping the old ones).
  void assign(kj::ArrayPtr<const char> text);
  // Drops the last `count` bytes (wiping them).
  void truncate(size_t count);
  void clear();

  size_t size() const { return buffer.size() == 0 ? 0 : buffer.size() - 1; }
  // Valid while this object lives and is not modified; empty string when nothing is held.
  const char* cStr() const { return buffer.size() == 0 ? "" : buffer.begin(); }
  kj::ArrayPtr<const char> asChars() const { return kj::arrayPtr(cStr(), size()); }
  kj::ArrayPtr<const kj::byte> asBytes() const {
    return kj::arrayPtr(reinterpret_cast<const kj::byte*>(cStr()), size());
  }
  // For a GnuTLS call that reads the bytes (GnuTLS's datum is not const).
  gnutls_datum_t asDatum() const {
    return {const_cast<unsigned char*>(asBytes().begin()), unsigned(size())};
  }

private:
  kj::Array<char> buffer;  // contents plus a NUL; empty when nothing is held
};

// A buffer GnuTLS allocated that holds key material (an exported key, a session ticket key):
// wiped before it is given back to gnutls_free.
class SecretDatum {
public:
  SecretDatum() = default;
  ~SecretDatum() noexcept;
  KJ_DISALLOW_COPY(SecretDatum);

  gnutls_datum_t datum = {nullptr, 0};
};

// Overwrites memory in a way the compiler may not optimise away.
void wipe(void* data, size_t size);
// Wipes an option's text that may hold a literal password once it has been used. The string
// keeps its size (all NULs), so a StringPtr into it stays valid.
inline void wipe(kj::String& text) { wipe(text.begin(), text.size()); }

// Reads fd to EOF into `out` (at most maxBytes), every intermediate buffer wiped. Returns the
// cause ("larger than N bytes", strerror) or nullptr.
kj::Maybe<kj::String> readSecretFd(int fd, SecretString& out, size_t maxBytes);

// Reads a whole file (at most maxBytes) into `out`. Returns the error, naming the path, or nullptr.
kj::Maybe<kj::String> readSecretFile(kj::StringPtr path, SecretString& out,
                                     size_t maxBytes = 1 << 20);

// Resolves a password given as "file:/path" (first line), "env:NAME" (then wiped and removed
// from the environment; options that name the same variable get a copy kept until
// forgetEnvPasswords()), "fd:N" (read to EOF, then
// closed) or a literal. A trailing newline is stripped. wasLiteral tells the caller to warn that
// the password is visible in the process list. Returns the error text or nullptr.
kj::Maybe<kj::String> resolvePassword(kj::StringPtr spec, SecretString& out, bool& wasLiteral);

// Wipes the copies of env: passwords kept for options sharing a variable. Called once every key
// is loaded, before lock-down.
void forgetEnvPasswords();

// True when a password spec is the password itself (not file:, env: or fd:), and not empty:
// the spec resolvePassword() would report as wasLiteral.
bool isLiteralPassword(kj::StringPtr spec);

// Where a spec holding a password was written. A literal password on the command line is
// visible to every user of the host (ps, /proc/PID/cmdline) and is warned about; one in a
// config file is what the config file is for (applyConfigFile() warns when the file is not
// private).
enum class SecretOrigin { COMMAND_LINE, CONFIG_FILE };

}  // namespace tlstap
