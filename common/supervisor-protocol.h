// The control socket between tlstap-front and the supervisor of its embedded recorder
// (`tlstap-recorder --supervise FD ARGS...`, recorder/supervisor.h). Written once here because
// both programs speak it.
//
// The socket is an AF_UNIX SOCK_SEQPACKET pair, so every message arrives whole or not at all and
// a short or long one is plainly a broken peer. The front makes it before its seccomp lock-down
// (after which it may not create unix sockets, fork or execute) and hands one end to the
// supervisor as fd FD. From then on the front only asks and the supervisor only answers:
//
//   front -> supervisor: REQUEST_LINK (one byte, nothing else)
//   supervisor -> front: REPLY_LINK with one fd (SCM_RIGHTS): the front's end of a fresh socket
//                        pair whose other end is a running tlstap-recorder's --connection-fd
//                    or: REPLY_REFUSED: the recorder refused its options (exit status 2, having
//                        printed why on stderr); it is not started again and the supervisor exits
//
// One request is outstanding at a time. The supervisor trusts nothing else from the front: any
// other message (a different byte, more bytes, an fd or credentials attached, a second request
// before the answer) ends supervision as if the front had exited.
#pragma once

#include <kj/common.h>

namespace tlstap {
namespace supervisor {

constexpr kj::byte REQUEST_LINK = 'L';
constexpr kj::byte REPLY_LINK = 'L';
constexpr kj::byte REPLY_REFUSED = 'R';

// The first argument of tlstap-recorder that selects the supervisor; the next is the control fd.
constexpr const char* MODE_OPTION = "--supervise";
// Where the front puts the control socket in the supervisor, and the supervisor puts the link in
// each recorder it starts (`--connection-fd 3`).
constexpr int CONTROL_FD = 3;
constexpr int RECORDER_LINK_FD = 3;

}  // namespace supervisor
}  // namespace tlstap
