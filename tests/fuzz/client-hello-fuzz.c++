// libFuzzer target: parseClientHello on bytes as a hostile client would send them. Beyond "no
// crash", it checks the promises client-hello.h makes to its caller.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "front/client-hello.h"

using tlstap::HelloStatus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto input = kj::arrayPtr(reinterpret_cast<const kj::byte*>(data), size);
  auto result = tlstap::parseClientHello(input);
  switch (result.status) {
    case HelloStatus::COMPLETE: {
      // The records holding the hello were all received, and within the cap.
      if (result.info.recordBytes == 0 || result.info.recordBytes > size ||
          result.info.recordBytes > tlstap::MAX_CLIENT_HELLO_BYTES) {
        abort();
      }
      KJ_IF_MAYBE(sni, result.info.sni) {
        if (!tlstap::isValidHostName(*sni)) abort();
      }
      for (auto& protocol : result.info.alpn) {
        if (protocol.size() == 0 || protocol.size() > 255) abort();
      }
      // The same bytes cut right after the hello parse to the same answer.
      auto again = tlstap::parseClientHello(input.slice(0, result.info.recordBytes));
      if (again.status != HelloStatus::COMPLETE) abort();
      break;
    }
    case HelloStatus::NEED_MORE:
      // Waiting for more is only allowed while under the cap: the caller stops peeking there.
      if (size >= tlstap::MAX_CLIENT_HELLO_BYTES) abort();
      break;
    case HelloStatus::INVALID:
      if (result.error.size() == 0) abort();
      break;
  }
  return 0;
}
