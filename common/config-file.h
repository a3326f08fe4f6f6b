// --config FILE for both programs: the same options as the command line, one a line, so that a
// unit file or a process list shows no secret. Each line goes through OptionParser::applyOne(),
// the handlers the command line uses, so an option is declared once.
//
// The format:
//   # a comment (only as a whole line: a value, e.g. a password, may hold '#')
//   listen unix:/run/tlstap/recorder.sock     option and value, separated by whitespace
//   --listen 127.0.0.1:7000                    the command line's dashes are allowed
//   -o /var/log/tlstap                         short names with their dash
//   servercert www.example.com:/k/site.p12:pass word   the value is the rest of the line
//   recorder-down=block                        or option=value, as on the command line
//   terminate                                  a flag alone
// Blank lines are skipped; whitespace around the option and the value is trimmed; there is no
// quoting. A config file names no other config file.
#pragma once

#include <kj/array.h>
#include <kj/string.h>

#include "common/options.h"

namespace tlstap {

// Reads FILE and applies each line to `parser`, in order. Returns "FILE:LINE: --option: cause"
// (or "FILE: cause" when the file cannot be read), or nullptr. When the file holds a literal
// secret (a handler called noteLiteralSecret()) and its mode lets group or others read it, logs
// a warning naming the file.
kj::Maybe<kj::String> applyConfigFile(OptionParser& parser, kj::StringPtr path);

// The parsing half of applyConfigFile(), for text already read (tests, fuzzing). `name` is what
// errors call the file (and what parser.configFile() says while its lines are applied).
kj::Maybe<kj::String> applyConfigText(OptionParser& parser, kj::StringPtr name,
                                      kj::ArrayPtr<const char> text);

// Registers "--config FILE" on `parser`: the file is read where the option appears, so options
// after it add to or override what it set, as each option's handler does with a repeated option.
// Refused inside a config file.
void addConfigOption(OptionParser& parser);

}  // namespace tlstap
