// libFuzzer target: the command lines and config files of tlstap-front and tlstap-recorder.
//
// The input is split at NUL bytes into arguments. The first argument picks what is fuzzed and is
// not passed on:
//   "recorder"         the rest are tlstap-recorder arguments
//   "front-config"     the bytes after the first NUL are a tlstap-front config file
//   "recorder-config"  the same for tlstap-recorder
//   anything else      the rest are tlstap-front arguments
// Checks: no crash, no sanitizer finding, every error is a non-empty line, and what a successful
// parse stored is usable.
#include <dlfcn.h>
#include <netdb.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/config-file.h"
#include "common/options.h"
#include "front/front-options.h"
#include "recorder/recorder-options.h"

// --pcapoveripconnect HOST:PORT resolves HOST at parse time. A fuzzer must not send DNS queries
// (slow, and not reproducible), so names are answered from numeric forms only; the code around
// the call (errors, copying the result) still runs.
extern "C" int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                           struct addrinfo** res) {
  using Real = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
  static Real real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "getaddrinfo"));
  struct addrinfo numeric = {};
  if (hints != nullptr) numeric = *hints;
  numeric.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
  if (real == nullptr) return EAI_FAIL;
  return real(node, service, &numeric, res);
}

namespace {

void expectLine(kj::Maybe<kj::String>& error) {
  KJ_IF_MAYBE(e, error) {
    if (e->size() == 0) abort();
  }
}

void checkFront(tlstap::OptionParser& parser, tlstap::FrontOptions& options,
                kj::Maybe<kj::String> error) {
  expectLine(error);
  if (error != nullptr || parser.helpRequested()) return;
  auto check = tlstap::checkFrontOptions(options);
  expectLine(check);
  for (auto& port : options.ports) {
    if (port.pcapPort == 0 || port.forwardPort == 0 || port.listen.port() == 0) abort();
    (void)port.listen.toString();
  }
}

void checkRecorder(tlstap::OptionParser& parser, tlstap::RecorderOptions& options,
                   kj::Maybe<kj::String> error) {
  expectLine(error);
  if (error != nullptr || parser.helpRequested()) return;
  auto check = tlstap::checkRecorderOptions(options);
  expectLine(check);
  for (auto& address : options.listen) (void)address.toString();
  for (auto& address : options.pcapOverIp) {
    if (address.port() == 0) abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto text = kj::arrayPtr(reinterpret_cast<const char*>(data), size);
  kj::Vector<kj::String> storage;
  size_t start = 0;
  for (size_t i = 0; i <= size; i++) {
    if (i == size || data[i] == 0) {
      storage.add(kj::heapString(text.begin() + start, i - start));
      start = i + 1;
    }
  }
  kj::StringPtr mode = storage[0];
  kj::Vector<kj::StringPtr> args;
  for (auto& arg : storage.asPtr().slice(1, storage.size())) {
    // --config FILE reads a file: a fuzzer must not (a path such as /dev/stdin would block).
    // The config parser itself is fuzzed through the *-config modes.
    if (arg == "--config" || arg.startsWith("--config=")) return 0;
    args.add(arg);
  }
  auto configText = text.slice(kj::min(mode.size() + 1, size), size);

  if (mode == "recorder" || mode == "recorder-config") {
    tlstap::RecorderOptions options;
    tlstap::OptionParser parser("tlstap-recorder", "[OPTION]...");
    tlstap::addRecorderOptions(parser, options);
    auto error = mode == "recorder" ? parser.parse(args)
                                    : tlstap::applyConfigText(parser, "fuzz.conf", configText);
    checkRecorder(parser, options, kj::mv(error));
  } else {
    tlstap::FrontOptions options;
    tlstap::OptionParser parser("tlstap-front", "[OPTION]...");
    tlstap::addFrontOptions(parser, options);
    auto error = mode == "front-config"
                     ? tlstap::applyConfigText(parser, "fuzz.conf", configText)
                     : parser.parse(args);
    checkFront(parser, options, kj::mv(error));
  }
  return 0;
}
