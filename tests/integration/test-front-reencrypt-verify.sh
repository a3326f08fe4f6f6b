#!/usr/bin/env bash
# The backend's certificate is checked when re-encrypting. A backend whose certificate comes from
# a CA the front does not trust: the client gets a handshake_failure alert and the front logs one
# line naming the backend and the verification failure. With --backend-ca CA the same backend
# works; a certificate for another name still fails (name mismatch); with --insecure it works,
# after one warning at start-up. A bad --backend-ca file stops the front at start-up (exit 2).
. "$(dirname "$0")/lib.sh"
require_tools openssl python3

make_cert site www.example.com
make_ca backend-ca "tlstap test backend CA"
make_signed_cert backend backend-ca www.example.com
make_signed_cert othername backend-ca other.example.com
BACKEND=$(free_port)
OTHER=$(free_port)
start_backend echo "$BACKEND" backend
start_backend echo "$OTHER" othername

# exchange PORT OUT: one TLS connection through the front on PORT sending "ping\n"; OUT gets what
# came back, or "alert N" for a fatal alert, or the error.
exchange() {
  timeout 20 python3 - "$1" "$WORK/site.pem" > "$2" 2>&1 << 'PYTHON' || true
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
context = ssl.create_default_context(cafile=ca)
try:
    tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                              server_hostname="www.example.com")
    tls.sendall(b"ping\n")
    print(tls.recv(100).decode().strip())
except ssl.SSLError as e:
    print("alert", e.reason)
PYTHON
}

# start_reencrypting LOG PORT ARGS...: a front on PORT relaying to both backends (PORT+1 to
# the one whose certificate names another host) with ARGS.
FRONT_ARGS=(--connect 127.0.0.1 --servercert "www.example.com:$WORK/site-bundle.pem"
  -o "$WORK/captures")

# 1. Only the system trust store: the test CA is unknown.
P1=$(free_port)
start_front "$WORK/front-system.log" "$P1" "${FRONT_ARGS[@]}" -p "127.0.0.1,$P1,443,$BACKEND"
exchange "$P1" "$WORK/system.out"
grep -q "alert SSLV3_ALERT_HANDSHAKE_FAILURE" "$WORK/system.out" ||
  fail "untrusted backend: the client did not get handshake_failure: $(cat "$WORK/system.out")"
expect_one_line "$WORK/front-system.log" \
  "info: client 127\.0\.0\.1:[0-9]+: backend 127\.0\.0\.1:$BACKEND \(www\.example\.com\): TLS handshake: certificate verification failed: The certificate is NOT trusted\. The certificate issuer is unknown\.$" \
  "untrusted backend"
[[ $(count_lines "$WORK/front-system.log" ': client') == 1 ]] ||
  fail "more than one line about the refused client: $(grep ': client' "$WORK/front-system.log")"
front_alive "$WORK/front-system.log"
stop_front

# 2. --backend-ca: trusted, and the name is checked.
P2=$(free_port)
P2B=$(free_port)
start_front "$WORK/front-ca.log" "$P2" "${FRONT_ARGS[@]}" --backend-ca "$WORK/backend-ca.pem" \
  -p "127.0.0.1,$P2,443,$BACKEND" -p "127.0.0.1,$P2B,443,$OTHER"
wait_port "$P2B"
exchange "$P2" "$WORK/ca.out"
[[ $(cat "$WORK/ca.out") == ping ]] || fail "with --backend-ca: $(cat "$WORK/ca.out")"
exchange "$P2B" "$WORK/mismatch.out"
grep -q "alert SSLV3_ALERT_HANDSHAKE_FAILURE" "$WORK/mismatch.out" ||
  fail "backend certificate for another name: $(cat "$WORK/mismatch.out")"
expect_one_line "$WORK/front-ca.log" \
  "backend 127\.0\.0\.1:$OTHER \(www\.example\.com\): TLS handshake: certificate verification failed: .*The name in the certificate does not match the expected\.$" \
  "name mismatch"
grep -q warning "$WORK/front-ca.log" && fail "warnings with --backend-ca: $(grep warning \
  "$WORK/front-ca.log")"
stop_front

# 3. --insecure: anything goes, and the start-up says so once.
P3=$(free_port)
P3B=$(free_port)
start_front "$WORK/front-insecure.log" "$P3" "${FRONT_ARGS[@]}" --insecure \
  -p "127.0.0.1,$P3,443,$BACKEND" -p "127.0.0.1,$P3B,443,$OTHER"
wait_port "$P3B"
exchange "$P3" "$WORK/insecure.out"
[[ $(cat "$WORK/insecure.out") == ping ]] || fail "with --insecure: $(cat "$WORK/insecure.out")"
exchange "$P3B" "$WORK/insecure-other.out"
[[ $(cat "$WORK/insecure-other.out") == ping ]] ||
  fail "with --insecure, other name: $(cat "$WORK/insecure-other.out")"
expect_one_line "$WORK/front-insecure.log" "warning: --insecure: backend certificates are not verified" \
  "--insecure warning"
[[ $(count_lines "$WORK/front-insecure.log" 'warning') == 1 ]] ||
  fail "more than one warning: $(grep warning "$WORK/front-insecure.log")"
stop_front

# 4. Bad --backend-ca files: one line, exit 2.
run_front_expecting_exit2 "missing --backend-ca" \
  "^tlstap-front: --backend-ca: .*$WORK/none\.pem.: not found$" \
  "${FRONT_ARGS[@]}" -p "127.0.0.1,$(free_port),443,$BACKEND" --backend-ca "$WORK/none.pem"
echo "not a certificate" > "$WORK/junk.pem"
run_front_expecting_exit2 "--backend-ca without a certificate" \
  "^tlstap-front: --backend-ca: '$WORK/junk\.pem': no PEM certificate in it" \
  "${FRONT_ARGS[@]}" -p "127.0.0.1,$(free_port),443,$BACKEND" --backend-ca "$WORK/junk.pem"
run_front_expecting_exit2 "--backend-ca with a key only" \
  "^tlstap-front: --backend-ca: '$WORK/backend\.key': no PEM certificate in it" \
  "${FRONT_ARGS[@]}" -p "127.0.0.1,$(free_port),443,$BACKEND" --backend-ca "$WORK/backend.key"

pass
