#include "common/config-file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>
#include <kj/debug.h>

namespace tlstap {
namespace {

// What the options of a test parser stored, and where each value came from.
struct Parsed {
  kj::Vector<kj::String> listen;
  kj::Vector<kj::String> listenSources;  // the config file, or "command line"
  kj::Maybe<kj::String> output;
  kj::Maybe<kj::String> password;
  uint64_t seconds = 1;
  bool verbose = false;
};

class ConfigFileTest : public testing::Test {
protected:
  ConfigFileTest() {
    char pattern[] = "/tmp/tlstap-config-test.XXXXXX";
    KJ_ASSERT(mkdtemp(pattern) != nullptr);
    dir = kj::str(pattern);
    parser.addOption("listen", 0, "ADDR", "repeatable", [this](kj::StringPtr v) {
      parsed.listen.add(kj::heapString(v));
      KJ_IF_MAYBE(file, parser.configFile()) {
        parsed.listenSources.add(kj::heapString(*file));
      } else {
        parsed.listenSources.add(kj::str("command line"));
      }
      return kj::Maybe<kj::String>(nullptr);
    });
    parser.addOption("output", 'o', "DIR", "once", [this](kj::StringPtr v)
                                                       -> kj::Maybe<kj::String> {
      if (parsed.output != nullptr) return kj::str("given twice");
      parsed.output = kj::heapString(v);
      return nullptr;
    });
    parser.addOption("autoflush", 0, "SECONDS", "overridable",
                     [this](kj::StringPtr v) -> kj::Maybe<kj::String> {
      KJ_IF_MAYBE(n, parseUnsigned(v, 1, 3600)) {
        parsed.seconds = *n;
        return nullptr;
      }
      return kj::str("'", v, "' is not a number of seconds");
    });
    // Stands in for the front's --servercert: anything but "file:..." is a literal password.
    parser.addOption("password", 0, "SPEC", "secret", [this](kj::StringPtr v) {
      if (!v.startsWith("file:")) parser.noteLiteralSecret();
      parsed.password = kj::heapString(v);
      return kj::Maybe<kj::String>(nullptr);
    });
    parser.addFlag("verbose", 'v', "flag", [this]() { parsed.verbose = true; });
    addConfigOption(parser);
  }
  ~ConfigFileTest() noexcept {
    auto command = kj::str("rm -rf '", dir, "'");
    EXPECT_EQ(system(command.cStr()), 0);
  }

