#include "front/front-options.h"

#include <string.h>
#include <unistd.h>

#include <initializer_list>

#include <gtest/gtest.h>
#include <kj/debug.h>

namespace tlstap {
namespace {

// Parses `args` into `options`; returns the parser's error, or "" when there was none.
kj::String parseInto(FrontOptions& options, std::initializer_list<const char*> args) {
  OptionParser parser("tlstap-front", "[OPTIONS]");
  addFrontOptions(parser, options);
  kj::Vector<kj::StringPtr> list;
  for (auto arg : args) list.add(arg);
  KJ_IF_MAYBE(error, parser.parse(list)) return kj::mv(*error);
  return kj::str();
}

#define EXPECT_PARSES(options, ...)                         \
  do {                                                      \
    auto error_ = parseInto(options, {__VA_ARGS__});        \
    EXPECT_EQ(error_.size(), 0u) << error_.cStr();          \
  } while (false)

// The error must be exactly `expected`: one line that starts with the option.
#define EXPECT_ERROR(expected, ...)                         \
  do {                                                      \
    FrontOptions options_;                                  \
    auto error_ = parseInto(options_, {__VA_ARGS__});       \
    EXPECT_STREQ(error_.cStr(), expected);                  \
  } while (false)

kj::String listenText(const PortMapping& mapping) { return mapping.listen.toString(); }

TEST(FrontOptions, PortMappingForms) {
  FrontOptions options;
  EXPECT_PARSES(options, "-p", "443,80", "-p", "10443,80,443", "-p", "127.0.0.1,8443,80",
                "-p", "192.0.2.1,8443,80,8080", "-p", "::1,8443,80,8080", "-p", "[::1],9443,80",
                "-p", "::,1443,80", "-p9999,81");
  ASSERT_EQ(options.ports.size(), 8u);
  struct Expected {
    const char* listen;
    uint16_t pcap;
    uint16_t forward;
  } expected[] = {
      {"0.0.0.0:443", 80, 443},       {"0.0.0.0:10443", 80, 443},
      {"127.0.0.1:8443", 80, 8443},   {"192.0.2.1:8443", 80, 8080},
      {"[::1]:8443", 80, 8080},       {"[::1]:9443", 80, 9443},
      {"[::]:1443", 80, 1443},        {"0.0.0.0:9999", 81, 9999},
  };
  for (size_t i = 0; i < options.ports.size(); i++) {
    SCOPED_TRACE(i);
    EXPECT_STREQ(listenText(options.ports[i]).cStr(), expected[i].listen);
    EXPECT_EQ(options.ports[i].pcapPort, expected[i].pcap);
    EXPECT_EQ(options.ports[i].forwardPort, expected[i].forward);
  }
  EXPECT_EQ(options.ports[4].listen.family(), AF_INET6);
  EXPECT_EQ(options.ports[4].listen.port(), 8443);
}

TEST(FrontOptions, BadPortMappings) {
  EXPECT_ERROR("-p: 'abc' is not a port (expected [IP,]LISTEN,PCAPPORT[,FORWARD])", "-p", "abc");
  EXPECT_ERROR("-p: '443': expected [IP,]LISTEN,PCAPPORT[,FORWARD]", "-p", "443");
  EXPECT_ERROR("-p: '1,2,3,4,5': expected [IP,]LISTEN,PCAPPORT[,FORWARD]", "-p", "1,2,3,4,5");
  EXPECT_ERROR("-p: '127.0.0.1,443': expected [IP,]LISTEN,PCAPPORT[,FORWARD]", "-p",
               "127.0.0.1,443");
  EXPECT_ERROR("-p: '0' is not a port (1-65535)", "-p", "0,80");
  EXPECT_ERROR("-p: '65536' is not a port (1-65535)", "-p", "65536,80");
  EXPECT_ERROR("-p: 'abc' is not a port (1-65535)", "-p", "443,abc");
  EXPECT_ERROR("-p: '0' is not a port (1-65535)", "-p", "443,80,0");
  EXPECT_ERROR("-p: '' is not a port (1-65535)", "-p", "443,,80");
  EXPECT_ERROR("-p: '-1' is not a port (1-65535)", "-p", "::1,-1,80");
  EXPECT_ERROR("-p: '1.2.3' is not an IPv4 or IPv6 address", "-p", "1.2.3,443,80");
  EXPECT_ERROR("-p: 'localhost' is not an IPv4 or IPv6 address", "-p", "localhost,443,80");
  EXPECT_ERROR("-p: '' is not an IPv4 or IPv6 address", "-p", ",443,80,8080");
  EXPECT_ERROR("-p: needs a value ([IP,]LISTEN,PCAPPORT[,FORWARD])", "-p");
}

TEST(FrontOptions, Defaults) {
  FrontOptions options;
  EXPECT_PARSES(options);
  EXPECT_EQ(options.ports.size(), 0u);
  EXPECT_FALSE(options.terminate);
  EXPECT_FALSE(options.verbose);
  EXPECT_FALSE(options.insecure);
  EXPECT_EQ(options.autoflushSeconds, 1u);
  EXPECT_EQ(options.maxConnections, 10000u);
  EXPECT_EQ(options.handshakeTimeoutSeconds, 10u);
  EXPECT_EQ(options.idleTimeoutSeconds, 300u);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  EXPECT_EQ(options.threads, uint32_t(cores < 1 ? 1 : cores));
  EXPECT_GE(options.threads, 1u);
  EXPECT_EQ(options.recorderDown, RecorderDown::BLOCK);
  EXPECT_TRUE(options.connectHost == nullptr);
  EXPECT_TRUE(options.outputDir == nullptr);
  EXPECT_TRUE(options.certHttpPort == nullptr);
}

TEST(FrontOptions, EveryOptionIsStored) {
  FrontOptions o;
  EXPECT_PARSES(o, "-p", "443,80", "--terminate", "--connect", "backend.internal", "--nosni",
                "Default.Example", "--servercert", "a.example,*.b.example:/k/a.p12:env:PW",
                "--servercert", "c.example:/k/c.pem", "--cacert", "load:/k/ca.p12:file:/k/pw",
                "-x", "/tmp/ca.der", "--certhttp", "8080", "--cn", "Test CA", "--cadir",
                "/var/lib/tlstap", "-o", "/var/log/tlstap", "--pcapoverip", "57012",
                "--pcapoverip", "[::1]:57013", "--pcapoveripconnect", "arkime.internal:57012",
                "--autoflush", "5", "--recorder-down", "pass", "--link-timeout", "9", "--backend-ca",
                "/k/ca.pem",
                "--insecure", "--dns", "192.0.2.53", "--max-connections", "500",
                "--handshake-timeout", "3", "--idle-timeout", "60", "--threads", "4", "--user",
                "tlstap", "--retain-hours", "72", "--max-bytes", "20G", "--stats-interval", "0",
                "-v");
  EXPECT_EQ(o.ports.size(), 1u);
  EXPECT_TRUE(o.terminate);
  EXPECT_EQ(o.linkTimeoutSeconds, 9u);
  EXPECT_STREQ(KJ_ASSERT_NONNULL(o.connectHost).cStr(), "backend.internal");
  EXPECT_STREQ(KJ_ASSERT_NONNULL(o.noSni).cStr(), "default.example");
  ASSERT_EQ(o.serverCerts.size(), 2u);
  EXPECT_STREQ(o.serverCerts[0].spec.cStr(), "a.example,*.b.example:/k/a.p12:env:PW");
  EXPECT_STREQ(o.serverCerts[1].spec.cStr(), "c.example:/k/c.pem");
  EXPECT_EQ(o.serverCerts[0].origin, SecretOrigin::COMMAND_LINE);
  EXPECT_STREQ(KJ_ASSERT_NONNULL(o.caCert).cStr(), "load:/k/ca.p12:file:/k/pw");
  EXPECT_STREQ(KJ_ASSERT_NONNULL(o.exportCa).cStr(), "/tmp/ca.der");
  EXPECT_EQ(KJ_ASSERT_NONNULL(o.certHttpPort), 8080);
  EXPECT_STREQ(KJ_ASSERT_NONNULL(o.caCommonName).cStr(), "Test CA");
  EXPECT_STREQ(KJ_ASSERT_NONNULL(o.caDir).cStr(), "/var/lib/tlstap");
  EXPECT_STREQ(KJ_ASSERT_NONNULL(o.outputDir).cStr(), "/var/log/tlstap");
  ASSERT_EQ(o.pcapOverIp.size(), 2u);
  EXPECT_STREQ(o.pcapOverIp[0].cStr(), "57012");
  EXPECT_STREQ(o.pcapOverIp[1].cStr(), "[::1]:57013");
  ASSERT_EQ(o.pcapOverIpConnect.size(), 1u);
  EXPECT_STREQ(o.pcapOverIpConnect[0].cStr(), "arkime.internal:57012");
  EXPECT_EQ(o.autoflushSeconds, 5u);
  EXPECT_EQ(o.recorderDown, RecorderDown::PASS);
  EXPECT_STREQ(KJ_ASSERT_NONNULL(o.backendCa).cStr(), "/k/ca.pem");
  EXPECT_TRUE(o.insecure);
  auto& dns = KJ_ASSERT_NONNULL(o.dns);
  EXPECT_STREQ(dns.toString().cStr(), "192.0.2.53:53");
  EXPECT_EQ(o.maxConnections, 500u);
  EXPECT_EQ(o.handshakeTimeoutSeconds, 3u);
  EXPECT_EQ(o.idleTimeoutSeconds, 60u);
  EXPECT_EQ(o.threads, 4u);
  EXPECT_STREQ(KJ_ASSERT_NONNULL(o.user).cStr(), "tlstap");
  EXPECT_EQ(o.retainHours, 72u);
  EXPECT_EQ(o.maxBytes, uint64_t(20) << 30);
  EXPECT_EQ(o.statsIntervalSeconds, 0u);
  EXPECT_TRUE(o.verbose);

  FrontOptions other;
  EXPECT_PARSES(other, "-w", "/tmp/x.pcap", "--recorder", "unix:/run/tlstap.sock",
                "--link-psk", "file:/k/psk", "--dns", "[::1]:5353", "--recorder-down=block",
                "--connect", "::1");
  EXPECT_STREQ(KJ_ASSERT_NONNULL(other.writeFile).cStr(), "/tmp/x.pcap");
  EXPECT_STREQ(KJ_ASSERT_NONNULL(other.recorderAddress).cStr(), "unix:/run/tlstap.sock");
  EXPECT_STREQ(KJ_ASSERT_NONNULL(other.link.psk).cStr(), "file:/k/psk");
  EXPECT_STREQ(KJ_ASSERT_NONNULL(other.dns).toString().cStr(), "[::1]:5353");
  EXPECT_EQ(other.recorderDown, RecorderDown::BLOCK);
  EXPECT_STREQ(KJ_ASSERT_NONNULL(other.connectHost).cStr(), "::1");

  FrontOptions third;
  EXPECT_PARSES(third, "--recorder", "recorder.internal:4000", "--dns", "::1", "--connect",
                "[2001:db8::1]", "--pcapoveripconnect", "[::1]:57012");
  EXPECT_STREQ(KJ_ASSERT_NONNULL(third.recorderAddress).cStr(), "recorder.internal:4000");
  EXPECT_STREQ(KJ_ASSERT_NONNULL(third.dns).toString().cStr(), "[::1]:53");
}

TEST(FrontOptions, BadValuesNameTheOption) {
  EXPECT_ERROR("--connect: 'a b' is not a host name or an IP address", "--connect", "a b");
  EXPECT_ERROR("--connect: 'backend:8080' is not a host name or an IP address", "--connect",
               "backend:8080");
  EXPECT_ERROR("--connect: given twice", "--connect", "a", "--connect", "b");
  EXPECT_ERROR("--nosni: '*.example' is not a host name", "--nosni", "*.example");
  EXPECT_ERROR("--servercert: 'a.p12': expected NAME[,NAME...]:FILE[:PASSWORD]",
               "--servercert", "a.p12");
  EXPECT_ERROR("--servercert: ':a.p12': no NAME before ':'", "--servercert", ":a.p12");
  EXPECT_ERROR("--servercert: 'a.example:': no FILE", "--servercert", "a.example:");
  EXPECT_ERROR("--cacert: '/k/ca.p12': expected load:FILE[:PASSWORD]", "--cacert", "/k/ca.p12");
  EXPECT_ERROR("--cacert: 'load:': expected load:FILE[:PASSWORD]", "--cacert", "load:");
  EXPECT_ERROR("--certhttp: '0' is not a port (1-65535)", "--certhttp", "0");
  EXPECT_ERROR("--certhttp: 'http' is not a port (1-65535)", "--certhttp", "http");
  EXPECT_ERROR("--cn: longer than 64 characters", "--cn", kj::str(kj::repeat('c', 65)).cStr());
  EXPECT_ERROR("-o: given twice", "-o", "a", "-o", "b");
  EXPECT_ERROR("-w: empty value", "-w", "");
  EXPECT_ERROR("-x: empty value", "-x", "");
  EXPECT_ERROR("--pcapoverip: 'abc' is not a port (1-65535)", "--pcapoverip", "abc");
  EXPECT_ERROR("--pcapoverip: '0' is not a port (1-65535)", "--pcapoverip", "0");
  EXPECT_ERROR("--pcapoveripconnect: 'arkime': expected HOST:PORT", "--pcapoveripconnect",
               "arkime");
  EXPECT_ERROR("--pcapoveripconnect: '0' is not a port (1-65535)", "--pcapoveripconnect",
               "arkime:0");
  EXPECT_ERROR("--pcapoveripconnect: '::1:80': write IPv6 addresses as [ADDRESS]:PORT",
               "--pcapoveripconnect", "::1:80");
  EXPECT_ERROR("--pcapoveripconnect: 'bad host' is not a host name or an IP address",
               "--pcapoveripconnect", "bad host:80");
  EXPECT_ERROR("--autoflush: '0' is not a number of seconds (1-3600)", "--autoflush", "0");
  EXPECT_ERROR("--autoflush: 'soon' is not a number of seconds (1-3600)", "--autoflush",
               "soon");
  EXPECT_ERROR("--recorder: 'unix:': empty socket path", "--recorder", "unix:");
  EXPECT_ERROR("--recorder: 'recorder': expected HOST:PORT", "--recorder", "recorder");
  EXPECT_ERROR("--recorder-down: 'drop': expected block or pass", "--recorder-down", "drop");
  EXPECT_ERROR("--link-timeout: '1' is not a number of seconds (2-3600)", "--link-timeout", "1");
  EXPECT_ERROR("--link-timeout: 'soon' is not a number of seconds (2-3600)", "--link-timeout",
               "soon");
  EXPECT_ERROR("--dns: 'resolver' is not an IP address with an optional port (IP[:PORT], "
               "[IPv6]:PORT)", "--dns", "resolver");
  EXPECT_ERROR("--dns: 'dns.example:53' is not an IP address with an optional port (IP[:PORT], "
               "[IPv6]:PORT)", "--dns", "dns.example:53");
  EXPECT_ERROR("--dns: '0.0.0.0' is not a DNS server (the unspecified address)", "--dns",
               "0.0.0.0");
  EXPECT_ERROR("--dns: '[::]:53' is not a DNS server (the unspecified address)", "--dns",
               "[::]:53");
  EXPECT_ERROR("--dns: given twice", "--dns", "192.0.2.1", "--dns", "192.0.2.2");
  EXPECT_ERROR("--dns: '0' is not a port (1-65535)", "--dns", "192.0.2.1:0");
  EXPECT_ERROR("--max-connections: '0' is not a number of connections (1-10000000)",
               "--max-connections", "0");
  EXPECT_ERROR("--handshake-timeout: '-1' is not a number of seconds (1-3600)",
               "--handshake-timeout", "-1");
  EXPECT_ERROR("--idle-timeout: '604801' is not a number of seconds (1-604800)",
               "--idle-timeout", "604801");
  EXPECT_ERROR("--threads: 'many' is not a number of threads (1-1024)", "--threads", "many");
  EXPECT_ERROR("--threads: '0' is not a number of threads (1-1024)", "--threads", "0");
  EXPECT_ERROR("--retain-hours: '0' is not a number of hours (1-876000)", "--retain-hours", "0");
  EXPECT_ERROR("--max-bytes: '10X' is not a size (e.g. 500M, 20G, 2T)", "--max-bytes", "10X");
  EXPECT_ERROR("--stats-interval: 'often' is not a number of seconds (0-604800)",
               "--stats-interval", "often");
  EXPECT_ERROR("--terminate: takes no value", "--terminate=yes");
  EXPECT_ERROR("--bogus: unknown option (see --help)", "--bogus");
}

TEST(FrontOptions, HelpListsEveryOption) {
  FrontOptions options;
  OptionParser parser("tlstap-front", "[OPTIONS]");
  addFrontOptions(parser, options);
  auto usage = parser.usage();
  for (auto option : {"-p [IP,]LISTEN", "--terminate", "--connect", "--nosni", "--servercert",
                      "--cacert", "-x FILE", "--certhttp", "--cn", "--cadir", "-o DIR",
                      "-w FILE", "--pcapoverip ", "--pcapoveripconnect", "--autoflush",
                      "--recorder ", "--link-psk", "--link-timeout", "--recorder-down", "--backend-ca",
                      "--insecure", "--dns", "--max-connections", "--handshake-timeout",
                      "--idle-timeout", "--threads", "--user", "--config", "--retain-hours",
                      "--max-bytes", "--stats-interval", "-v"}) {
    EXPECT_NE(strstr(usage.cStr(), option), nullptr) << option;
  }
  auto error = parseInto(options, {"--help"});
  EXPECT_EQ(error.size(), 0u);
}

// --- Checks across options ---------------------------------------------------------------------

kj::String checked(std::initializer_list<const char*> args) {
  FrontOptions options;
  auto error = parseInto(options, args);
  if (error.size() > 0) return kj::str("PARSE ", error);
  KJ_IF_MAYBE(problem, checkFrontOptions(options)) return kj::mv(*problem);
  return kj::str();
}

#define GOOD "-p", "443,80", "--terminate", "--connect", "backend", "--servercert", "a:b.p12"

TEST(FrontOptions, CheckAcceptsAWorkingSetUp) {
  EXPECT_STREQ(checked({GOOD, "-w", "out.pcap"}).cStr(), "");
  EXPECT_STREQ(checked({GOOD, "-o", "dir", "--pcapoverip", "57012", "-p", "::1,443,80"}).cStr(),
               "");
  EXPECT_STREQ(checked({GOOD, "--recorder", "unix:/run/r.sock"}).cStr(), "");
  EXPECT_STREQ(checked({GOOD, "-o", "d", "--retain-hours", "24", "--max-bytes", "1T"}).cStr(), "");
  EXPECT_STREQ(checked({GOOD, "--recorder", "r.internal:4000", "--link-psk", "env:PSK"}).cStr(),
               "");
  EXPECT_STREQ(checked({GOOD, "--pcapoveripconnect", "a:1", "--recorder-down", "pass"}).cStr(), "");
}

TEST(FrontOptions, CheckAcceptsReEncryption) {
  // Without --terminate the backend speaks TLS: verified by default, or against extra anchors,
  // or (with a warning at start-up) not at all.
  EXPECT_STREQ(checked({"-p", "443,80,443", "--connect", "backend", "--servercert", "a:b", "-o",
                        "d"}).cStr(), "");
  EXPECT_STREQ(checked({"-p", "443,80,443", "--connect", "backend", "--servercert", "a:b", "-o",
                        "d", "--backend-ca", "ca.pem"}).cStr(), "");
  EXPECT_STREQ(checked({"-p", "443,80,443", "--connect", "backend", "--servercert", "a:b", "-o",
                        "d", "--insecure"}).cStr(), "");
}

// Without --connect, each connection goes to the host its ClientHello names.
TEST(FrontOptions, CheckAcceptsRoutingBySni) {
  FrontOptions options;
  EXPECT_PARSES(options, "-p", "443,80", "--terminate", "--servercert", "*.example:b.p12", "-w",
                "x", "--dns", "127.0.0.1:5353");
  EXPECT_EQ(checkFrontOptions(options), nullptr);
  EXPECT_TRUE(options.connectHost == nullptr);
  EXPECT_STREQ(KJ_ASSERT_NONNULL(options.dns).toString().cStr(), "127.0.0.1:5353");
  // /etc/resolv.conf's nameservers when there is no --dns.
  EXPECT_STREQ(checked({"-p", "443,80", "--terminate", "--servercert", "a:b", "-w", "x"}).cStr(),
               "");
  EXPECT_STREQ(checked({"-p", "443,80", "--terminate", "--servercert", "a:b", "-w", "x",
                        "--nosni", "www.example", "--dns", "[2001:db8::53]:53"}).cStr(), "");
  // Re-encrypting to the host the SNI names, verified against that name.
  EXPECT_STREQ(checked({"-p", "443,80,443", "--servercert", "a:b", "-o", "d"}).cStr(), "");
}

TEST(FrontOptions, CheckRefusesBadCombinations) {
  EXPECT_STREQ(checked({"--terminate", "--connect", "b", "--servercert", "a:b", "-w", "x"}).cStr(),
               "-p: at least one is needed ([IP,]LISTEN,PCAPPORT[,FORWARD])");
  EXPECT_STREQ(checked({GOOD, "-w", "x", "-p", "443,81"}).cStr(), "-p: 0.0.0.0:443 is given twice");
  EXPECT_STREQ(checked({GOOD, "-w", "x", "--dns", "::1"}).cStr(),
               "--dns: only used when routing by SNI; not with --connect HOST");
  EXPECT_STREQ(checked({GOOD, "-o", "d", "-w", "x"}).cStr(), "-o and -w cannot be used together");
  EXPECT_STREQ(checked({GOOD}).cStr(),
               "nothing would be recorded: give -o DIR, -w FILE, --pcapoverip, "
               "--pcapoveripconnect or --recorder ADDR");
  EXPECT_STREQ(checked({GOOD, "--recorder", "r:1", "--pcapoverip", "57012"}).cStr(),
               "--recorder: -o, -w, --pcapoverip and --pcapoveripconnect belong on the external "
               "recorder's command line, not here");
  EXPECT_STREQ(checked({GOOD, "--recorder", "unix:/r", "--link-psk", "env:X"}).cStr(),
               "--link-psk: only for a TCP --recorder (a unix socket is checked with SO_PEERCRED)");
  EXPECT_STREQ(checked({GOOD, "-w", "x", "--link-psk", "env:X"}).cStr(),
               "--link-psk: needs --recorder HOST:PORT");
  EXPECT_STREQ(checked({GOOD, "-w", "x", "--max-bytes", "1G"}).cStr(),
               "--max-bytes: needs -o DIR (only rotated files are deleted)");
  EXPECT_STREQ(checked({GOOD, "--recorder", "unix:/r", "--retain-hours", "5"}).cStr(),
               "--retain-hours: belongs on the external recorder's command line, not here");
  EXPECT_STREQ(checked({GOOD, "-w", "x", "--insecure", "--backend-ca", "ca.pem"}).cStr(),
               "--insecure and --backend-ca contradict each other");
  EXPECT_STREQ(checked({GOOD, "-w", "x", "--insecure"}).cStr(),
               "--insecure: with --terminate the backend is plain TCP, nothing to verify");
  EXPECT_STREQ(checked({GOOD, "-w", "x", "--backend-ca", "ca.pem"}).cStr(),
               "--backend-ca: with --terminate the backend is plain TCP, nothing to verify");
  EXPECT_STREQ(checked({GOOD, "-w", "x", "--cacert", "load:ca.p12", "--cn", "CA"}).cStr(),
               "--cn: names a generated root CA; --cacert loads one that has its name");
  EXPECT_STREQ(checked({GOOD, "-w", "x", "--cacert", "load:ca.p12", "--cadir", "d"}).cStr(),
               "--cadir: keeps a generated root CA; with --cacert none is generated");
}

TEST(FrontOptions, CheckAcceptsTheRootCaOptions) {
  // No --servercert at all: every name gets a forged certificate.
  EXPECT_STREQ(checked({"-p", "443,80", "--terminate", "--connect", "b", "-w", "x"}).cStr(), "");
  EXPECT_STREQ(checked({GOOD, "-w", "x", "--cacert", "load:ca.p12:env:PW", "-x", "ca.der",
                        "--certhttp", "8080"}).cStr(),
               "");
  EXPECT_STREQ(checked({GOOD, "-w", "x", "--cadir", "d", "--cn", "Lab CA", "-x", "c.der"}).cStr(),
               "");
}

TEST(FrontOptions, UsersAreAcceptedAndTheRecorderUserOnlyForTheEmbeddedRecorder) {
  EXPECT_STREQ(checked({GOOD, "-w", "x", "--user", "nobody", "--recorder-user", "daemon"}).cStr(),
               "");
  EXPECT_STREQ(checked({GOOD, "--recorder", "unix:/run/r.sock", "--recorder-user", "daemon"})
                   .cStr(),
               "--recorder-user: only for the embedded recorder (an external recorder takes its "
               "own --user)");
}

}  // namespace
}  // namespace tlstap
