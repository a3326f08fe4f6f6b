#!/usr/bin/env bash
# --max-connections and --idle-timeout: with 3 idle connections open, a 4th client waits in the
# backlog (no handshake) until the idle timeout closes the others (one log line each), and is
# then served. SIGTERM with a connection open: exit 0, and that connection is in the capture,
# closed.
. "$(dirname "$0")/lib.sh"
require_tools python3

start_front_with_backends 443 echo -- --max-connections 3 --idle-timeout 2
FRONT_PORT=${FRONT_PORTS[echo]}

timeout 120 python3 - "$FRONT_PORT" "$WORK/site.pem" "$WORK/idle-ports" << 'PYTHON' || fail "limit scenario failed"
import socket, ssl, sys, time
port, ca, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=ca)

def connect(timeout):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="www.example.com")

idle = [connect(5) for _ in range(3)]
for tls in idle:
    tls.sendall(b"x")
    assert tls.recv(1) == b"x"
opened = time.monotonic()
fourth = connect(15)  # waits in the backlog until the idle ones are closed
waited = time.monotonic() - opened
if waited < 1.5:
    raise AssertionError("4th connection served after %.1f s, with 3 of 3 open" % waited)
fourth.sendall(b"served\n")
assert fourth.recv(100) == b"served\n"
for tls in idle:
    tls.settimeout(5)
    try:
        rest = tls.recv(100)  # the idle timeout closed it
    except (ssl.SSLError, ConnectionResetError):
        rest = b""
    if rest:
        raise AssertionError("idle connection still delivering data: %r" % rest)
open(out, "w").write("\n".join(str(tls.getsockname()[1]) for tls in idle) + "\n")
print("4th connection served after %.1f s" % waited)
PYTHON

while read -r port; do
  expect_one_line "$WORK/front.log" "client 127\.0\.0\.1:$port: idle for 2 s, closing" \
    "idle connection $port"
done < "$WORK/idle-ports"
expect_one_line "$WORK/front.log" "warning: --max-connections reached" "limit reached"
front_alive "$WORK/front.log"

# A connection still open at SIGTERM.
spawn "$WORK/holder.log" timeout 60 python3 -c '
import socket, ssl, sys, time
context = ssl.create_default_context(cafile=sys.argv[2])
tls = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))),
                          server_hostname="www.example.com")
tls.sendall(b"open at shutdown\n")
assert tls.recv(100) == b"open at shutdown\n"
open(sys.argv[3], "w").write(str(tls.getsockname()[1]))
tls.settimeout(30)
while tls.recv(100):
    pass
' "$FRONT_PORT" "$WORK/site.pem" "$WORK/holder.port"
wait_for 10 "the open connection" test -s "$WORK/holder.port"
stop_front
one_capture "$WORK/captures" "$WORK/limits.pcap"
holder=$(cat "$WORK/holder.port")
stream=$(stream_of_client_port "$WORK/limits.pcap" "$holder")
[[ -n $stream ]] || fail "the connection open at SIGTERM is not in the capture"
follow_stream "$WORK/limits.pcap" "$stream" "$WORK/holder"
[[ $(cat "$WORK/holder.client") == "open at shutdown" ]] ||
  fail "the connection open at SIGTERM: recorded '$(cat "$WORK/holder.client")'"
fins=$(tshark -r "$WORK/limits.pcap" -n -Y "tcp.stream == $stream && tcp.flags.fin == 1" \
  2> /dev/null | wc -l)
[[ $fins == 2 ]] || fail "the connection open at SIGTERM has $fins FINs in the capture, not 2"

pass
