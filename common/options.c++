#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

namespace tlstap {

OptionParser::OptionParser(kj::StringPtr program, kj::StringPtr synopsis)
    : program(program), synopsis(synopsis) {}

void OptionParser::addOption(kj::StringPtr longName, char shortName, kj::StringPtr valueName,
                             kj::StringPtr helpText, OptionHandler handler) {
  options.add(Option{longName, shortName, valueName, helpText, kj::mv(handler), nullptr});
}

void OptionParser::addFlag(kj::StringPtr longName, char shortName, kj::StringPtr helpText,
                           FlagHandler handler) {
  options.add(Option{longName, shortName, "", helpText, nullptr, kj::mv(handler)});
}

kj::Maybe<OptionParser::Option&> OptionParser::findLong(kj::StringPtr name) {
  if (name.size() == 0) return nullptr;  // "--" or "--=x" must not match short-only options
  for (auto& option : options) {
    if (option.longName == name) return option;
  }
  return nullptr;
}

kj::Maybe<OptionParser::Option&> OptionParser::findShort(char name) {
  for (auto& option : options) {
    if (option.shortName != 0 && option.shortName == name) return option;
  }
  return nullptr;
}

kj::Maybe<kj::String> OptionParser::apply(Option& option, kj::Maybe<kj::StringPtr> inlineValue,
                                          kj::ArrayPtr<const kj::StringPtr> args, size_t& index) {
  auto display = option.longName.size() > 0 ? kj::str("--", option.longName)
                                            : kj::str("-", option.shortName);
  KJ_IF_MAYBE(flag, option.onFlag) {
    if (inlineValue != nullptr) return kj::str(display, ": takes no value");
    (*flag)();
    return nullptr;
  }
  kj::StringPtr value;
  KJ_IF_MAYBE(v, inlineValue) {
    value = *v;
  } else {
    if (index + 1 >= args.size()) return kj::str(display, ": needs a value (", option.valueName, ")");
    value = args[++index];
  }
  KJ_IF_MAYBE(handler, option.onValue) {
    KJ_IF_MAYBE(error, (*handler)(value)) {
      return kj::str(display, ": ", *error);
    }
  }
  return nullptr;
}

kj::Maybe<kj::String> OptionParser::parse(kj::ArrayPtr<const kj::StringPtr> args) {
  for (size_t i = 0; i < args.size(); i++) {
    kj::StringPtr arg = args[i];
    if (arg == "-h" || arg == "--help") {
      help = true;
      return nullptr;
    }
    if (arg.startsWith("--")) {
      kj::StringPtr body = arg.slice(2);
      kj::Maybe<kj::StringPtr> inlineValue;
      kj::String name;
      KJ_IF_MAYBE(eq, body.findFirst('=')) {
        name = kj::heapString(body.slice(0, *eq));
        inlineValue = body.slice(*eq + 1);
      } else {
        name = kj::heapString(body);
      }
      KJ_IF_MAYBE(option, findLong(name)) {
        KJ_IF_MAYBE(error, apply(*option, inlineValue, args, i)) return kj::mv(*error);
      } else {
        return kj::str("--", name, ": unknown option (see --help)");
      }
    } else if (arg.size() >= 2 && arg[0] == '-') {
      KJ_IF_MAYBE(option, findShort(arg[1])) {
        kj::Maybe<kj::StringPtr> inlineValue;
        if (arg.size() > 2) inlineValue = arg.slice(2);
        KJ_IF_MAYBE(error, apply(*option, inlineValue, args, i)) return kj::mv(*error);
      } else {
        return kj::str(arg, ": unknown option (see --help)");
      }
    } else {
      return kj::str(arg, ": unexpected argument (options start with -)");
    }
  }
  return nullptr;
}

kj::Maybe<kj::String> OptionParser::applyOne(kj::StringPtr name, kj::Maybe<kj::StringPtr> value) {
  kj::Maybe<Option&> found;
  kj::String display;
  if (name.startsWith("--")) {
    found = findLong(name.slice(2));
    display = kj::heapString(name);
  } else if (name.startsWith("-")) {
    // Short options only as "-o": "-ofile" is a command-line habit a config file does not need.
    if (name.size() == 2) found = findShort(name[1]);
    display = kj::heapString(name);
  } else {
    found = findLong(name);
    display = kj::str("--", name);
  }
  KJ_IF_MAYBE(option, found) {
    // apply() takes a value from the argument list only when none is given inline; a config
    // line has no next argument, so a missing value is reported as missing.
    size_t index = 0;
    return apply(*option, value, nullptr, index);
  }
  return kj::str(display, ": unknown option");
}

kj::String OptionParser::usage() const {
  kj::Vector<kj::String> lines;
  lines.add(kj::str("usage: ", program, " ", synopsis, "\n\n"));
  for (auto& option : options) {
    kj::String left;
    auto value = option.valueName.size() > 0 ? kj::str(" ", option.valueName) : kj::str("");
    if (option.shortName != 0 && option.longName.size() > 0) {
      left = kj::str("  -", option.shortName, ", --", option.longName, value);
    } else if (option.shortName != 0) {
      left = kj::str("  -", option.shortName, value);
    } else {
      left = kj::str("      --", option.longName, value);
    }
    size_t pad = left.size() < 34 ? 34 - left.size() : 1;
    lines.add(kj::str(left, kj::repeat(' ', pad), option.helpText, "\n"));
  }
  lines.add(kj::str("  -h, --help", kj::repeat(' ', 22), "show this help and exit\n"));
  return kj::strArray(lines, "");
}

void OptionParser::parseOrExit(int argc, char** argv) {
  kj::Vector<kj::StringPtr> args;
  for (int i = 1; i < argc; i++) args.add(argv[i]);
  KJ_IF_MAYBE(error, parse(args)) exitWithUsageError(program, *error);
  if (help) {
    auto text = usage();
    fwrite(text.begin(), 1, text.size(), stdout);
    exit(0);
  }
}

void exitWithUsageError(kj::StringPtr program, kj::StringPtr message) {
  fprintf(stderr, "%s: %s\n", program.cStr(), message.cStr());
  exit(2);
}

kj::Maybe<uint64_t> parseUnsigned(kj::StringPtr text, uint64_t min, uint64_t max) {
  if (text.size() == 0 || text.size() > 19) return nullptr;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return nullptr;
    value = value * 10 + uint64_t(c - '0');
  }
  if (value < min || value > max) return nullptr;
  return value;
}

kj::Maybe<uint64_t> parseByteSize(kj::StringPtr text) {
  size_t end = 0;
  while (end < text.size() && text[end] >= '0' && text[end] <= '9') end++;
  KJ_IF_MAYBE(number, parseUnsigned(kj::heapString(text.slice(0, end)), 1, UINT64_MAX)) {
    auto suffix = text.slice(end);
    unsigned shift = 0;
    if (suffix.size() > 0) {
      switch (suffix[0]) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        default: return nullptr;
      }
      auto rest = suffix.slice(1);
      if (rest.size() > 0 && rest != "B" && rest != "iB" && rest != "b" && rest != "ib") {
        return nullptr;
      }
    }
    if (shift > 0 && *number > (UINT64_MAX >> shift)) return nullptr;
    return *number << shift;
  }
  return nullptr;
}

}  // namespace tlstap
