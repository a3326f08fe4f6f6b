#!/usr/bin/env bash
# Backends that fail, and a client that aborts: a backend port nobody listens on (the client
# gets a fatal alert), a backend that resets the connection after the first bytes (the client's
# connection is reset too), a client that resets mid-stream. One log line each; the front stays
# up and the next connection to a good backend works; the capture shows who reset.
. "$(dirname "$0")/lib.sh"
require_tools python3 openssl tshark

start_front_with_backends 80 refusing reset echo
REFUSING_PORT=${BACKEND_PORTS[refusing]}  # nothing listens there
P_REFUSED=${FRONT_PORTS[refusing]}
P_RESET=${FRONT_PORTS[reset]}
P_ECHO=${FRONT_PORTS[echo]}

# Refused backend: the client gets a fatal internal_error alert instead of a handshake.
timeout 30 openssl s_client -connect "127.0.0.1:$P_REFUSED" -servername www.example.com < /dev/null \
  > "$WORK/refused.out" 2>&1 && fail "handshake succeeded although the backend is down"
grep -q "alert number 80" "$WORK/refused.out" ||
  fail "no internal_error alert for a refused backend: $(grep -i alert "$WORK/refused.out")"
expect_one_line "$WORK/front.log" \
  "client 127\.0\.0\.1:[0-9]+: cannot connect to backend 127\.0\.0\.1:$REFUSING_PORT: Connection refused" \
  "refused backend"

# Resetting backend, then a client that resets: each side's abort reaches the other side.
timeout 120 python3 - "$P_RESET" "$P_ECHO" "$WORK/site.pem" "$WORK/aborts" << 'PYTHON' ||
import hashlib, socket, ssl, struct, sys, time
reset_port, echo_port, ca, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=ca)
expected = []

def expect(port, up, down, close):
    sha = lambda data: hashlib.sha256(data).hexdigest()
    expected.append("%d %d %s %d %s %s" % (port, len(up), sha(up), len(down), sha(down), close))

def connect(port):
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                               server_hostname="www.example.com")

tls = connect(reset_port)
backend_reset_port = tls.getsockname()[1]
tls.sendall(b"hello")
tls.settimeout(10)
# Read the TCP stream under TLS: a reset shows as ECONNRESET, a clean close as EOF (the TLS layer
# would report both as an EOF).
try:
    while socket.socket.recv(tls, 65536):
        pass
    raise AssertionError("the front closed the client in order after the backend's reset")
except ConnectionResetError:
    pass
tls.close()
expect(backend_reset_port, b"hello", b"", "reset-server")

tls = connect(echo_port)
client_reset_port = tls.getsockname()[1]
tls.sendall(b"ping\n")
assert tls.recv(100) == b"ping\n"
tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
tls.close()
expect(client_reset_port, b"ping\n", b"ping\n", "reset-client")

time.sleep(0.3)
tls = connect(echo_port)
good_port = tls.getsockname()[1]
tls.sendall(b"still working\n")
assert tls.recv(100) == b"still working\n"
tls.close()
expect(good_port, b"still working\n", b"still working\n", "fin")
open(out, "w").write("%d %d\n" % (backend_reset_port, client_reset_port))
open(out + ".expected", "w").write("\n".join(expected) + "\n")
PYTHON
  fail "abort scenarios failed"

read -r BACKEND_RESET_CLIENT CLIENT_RESET_CLIENT < "$WORK/aborts"
sleep 0.3
expect_one_line "$WORK/front.log" \
  "client 127\.0\.0\.1:$BACKEND_RESET_CLIENT: backend reset the connection" "backend reset"
expect_one_line "$WORK/front.log" \
  "client 127\.0\.0\.1:$CLIENT_RESET_CLIENT: .*connection reset by client" "client reset"

# Each failure above is logged once, as expected; no error or warning besides.
expect_quiet_front "$WORK/front.log" ': (error|warning):'

# The capture: the two aborted connections end in a RST from the side that reset, the good one
# in FINs, each with exactly the bytes relayed; the refused one is not there at all.
stop_front
one_capture "$WORK/captures" "$WORK/failures.pcap"
expect_clean_capture "$WORK/failures.pcap" "$WORK/aborts.expected"

pass
