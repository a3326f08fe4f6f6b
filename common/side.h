// The two ends of a proxied TCP connection. A byte "from CLIENT" was sent by the client towards
// the server. Both programs use this instead of the wire enum so that only the RPC code depends
// on the generated Cap'n Proto headers.
#pragma once

#include <stdint.h>

namespace tlstap {

enum class Side : uint8_t { CLIENT = 0, SERVER = 1 };

inline Side otherSide(Side side) { return side == Side::CLIENT ? Side::SERVER : Side::CLIENT; }
inline const char* sideName(Side side) { return side == Side::CLIENT ? "client" : "server"; }

}  // namespace tlstap
