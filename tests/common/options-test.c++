#include "common/options.h"

#include <gtest/gtest.h>

namespace tlstap {
namespace {

struct Parsed {
  kj::Vector<kj::String> outputs;
  bool verbose = false;
  uint64_t seconds = 1;
};

OptionParser makeParser(Parsed& parsed) {
  OptionParser parser("prog", "[options]");
  parser.addOption("output", 'o', "DIR", "where", [&parsed](kj::StringPtr v) -> kj::Maybe<kj::String> {
    parsed.outputs.add(kj::heapString(v));
    return nullptr;
  });
  parser.addOption("autoflush", 0, "SECONDS", "how often",
                   [&parsed](kj::StringPtr v) -> kj::Maybe<kj::String> {
                     KJ_IF_MAYBE(n, parseUnsigned(v, 1, 3600)) {
                       parsed.seconds = *n;
                       return nullptr;
                     }
                     return kj::str("'", v, "' is not a number of seconds");
                   });
  parser.addFlag("verbose", 'v', "talk", [&parsed]() { parsed.verbose = true; });
  return parser;
}

kj::Maybe<kj::String> parse(OptionParser& parser, std::initializer_list<const char*> args) {
  kj::Vector<kj::StringPtr> list;
  for (auto arg : args) list.add(arg);
  return parser.parse(list);
}

TEST(OptionParser, AcceptsEveryForm) {
  Parsed parsed;
  auto parser = makeParser(parsed);
  EXPECT_TRUE(parse(parser, {"-o", "a", "-ob", "--output", "c", "--output=d", "-v",
                             "--autoflush=5"}) == nullptr);
  ASSERT_EQ(parsed.outputs.size(), 4u);
  EXPECT_EQ(parsed.outputs[0], "a");
  EXPECT_EQ(parsed.outputs[1], "b");
  EXPECT_EQ(parsed.outputs[2], "c");
  EXPECT_EQ(parsed.outputs[3], "d");
  EXPECT_TRUE(parsed.verbose);
  EXPECT_EQ(parsed.seconds, 5u);
}

TEST(OptionParser, ErrorsNameTheOptionAndTheCause) {
  struct Case {
    std::initializer_list<const char*> args;
    const char* expected;
  };
  Case cases[] = {
      {{"--autoflush", "x"}, "--autoflush: 'x' is not a number of seconds"},
      {{"--autoflush", "0"}, "--autoflush: '0' is not"},
      {{"--output"}, "--output: needs a value (DIR)"},
      {{"--bogus"}, "--bogus: unknown option"},
      {{"-z"}, "-z: unknown option"},
      {{"stray"}, "stray: unexpected argument"},
      {{"--verbose=yes"}, "--verbose: takes no value"},
      {{"--"}, "--: unknown option"},
      {{"--=x"}, "--: unknown option"},
  };
  for (auto& c : cases) {
    Parsed parsed;
    auto parser = makeParser(parsed);
    KJ_IF_MAYBE(error, parse(parser, c.args)) {
      EXPECT_TRUE(error->startsWith(c.expected)) << error->cStr();
    } else {
      ADD_FAILURE() << "accepted: " << c.expected;
    }
  }
}

TEST(OptionParser, HelpListsEveryOption) {
  Parsed parsed;
  auto parser = makeParser(parsed);
  EXPECT_TRUE(parse(parser, {"--help"}) == nullptr);
  EXPECT_TRUE(parser.helpRequested());
  auto usage = parser.usage();
  for (auto name : {"--output DIR", "--autoflush SECONDS", "--verbose", "--help"}) {
    EXPECT_TRUE(strstr(usage.cStr(), name) != nullptr) << name;
  }
}

TEST(ParseUnsigned, Bounds) {
  EXPECT_EQ(parseUnsigned("65535", 1, 65535), uint64_t(65535));
  EXPECT_TRUE(parseUnsigned("65536", 1, 65535) == nullptr);
  EXPECT_TRUE(parseUnsigned("0", 1, 65535) == nullptr);
  EXPECT_TRUE(parseUnsigned("", 0, 10) == nullptr);
  EXPECT_TRUE(parseUnsigned("-1", 0, 10) == nullptr);
  EXPECT_TRUE(parseUnsigned("99999999999999999999", 0, UINT64_MAX) == nullptr);
}

}  // namespace
}  // namespace tlstap
