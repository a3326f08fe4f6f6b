#!/usr/bin/env bash
# The recorder's unix socket (--listen unix:PATH) started as root: the socket file belongs to
# tlstap-rec with group tlstap, mode 0660, so another user (nobody) cannot even connect; and a
# peer whose uid is not allowed is refused by SO_PEERCRED before any RPC message is read, even
# when the file's permissions would let it in. The allowed user (tlstap) and root connect, and a
# root-started front records through it.
. "$(dirname "$0")/lib.sh"
require_tools python3 runuser openssl

if [[ $(id -u) != 0 ]]; then
  note "skipped: needs root (it starts the recorder as root and connects as other users)"
  pass
  exit 0
fi
for user in tlstap tlstap-rec nobody; do
  id -u "$user" > /dev/null 2>&1 || fail "user $user is missing (tests/install-deps.sh)"
done

# Other users must reach the socket's directory to be refused by the socket itself.
chmod 711 "$WORK"
mkdir -m 755 "$WORK/run"
socket=$WORK/run/recorder.sock
start_recorder "$WORK/recorder.log" --listen "unix:$socket" -o "$WORK/captures" -v
wait_for 10 "the recorder's lock-down" grep -q "running as user tlstap-rec" "$WORK/recorder.log"

[[ $(stat -c '%U:%G:%a' "$socket") == tlstap-rec:tlstap:660 ]] ||
  fail "socket owner and mode are $(stat -c '%U:%G:%a' "$socket"), not tlstap-rec:tlstap:660"

# connect_as USER: connects, writes a few bytes, reads until the recorder closes or 2 s pass.
# Prints "refused-by-permissions", "closed" (the recorder hung up) or "open".
connect_as() {
  runuser -u "$1" -- python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("refused-by-permissions")
    sys.exit(0)
s.settimeout(2)
try:
    s.sendall(b"\0" * 8)
    print("closed" if s.recv(1) == b"" else "open")
except socket.timeout:
    print("open")
except (BrokenPipeError, ConnectionResetError):
    print("closed")' "$socket"
}

[[ $(connect_as nobody) == refused-by-permissions ]] ||
  fail "nobody could connect to the recorder's socket"

# Were the file open to everyone, SO_PEERCRED still refuses nobody, before reading anything.
chmod 666 "$socket"
[[ $(connect_as nobody) == closed ]] || fail "nobody's connection was not closed by the recorder"
wait_for 5 "the refusal log line" grep -qE "refused a front .*uid $(id -u nobody)\)" \
  "$WORK/recorder.log"
grep -qE "front connected: .*uid $(id -u nobody)\)" "$WORK/recorder.log" &&
  fail "the recorder served nobody's connection"
chmod 660 "$socket"

# The allowed user: accepted (the RPC system then waits for a real front's messages).
result=$(connect_as tlstap)
wait_for 5 "tlstap's connection" grep -qE "front connected: .*uid $(id -u tlstap)\)" \
  "$WORK/recorder.log"
note "nobody: refused by permissions, then by SO_PEERCRED; tlstap: accepted ($result)"

# A root-started front (dropping to tlstap) records through the socket.
make_cert site www.example.com
BACKEND_PORT=$(free_port)
FRONT_PORT=$(free_port)
start_backend echo "$BACKEND_PORT"
start_front "$WORK/front.log" "$FRONT_PORT" --terminate --connect 127.0.0.1 \
  --servercert "www.example.com:$WORK/site-bundle.pem" -p "$FRONT_PORT,80,$BACKEND_PORT" \
  --recorder "unix:$socket"
reply=$(timeout 20 python3 -c '
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as raw:
    with context.wrap_socket(raw, server_hostname="www.example.com") as tls:
        line = b"hello through the sandbox\n"
        tls.sendall(line)
        got = b""
        while len(got) < len(line):
            chunk = tls.recv(100)
            if not chunk:
                break
            got += chunk
        print(got.decode().strip())' "$FRONT_PORT" "$WORK/site.pem" || true)
[[ $reply == "hello through the sandbox" ]] || fail "echo through the front: '$reply'"
stop_front
stop_recorder
grep -qa "hello through the sandbox" "$WORK"/captures/*.pcap ||
  fail "the echoed line is not in the capture"
pass
