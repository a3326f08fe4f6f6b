#!/usr/bin/env bash
# The embedded recorder runs under a supervisor (tlstap-front -> tlstap-recorder --supervise ->
# tlstap-recorder --connection-fd 3). A kill -9 of the recorder in the middle of a connection:
# the supervisor starts a new recorder (a new pid, its child) that writes a new, complete pcap
# file; the front keeps relaying, on the open connection and on new ones; what was recorded
# before the kill is in the first file; and every byte relayed after it is either recorded in
# the new file or counted as not recorded in the front's log ("Nothing lost" in DESIGN.md).
# SIGTERM then ends the front, and with it the supervisor and the recorder.
. "$(dirname "$0")/lib.sh"
require_tools python3 tshark pgrep

start_front_with_backends 80 echo -- --autoflush 1 -v
PORT=${FRONT_PORTS[echo]}

# --- the process tree -------------------------------------------------------------------------
children_of() {
  pgrep -P "$1" || true
}
supervisor=$(children_of "$FRONT_PID")
[[ $supervisor =~ ^[0-9]+$ ]] || fail "the front has not exactly one child: '$supervisor'"
grep -qz -- '--supervise' "/proc/$supervisor/cmdline" ||
  fail "the front's child is not the supervisor: $(tr '\0' ' ' < "/proc/$supervisor/cmdline")"
wait_for 10 "the first recorder" bash -c "[[ \$(pgrep -P $supervisor | wc -l) == 1 ]]"
first=$(children_of "$supervisor")
grep -qz -- '--connection-fd' "/proc/$first/cmdline" ||
  fail "the supervisor's child is not a recorder: $(tr '\0' ' ' < "/proc/$first/cmdline")"
# Their own process group: a terminal's Ctrl-C reaches only the front.
front_group=$(ps -o pgid= -p "$FRONT_PID" | tr -d ' ')
for pid in "$supervisor" "$first"; do
  [[ $(ps -o pgid= -p "$pid" | tr -d ' ') != "$front_group" ]] ||
    fail "pid $pid is in the front's process group"
done

# --- traffic across the kill ------------------------------------------------------------------
# Connection A sends a chunk before the kill and one after it; connection B is opened after the
# new recorder is up. Each chunk must come back whole from the echo backend.
timeout 60 python3 - "$PORT" "$WORK/site.pem" "$WORK" << 'PYTHON' > "$WORK/client.out" 2>&1 &
import os, socket, ssl, sys, time
port, ca, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=ca)

def connect():
    tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                              server_hostname="www.example.com")
    return tls, tls.getsockname()[1]

def echo(tls, data):
    tls.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        chunk = tls.recv(65536)
        assert chunk, "EOF from the front after %d of %d bytes" % (len(got), len(data))
        got += chunk
    assert bytes(got) == data, "the echo differs"

def wait_for(name):
    deadline = time.time() + 30
    while not os.path.exists(os.path.join(work, name)):
        assert time.time() < deadline, "no " + name
        time.sleep(0.05)

a, a_port = connect()
echo(a, b"before-the-kill:" + b"a" * 20000)
open(os.path.join(work, "a.port"), "w").write(str(a_port))
wait_for("killed")
echo(a, b"after-the-kill-on-a:" + b"b" * 20000)
a.close()
b, b_port = connect()
echo(b, b"after-the-restart-on-b:" + b"c" * 20000)
b.close()
open(os.path.join(work, "b.port"), "w").write(str(b_port))
print("client done")
PYTHON
CLIENT_PID=$!
wait_for 30 "the first echo" test -f "$WORK/a.port"
sleep 1.5  # --autoflush 1: what the first recorder got is on disk before it dies

kill -KILL "$first"
killed_at=$SECONDS
wait_for 10 "a new recorder" bash -c "p=\$(pgrep -P $supervisor); [[ -n \$p && \$p != $first ]]"
second=$(children_of "$supervisor")
note "recorder $first killed; recorder $second started by supervisor $supervisor within" \
  "$((SECONDS - killed_at)) s"
touch "$WORK/killed"

wait "$CLIENT_PID" || fail "the client failed: $(cat "$WORK/client.out")"
grep -q "client done" "$WORK/client.out" || fail "client: $(cat "$WORK/client.out")"
front_alive "$WORK/front.log"
grep -q "was killed by signal 9" "$WORK/front.log" || fail "the supervisor did not log the kill"
grep -q "started tlstap-recorder again (pid $second)" "$WORK/front.log" ||
  fail "the supervisor did not log the restart"
[[ $(children_of "$supervisor") == "$second" ]] || fail "recorder $second is not running"

sleep 1.5  # one autoflush, so a new recorder's file holds what it got so far
stop_front
# The supervisor and its recorder ended with the front: the recorder after finishing its file.
for pid in "$supervisor" "$second"; do
  wait_for 20 "pid $pid to exit" bash -c "! kill -0 $pid 2> /dev/null"
done

# --- what was recorded ------------------------------------------------------------------------
mapfile -t files < <(find "$WORK/captures" -name '*.pcap' -type f | sort)
((${#files[@]} == 2)) || fail "expected a pcap file from each recorder, found ${#files[*]}"
older=${files[0]}
newer=${files[1]}
if [[ $(stat -c %Y "$older") -gt $(stat -c %Y "$newer") ]]; then
  older=${files[1]}
  newer=${files[0]}
fi
# The new recorder's file is complete (tshark reads it to the end without an error).
tshark -r "$newer" -q > /dev/null 2> "$WORK/tshark-newer.err" ||
  fail "the new recorder's file is not complete: $(cat "$WORK/tshark-newer.err")"

payload_in() {  # payload_in PCAP CLIENT-PORT TEXT: TEXT is in that client's stream
  local hex
  hex=$(printf '%s' "$3" | od -An -tx1 | tr -d ' \n')
  tshark -r "$1" -n -Y "tcp.port == $2" -T fields -e tcp.payload 2> /dev/null | tr -d ':\n' |
    grep -q "$hex"
}
not_recorded() {  # NOT_RECORDED: the count in the front's "N bytes not recorded" line for the
  # flow from CLIENT-PORT; false without one
  NOT_RECORDED=$(grep -E "flow [^ ]*:$1 -> .*: [0-9]+ bytes not recorded" "$WORK/front.log" |
    grep -oE '[0-9]+ bytes not recorded' | grep -oE '^[0-9]+') || return 1
}

a_port=$(cat "$WORK/a.port")
b_port=$(cat "$WORK/b.port")
# Before the kill: in the first recorder's file (cut short by the kill, read as far as it goes).
payload_in "$older" "$a_port" "before-the-kill:" ||
  fail "the bytes sent before the kill are not in the first recorder's file"

# After the kill, on A and on B: recorded by the new recorder, or counted as not recorded (at
# least the chunk each way: 20 + 20000 bytes on A, 23 + 20000 on B).
for check in "$a_port after-the-kill-on-a: 20020" "$b_port after-the-restart-on-b: 20023"; do
  read -r port text size <<< "$check"
  if payload_in "$newer" "$port" "$text"; then
    note "'$text' (client port $port) is recorded in the new recorder's file"
  elif not_recorded "$port"; then
    ((NOT_RECORDED >= 2 * size)) ||
      fail "client port $port: $NOT_RECORDED bytes counted as not recorded, relayed $((2 * size))"
    note "'$text' (client port $port) is not recorded; the front counted $NOT_RECORDED bytes"
  else
    fail "'$text' (client port $port) is neither recorded nor counted as not recorded"
  fi
done

pass
