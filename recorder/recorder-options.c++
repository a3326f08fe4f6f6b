#include "recorder-options.h"

#include <errno.h>
#include <unistd.h>

#include "common/config-file.h"

namespace tlstap {

namespace {

// How many FILE-N names a restarted recorder tries before giving up (and failing on the last).
constexpr unsigned MAX_RESTART_FILES = 9999;

// PCAP-over-IP carries decrypted traffic, so a bare port listens on loopback only; serving
// other hosts takes an explicit address.
constexpr const char* DEFAULT_PCAP_OVER_IP_ADDRESS = "127.0.0.1";

}  // namespace

void addRecorderOptions(OptionParser& parser, RecorderOptions& options) {
  parser.addOption("listen", 0, "ADDR",
                   "accept fronts on unix:/path or IP:PORT (TLS with --link-...; plain TCP on "
                   "loopback only); repeatable",
                   [&options](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     SocketAddress address;
                     KJ_IF_MAYBE(error, parseListenAddress(value, address)) return kj::mv(*error);
                     options.listen.add(address);
                     return nullptr;
                   });
  parser.addOption("connection-fd", 0, "FD",
                   "serve one connected socket (used by tlstap-front); exit when it closes",
                   [&options](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     KJ_IF_MAYBE(fd, parseUnsigned(value, 3, 65535)) {
                       options.connectionFd = int(*fd);
                       return nullptr;
                     }
                     return kj::str("'", value, "' is not a file descriptor number (3 or more)");
                   });
  parser.addFlag("restarted", 0,
                 "started again after a recorder died (set by the supervisor): -w FILE goes on "
                 "in FILE-N", [&options]() { options.restarted = true; });
  parser.addOption("output", 'o', "DIR", "write hourly rotated pcap files into DIR",
                   [&options](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     if (value.size() == 0) return kj::str("empty directory name");
                     options.outputDir = kj::heapString(value);
                     return nullptr;
                   });
  parser.addOption("write", 'w', "FILE", "write every packet into one pcap file",
                   [&options](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     if (value.size() == 0) return kj::str("empty file name");
                     options.writeFile = kj::heapString(value);
                     return nullptr;
                   });
  parser.addOption("pcapoverip", 0, "[IP:]PORT",
                   "serve PCAP-over-IP (default address 127.0.0.1); repeatable",
                   [&options](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     SocketAddress address;
                     KJ_IF_MAYBE(error,
                                 parseOptionalIpPort(value, DEFAULT_PCAP_OVER_IP_ADDRESS, address)) {
                       return kj::mv(*error);
                     }
                     options.pcapOverIp.add(address);
                     return nullptr;
                   });
  parser.addOption("pcapoveripconnect", 0, "HOST:PORT",
                   "send PCAP-over-IP to HOST:PORT, reconnecting when it drops; repeatable",
                   [&options](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     SocketAddress address;
                     // Resolved here to reject a bad value with the other option errors; main()
                     // resolves it again into every address, which serve all connections.
                     KJ_IF_MAYBE(error, resolveHostPort(value, address)) return kj::mv(*error);
                     options.pcapOverIpConnect.add(kj::heapString(value));
                     return nullptr;
                   });
  parser.addOption("autoflush", 0, "SECONDS",
                   "flush pcap output at least this often (default 1)",
                   [&options](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     KJ_IF_MAYBE(seconds, parseUnsigned(value, 1, 3600)) {
                       options.autoflushSeconds = uint32_t(*seconds);
                       return nullptr;
                     }
                     return kj::str("'", value, "' is not a number of seconds (1-3600)");
                   });
  parser.addOption("user", 0, "USER",
                   "started as root, run as USER after start-up (default tlstap-rec)",
                   [&options](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     if (options.user != nullptr) return kj::str("given twice");
                     if (value.size() == 0) return kj::str("empty user name");
                     options.user = kj::heapString(value);
                     return nullptr;
                   });
  parser.addOption("allow-user", 0, "USER",
                   "let USER's fronts connect to a unix --listen socket (default: root, this "
                   "recorder's user and tlstap); repeatable",
                   [&options](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     if (value.size() == 0) return kj::str("empty user name");
                     options.allowUsers.add(kj::heapString(value));
                     return nullptr;
                   });
  parser.addOption("retain-hours", 0, "N",
                   "with -o: delete capture files last written more than N hours ago",
                   [&options](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     KJ_IF_MAYBE(hours, parseUnsigned(value, 1, 24 * 365 * 100)) {
                       options.retainHours = *hours;
                       return nullptr;
                     }
                     return kj::str("'", value, "' is not a number of hours (1-876000)");
                   });
  parser.addOption("max-bytes", 0, "SIZE",
                   "with -o: delete the oldest capture files to keep their total within SIZE "
                   "(K, M, G, T suffixes)",
                   [&options](kj::StringPtr value) -> kj::Maybe<kj::String> {
                     KJ_IF_MAYBE(bytes, parseByteSize(value)) {
                       options.maxBytes = *bytes;
                       return nullptr;
                     }
                     return kj::str("'", value, "' is not a size (e.g. 500M, 20G, 2T)");
                   });
  addStatsIntervalOption(parser, options.statsIntervalSeconds);
  addTlsLinkOptions(parser, options.link);
  addLinkTimeoutOption(parser, options.linkTimeoutSeconds);
  parser.addFlag("verbose", 'v', "log every flow", [&options]() { options.verbose = true; });
  addConfigOption(parser);
}

kj::String restartedWriteFile(kj::StringPtr path) {
  kj::StringPtr stem = path;
  kj::StringPtr extension = "";
  if (path.endsWith(".pcap")) {
    stem = kj::StringPtr(path.begin(), path.size() - 5);
    extension = ".pcap";
  }
  kj::String candidate;
  for (unsigned n = 1; n <= MAX_RESTART_FILES; n++) {
    candidate = kj::str(stem, "-", n, extension);
    // Only a name that surely does not exist; the writer's O_EXCL settles a race.
    if (access(candidate.cStr(), F_OK) != 0 && errno == ENOENT) break;
  }
  return candidate;
}

kj::Maybe<kj::String> checkRecorderOptions(const RecorderOptions& options) {
  if (options.listen.size() == 0 && options.connectionFd == nullptr) {
    return kj::str("--listen: nothing to listen on (give --listen unix:/path or IP:PORT)");
  }
  bool tcp = false;
  for (auto& address : options.listen) {
    if (address.family() == AF_UNIX) continue;
    tcp = true;
    if (!options.link.given() && !address.isLoopback()) {
      return kj::str("--listen: ", address.toString(), ": off loopback the link needs TLS: give "
                     "--link-cert with --link-ca or --link-pin, or --link-psk");
    }
  }
  if (options.link.given()) {
    if (!tcp) return kj::str(options.link.optionName(), ": needs a --listen IP:PORT (TLS link)");
    KJ_IF_MAYBE(error, checkTlsLinkOptions(options.link)) return kj::mv(*error);
  }
  if (options.outputDir != nullptr && options.writeFile != nullptr) {
    return kj::str("-w: cannot be combined with -o (choose one)");
  }
  if (options.outputDir == nullptr && options.writeFile == nullptr &&
      options.pcapOverIp.size() == 0 && options.pcapOverIpConnect.size() == 0) {
    return kj::str("-o: no output (give -o DIR, -w FILE, --pcapoverip or --pcapoveripconnect)");
  }
  if (options.allowUsers.size() > 0) {
    bool unixListener = false;
    for (auto& address : options.listen) unixListener |= address.family() == AF_UNIX;
    if (!unixListener) return kj::str("--allow-user: only for a unix --listen socket");
  }
  if (options.outputDir == nullptr && (options.retainHours > 0 || options.maxBytes > 0)) {
    return kj::str(options.retainHours > 0 ? "--retain-hours" : "--max-bytes",
                   ": needs -o DIR (only rotated files are deleted)");
  }
  return nullptr;
}

}  // namespace tlstap
