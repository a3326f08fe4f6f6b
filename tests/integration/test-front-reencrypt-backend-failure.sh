#!/usr/bin/env bash
# Re-encrypting to backends that fail: a port nobody listens on (internal_error alert), a backend
# that closes during the TLS handshake and one that does not speak TLS (handshake_failure), one
# that never answers (internal_error after --handshake-timeout), and a TLS backend that resets
# the connection once relaying (the client's connection is reset too). One log line each, naming
# the backend and the reason; nothing hangs; the front stays up and a good backend still works.
. "$(dirname "$0")/lib.sh"
require_tools python3 openssl

make_cert site www.example.com
make_ca backend-ca "tlstap test backend CA"
make_signed_cert backend backend-ca www.example.com
declare -A BACKEND FRONT_PORT
relays=()
for kind in refusing hangup plain silent reset echo; do
  BACKEND[$kind]=$(free_port)
  FRONT_PORT[$kind]=$(free_port)
  relays+=(-p "127.0.0.1,${FRONT_PORT[$kind]},443,${BACKEND[$kind]}")
done
start_backend hangup "${BACKEND[hangup]}"
start_backend echo "${BACKEND[plain]}"  # plaintext: it echoes the ClientHello back
start_backend silent "${BACKEND[silent]}"
start_backend reset "${BACKEND[reset]}" backend
start_backend echo "${BACKEND[echo]}" backend
start_front "$WORK/front.log" "${FRONT_PORT[refusing]}" --connect 127.0.0.1 \
  --servercert "www.example.com:$WORK/site-bundle.pem" --backend-ca "$WORK/backend-ca.pem" \
  --handshake-timeout 2 -o "$WORK/captures" "${relays[@]}"
for kind in "${!FRONT_PORT[@]}"; do wait_port "${FRONT_PORT[$kind]}"; done

# attempt KIND: one client through the front to backend KIND, sending "ping\n" after the
# handshake; prints the outcome: "alert REASON", the echo, or, reading the TCP stream under TLS
# to tell a reset (ECONNRESET) from an orderly close (the TLS layer reports both as an EOF),
# "reset" or "eof".
attempt() {
  timeout 20 python3 - "${FRONT_PORT[$1]}" "$WORK/site.pem" "${2:-}" << 'PYTHON'
import socket, ssl, sys
port, ca, raw = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "raw"
context = ssl.create_default_context(cafile=ca)
try:
    tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                              server_hostname="www.example.com")
    tls.sendall(b"ping\n")
    if raw:
        while socket.socket.recv(tls, 65536):
            pass
        print("eof")
    else:
        data = tls.recv(100)
        print(data.decode().strip() if data else "eof")
except ssl.SSLError as e:
    print("alert", e.reason)
except ConnectionResetError:
    print("reset")
PYTHON
}

expect_outcome() {
  local kind=$1 expected=$2 got start=$SECONDS
  got=$(attempt "$kind" "${3:-}") || fail "$kind: the client failed or hung: $got"
  [[ $got == "$expected" ]] || fail "$kind backend: the client saw '$got', expected '$expected'"
  note "$kind backend: '$got' after $((SECONDS - start)) s"
}

expect_outcome refusing "alert TLSV1_ALERT_INTERNAL_ERROR"
expect_outcome hangup "alert SSLV3_ALERT_HANDSHAKE_FAILURE"
expect_outcome plain "alert SSLV3_ALERT_HANDSHAKE_FAILURE"
expect_outcome silent "alert TLSV1_ALERT_INTERNAL_ERROR"
expect_outcome reset "reset" raw
expect_outcome echo "ping"

CLIENT="client 127\.0\.0\.1:[0-9]+"
expect_one_line "$WORK/front.log" \
  "$CLIENT: cannot connect to backend 127\.0\.0\.1:${BACKEND[refusing]}: Connection refused" \
  "refused backend"
expect_one_line "$WORK/front.log" \
  "$CLIENT: backend 127\.0\.0\.1:${BACKEND[hangup]} \(www\.example\.com\): closed the connection during the TLS handshake" \
  "backend closing in the handshake"
expect_one_line "$WORK/front.log" \
  "$CLIENT: backend 127\.0\.0\.1:${BACKEND[plain]} \(www\.example\.com\): TLS handshake: " \
  "plaintext backend"
expect_one_line "$WORK/front.log" \
  "$CLIENT: handshake timeout after 2 s \(in the TLS handshake with the backend\)" \
  "silent backend"
expect_one_line "$WORK/front.log" "$CLIENT: TLS read: connection reset by backend" \
  "backend reset"
[[ $(count_lines "$WORK/front.log" ': client') == 5 ]] ||
  fail "expected five lines about clients: $(grep ': client' "$WORK/front.log")"
[[ $(count_lines "$WORK/front.log" ': (error|warning):') == 0 ]] ||
  fail "errors logged: $(grep -E ': (error|warning):' "$WORK/front.log")"
front_alive "$WORK/front.log"
stop_front

pass
