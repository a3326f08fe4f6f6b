// `tlstap-recorder --supervise FD ARGS...`: the small process that keeps tlstap-front's embedded
// recorder running. The front starts it first thing, before it reads a key (fork and exec, so
// that it inherits neither the front's memory nor a key), with a control socket on FD
// (common/supervisor-protocol.h). When the front first asks, it starts `tlstap-recorder
// --connection-fd 3 ARGS...` with a fresh socket pair and hands the front its end. After
// lock-down the front cannot fork, execute or create unix sockets, so this is how it gets a new
// recorder and a new link when the old one dies.
//
// Rules, each because the front after lock-down (or a compromised front) must not be able to make
// this process do more than restart a recorder:
//  - It reads nothing from the control socket but the one-byte request; anything else ends it.
//  - It never holds a key or a password: it is a fresh exec, and the recorder's arguments hold
//    none (they are the recording options only).
//  - A recorder that exits abnormally (a signal, or a status other than 0) is started again
//    without waiting for the front, after a delay: 0.1 s, doubling with each quick failure up to
//    5 s, and back to 0.1 s once a recorder has run for 10 s.
//  - A recorder started in place of one that died gets --restarted (after --connection-fd 3), so
//    that with -w FILE it writes a new FILE-N instead of refusing the existing FILE.
//  - A first recorder that exits with status 2 refused its options (and said why on stderr): the
//    same options will not do better, so it is not started again; the front's next request is
//    answered with a refusal, which at start-up makes the front exit 2 with only the recorder's
//    line. A later one that exits 2 is started again like one that crashed: its options worked
//    before, and what stopped it (a port taken meanwhile) may pass.
//  - A recorder that exits 0 was told to stop (its link closed, or a signal): it is started again
//    only when the front asks for a link.
//  - When the front goes (the control socket closes), it closes the link it still holds, waits
//    for the recorder to finish its files and exit, and exits with the recorder's status. A
//    recorder that does not exit is sent SIGTERM, then SIGKILL.
//  - It ignores SIGINT, SIGTERM and SIGHUP: its life is the front's, which drains the recording
//    before closing the link (a service manager's SIGTERM reaches the front and the recorder).
//  - It locks itself down before the first recorder starts (lockDownSupervisor() in
//    sandbox/lock-down.h): as root it keeps uid 0 for its recorders' root start-up, but only the
//    capabilities that start-up uses, under no_new_privs, Landlock (files written only where
//    the recorders write) and its own seccomp policy, all of which its recorders inherit.
//
// Exit status: 0 when the last recorder exited 0 (or none was asked for); 2 when the recorder
// refused its options; 1 otherwise (a bad command line, or a recorder that had died and was not
// running at the end).
#pragma once

namespace tlstap {

// `argv[1]` is "--supervise", `argv[2]` the control fd, and the rest the recorder's arguments
// (without --connection-fd, which the supervisor adds).
int runSupervisor(int argc, char** argv);

}  // namespace tlstap