  // Writes `text` to DIR/NAME with `mode`; returns the path.
  kj::String write(kj::StringPtr name, kj::StringPtr text, mode_t mode = 0600) {
    auto path = kj::str(dir, "/", name);
    int fd = open(path.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    KJ_ASSERT(fd >= 0);
    KJ_ASSERT(::write(fd, text.begin(), text.size()) == ssize_t(text.size()));
    close(fd);
    KJ_ASSERT(chmod(path.cStr(), mode) == 0);  // not narrowed by the umask
    return path;
  }

  // Parses a command line; returns the error or "".
  kj::String parse(std::initializer_list<kj::StringPtr> args) {
    kj::Vector<kj::StringPtr> list;
    for (auto arg : args) list.add(arg);
    KJ_IF_MAYBE(error, parser.parse(list)) return kj::mv(*error);
    return kj::str();
  }

  kj::String dir;
  Parsed parsed;
  OptionParser parser{"prog", "[options]"};
};

TEST_F(ConfigFileTest, GoodFileAppliesEveryLineInOrder) {
  auto path = write("good.conf",
                    "# tlstap test configuration\n"
                    "\n"
                    "listen unix:/run/a.sock\n"
                    "   --listen    127.0.0.1:7000   \n"
                    "\t# an indented comment\n"
                    "-o /var/log/with space/dir\n"
                    "autoflush=5\n"
                    "password pass word # not a comment\r\n"
                    "verbose\n"
                    "   \n"
                    "--listen=unix:/run/b.sock");  // no newline at the end
  EXPECT_STREQ(parse({"--config", path}).cStr(), "");
  ASSERT_EQ(parsed.listen.size(), 3u);
  EXPECT_STREQ(parsed.listen[0].cStr(), "unix:/run/a.sock");
  EXPECT_STREQ(parsed.listen[1].cStr(), "127.0.0.1:7000");
  EXPECT_STREQ(parsed.listen[2].cStr(), "unix:/run/b.sock");
  EXPECT_STREQ(KJ_ASSERT_NONNULL(parsed.output).cStr(), "/var/log/with space/dir");
  EXPECT_EQ(parsed.seconds, 5u);
  // The value is the rest of the line, '#' included; only a whole line is a comment.
  EXPECT_STREQ(KJ_ASSERT_NONNULL(parsed.password).cStr(), "pass word # not a comment");
  EXPECT_TRUE(parsed.verbose);
  // Handlers can tell a config file's values from the command line's.
  EXPECT_STREQ(parsed.listenSources[0].cStr(), path.cStr());
  EXPECT_TRUE(parser.configFile() == nullptr);
}

TEST_F(ConfigFileTest, CombinesWithTheCommandLineWhereItAppears) {
  auto path = write("combine.conf", "listen unix:/from-file\nautoflush 5\n");
  EXPECT_STREQ(parse({"--autoflush", "2", "--listen", "unix:/before", "--config", path,
                      "--listen", "unix:/after"}).cStr(), "");
  ASSERT_EQ(parsed.listen.size(), 3u);
  EXPECT_STREQ(parsed.listen[0].cStr(), "unix:/before");
  EXPECT_STREQ(parsed.listen[1].cStr(), "unix:/from-file");
  EXPECT_STREQ(parsed.listen[2].cStr(), "unix:/after");
  EXPECT_STREQ(parsed.listenSources[0].cStr(), "command line");
  EXPECT_STREQ(parsed.listenSources[2].cStr(), "command line");
  EXPECT_EQ(parsed.seconds, 5u);  // the file came later than --autoflush 2

  Parsed fresh;
  parsed = kj::mv(fresh);
  EXPECT_STREQ(parse({"--config", path, "--autoflush", "9"}).cStr(), "");
  EXPECT_EQ(parsed.seconds, 9u);

  // An option its handler takes once cannot be in both places.
  auto once = write("once.conf", "-o /a\n");
  EXPECT_STREQ(parse({"-o", "/b", "--config", once}).cStr(),
               kj::str("--config: ", once, ":1: --output: given twice").cStr());
}

TEST_F(ConfigFileTest, BadLineNamesFileAndLineNumber) {
  struct Case {
    const char* line;
    const char* error;
  };
  Case cases[] = {
      {"--bogus 1", "--bogus: unknown option"},
      {"bogus", "--bogus: unknown option"},
      {"-q", "-q: unknown option"},
      {"-ofile", "-ofile: unknown option"},
      {"help", "--help: unknown option"},
      {"autoflush soon", "--autoflush: 'soon' is not a number of seconds"},
      {"autoflush", "--autoflush: needs a value (SECONDS)"},
      {"verbose yes", "--verbose: takes no value"},
      {"verbose=", "--verbose: takes no value"},
  };
  for (auto& c : cases) {
    auto path = write("bad.conf", kj::str("# comment\n\nlisten unix:/x\n", c.line, "\nverbose\n"));
    Parsed fresh;
    parsed = kj::mv(fresh);
    EXPECT_STREQ(parse({"--config", path}).cStr(),
                 kj::str("--config: ", path, ":4: ", c.error).cStr()) << c.line;
    EXPECT_FALSE(parsed.verbose) << "lines after the bad one must not be applied";
  }
}

TEST_F(ConfigFileTest, NulByteIsRefused) {
  auto path = kj::str(dir, "/nul.conf");
  int fd = open(path.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "verbose\nlisten a\0b\n", 19), 19);
  close(fd);
  EXPECT_STREQ(parse({"--config", path}).cStr(),
               kj::str("--config: ", path, ":2: a NUL byte (not a text file?)").cStr());
  EXPECT_EQ(parsed.listen.size(), 0u);
}

TEST_F(ConfigFileTest, MissingOrUnreadableFile) {
  auto missing = kj::str(dir, "/missing.conf");
  EXPECT_STREQ(parse({"--config", missing}).cStr(),
               kj::str("--config: ", missing, ": No such file or directory").cStr());
  EXPECT_STREQ(parse({"--config", dir}).cStr(),
               kj::str("--config: ", dir, ": Is a directory").cStr());
  EXPECT_STREQ(parse({"--config", ""}).cStr(), "--config: empty file name");
  EXPECT_STREQ(parse({"--config"}).cStr(), "--config: needs a value (FILE)");

  auto big = write("big.conf", kj::str(kj::repeat('#', (1 << 20) + 1)));
  EXPECT_STREQ(parse({"--config", big}).cStr(),
               kj::str("--config: ", big, ": larger than 1048576 bytes").cStr());

  auto locked = write("locked.conf", "verbose\n", 0);
  if (geteuid() == 0) {
    // Root reads a mode 000 file anyway; the directory case above covers a failing read.
    EXPECT_STREQ(parse({"--config", locked}).cStr(), "");
  } else {
    EXPECT_STREQ(parse({"--config", locked}).cStr(),
                 kj::str("--config: ", locked, ": Permission denied").cStr());
  }
}

TEST_F(ConfigFileTest, NestedConfigIsRefused) {
  auto inner = write("inner.conf", "verbose\n");
  auto outer = write("outer.conf", kj::str("listen unix:/x\nconfig ", inner, "\n"));
  EXPECT_STREQ(parse({"--config", outer}).cStr(),
               kj::str("--config: ", outer, ":2: --config: not allowed inside a config file")
                   .cStr());
  EXPECT_FALSE(parsed.verbose);
  // After the failed file, the parser is back on the command line.
  EXPECT_TRUE(parser.configFile() == nullptr);

  // Two files side by side on the command line are fine.
  auto second = write("second.conf", "listen unix:/y\n");
  EXPECT_STREQ(parse({"--config", inner, "--config", second}).cStr(), "");
  EXPECT_TRUE(parsed.verbose);
}

TEST_F(ConfigFileTest, WarnsAboutAPasswordOtherUsersCanRead) {
  struct Case {
    const char* name;
    const char* text;
    mode_t mode;
    bool warns;
  };
  Case cases[] = {
      {"private.conf", "password hunter2\n", 0600, false},
      {"group.conf", "password hunter2\n", 0640, true},
      {"world.conf", "password hunter2\n", 0644, true},
      {"indirect.conf", "password file:/etc/tlstap/pw\n", 0644, false},
      {"nosecret.conf", "listen unix:/x\n", 0644, false},
  };
  for (auto& c : cases) {
    auto path = write(c.name, c.text, c.mode);
    Parsed fresh;
    parsed = kj::mv(fresh);
    testing::internal::CaptureStderr();
    auto error = parse({"--config", path});
    auto logged = testing::internal::GetCapturedStderr();
    EXPECT_STREQ(error.cStr(), "") << c.name;
    if (c.warns) {
      EXPECT_NE(logged.find(path.cStr()), std::string::npos) << c.name << ": " << logged;
      EXPECT_NE(logged.find("other users can read"), std::string::npos) << logged;
      EXPECT_EQ(logged.find("hunter2"), std::string::npos) << "password leaked to the log";
    } else {
      EXPECT_EQ(logged, "") << c.name;
    }
  }
  // A literal password on the command line is not the config file's business (the option that
  // loads it warns).
  testing::internal::CaptureStderr();
  EXPECT_STREQ(parse({"--password", "hunter2"}).cStr(), "");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST_F(ConfigFileTest, TextWithoutAFile) {
  kj::StringPtr text = "listen unix:/x\n\n  -v  \nbogus\n";
  KJ_IF_MAYBE(error, applyConfigText(parser, "fuzz-input", text.asArray())) {
    EXPECT_STREQ(error->cStr(), "fuzz-input:4: --bogus: unknown option");
  } else {
    ADD_FAILURE() << "an unknown option was accepted";
  }
  EXPECT_TRUE(parsed.verbose);
  EXPECT_STREQ(parsed.listenSources[0].cStr(), "fuzz-input");
}

}  // namespace
}  // namespace tlstap
