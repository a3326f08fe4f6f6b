// A small command-line parser shared by both programs. Each option is declared once with its
// help text and a handler that checks and stores its value, so `--help`, the man page and the
// error messages all come from one table. Errors name the option and the cause; main() prints
// them on one line and exits 2.
#pragma once

#include <stdint.h>
#include <kj/array.h>
#include <kj/function.h>
#include <kj/string.h>
#include <kj/vector.h>

namespace tlstap {

// A handler returns nullptr when the value is good, or the reason it is not.
using OptionHandler = kj::Function<kj::Maybe<kj::String>(kj::StringPtr value)>;
using FlagHandler = kj::Function<void()>;

class OptionParser {
public:
  OptionParser(kj::StringPtr program, kj::StringPtr synopsis);

  // An option that takes a value, e.g. addOption("output", 'o', "DIR", "...", handler).
  // shortName 0 means there is no short form.
  void addOption(kj::StringPtr longName, char shortName, kj::StringPtr valueName,
                 kj::StringPtr help, OptionHandler handler);
  // An option without a value, e.g. -v.
  void addFlag(kj::StringPtr longName, char shortName, kj::StringPtr help, FlagHandler handler);

  // Parses the arguments (without argv[0]). Returns the first error as "--option: cause",
  // or nullptr. Sets helpRequested() on -h/--help and stops there.
  kj::Maybe<kj::String> parse(kj::ArrayPtr<const kj::StringPtr> args);
  bool helpRequested() const { return help; }

  // Applies one option as a config file line gives it: `name` is "--listen", "listen" or "-o";
  // `value` is nullptr for a flag. Returns "--option: cause", or nullptr. The same handlers as
  // the command line, so an option is declared once for both.
  kj::Maybe<kj::String> applyOne(kj::StringPtr name, kj::Maybe<kj::StringPtr> value);

  // The config file whose lines are being applied, nullptr on the command line. Handlers ask
  // because where a value was written matters for secrets: a literal password on the command
  // line is visible to every user (ps), one in a private config file is not. Set by
  // applyConfigFile() (common/config-file.h).
  kj::Maybe<kj::StringPtr> configFile() const { return currentConfigFile; }
  void setConfigFile(kj::Maybe<kj::StringPtr> path) { currentConfigFile = path; }

  // Called by a handler whose value holds a literal secret (a password written out), so that a
  // config file that other users can read is warned about.
  void noteLiteralSecret() { literalSecrets++; }
  uint64_t literalSecretCount() const { return literalSecrets; }

  kj::String usage() const;

  // Parses argv; prints usage and exits 0 on --help, prints "program: error" and exits 2 on a
  // bad argument.
  void parseOrExit(int argc, char** argv);

private:
  struct Option {
    kj::StringPtr longName;
    char shortName;
    kj::StringPtr valueName;  // empty for a flag
    kj::StringPtr helpText;
    kj::Maybe<OptionHandler> onValue;
    kj::Maybe<FlagHandler> onFlag;
  };

  kj::Maybe<Option&> findLong(kj::StringPtr name);
  kj::Maybe<Option&> findShort(char name);
  kj::Maybe<kj::String> apply(Option& option, kj::Maybe<kj::StringPtr> inlineValue,
                              kj::ArrayPtr<const kj::StringPtr> args, size_t& index);

  kj::StringPtr program;
  kj::StringPtr synopsis;
  kj::Vector<Option> options;
  bool help = false;
  kj::Maybe<kj::StringPtr> currentConfigFile;
  uint64_t literalSecrets = 0;
};

// Prints "program: message" on stderr and exits with status 2 (bad usage or start-up failure).
[[noreturn]] void exitWithUsageError(kj::StringPtr program, kj::StringPtr message);

// Parses a decimal integer in [min, max]; nullptr if the text is not one.
kj::Maybe<uint64_t> parseUnsigned(kj::StringPtr text, uint64_t min, uint64_t max);

// A size in bytes, at least 1: "1048576", or with a binary suffix "64K", "512M", "10G", "2T"
// (also "KiB"... and lower case). nullptr if the text is not one or does not fit 64 bits.
kj::Maybe<uint64_t> parseByteSize(kj::StringPtr text);

}  // namespace tlstap
