#!/usr/bin/env bash
# Re-encryption resumes TLS sessions with the backend: the first connection to a backend makes a
# full handshake, the next ones resume with the ticket the backend sent (the front's log says
# "(resumed)" on the backend's line), against nginx (TLS 1.2 as configured here) and a Python
# echo backend (TLS 1.3, tickets after the handshake), and every response is still right. A
# backend that restarted, so that the ticket is refused, gets a full handshake with its
# certificate checked, and a backend whose certificate the front does not trust is still refused.
. "$(dirname "$0")/lib.sh"
require_tools curl nginx openssl python3

make_cert site www.example.com
make_ca backend-ca "tlstap test backend CA"
make_signed_cert backend backend-ca www.example.com
make_cert stranger www.example.com
mkdir -p "$WORK/www"
echo "hello from nginx" > "$WORK/www/index.html"

NGINX_PORT=$(free_port)
ECHO_PORT=$(free_port)
FRONT_NGINX=$(free_port)
FRONT_ECHO=$(free_port)
start_nginx "$NGINX_PORT" "$WORK/www" backend
start_backend echo "$ECHO_PORT" backend
ECHO_PID=$BACKEND_PID
start_front "$WORK/front.log" "$FRONT_NGINX" --connect 127.0.0.1 \
  --servercert "www.example.com:$WORK/site-bundle.pem" --backend-ca "$WORK/backend-ca.pem" \
  -p "$FRONT_NGINX,80,$NGINX_PORT" -p "$FRONT_ECHO,80,$ECHO_PORT" -o "$WORK/captures" -v
wait_port "$FRONT_ECHO"

# echo_once PORT: one line through the echo backend; prints what came back.
echo_once() {
  timeout 20 python3 -c "
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
with context.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[2]))),
                         server_hostname='www.example.com') as s:
    s.sendall(b'ping\n')
    print(s.recv(100).decode().strip())" "$WORK/site.pem" "$1" || true
}

# backend_lines PORT PATTERN: how many backend handshakes with 127.0.0.1:PORT the log shows.
backend_lines() {
  count_lines "$WORK/front.log" "backend 127\.0\.0\.1:$1 \(www\.example\.com\): TLS1.*$2"
}

for i in 1 2 3; do
  got=$(curl -sS --max-time 20 --cacert "$WORK/site.pem" \
    --resolve "www.example.com:$FRONT_NGINX:127.0.0.1" "https://www.example.com:$FRONT_NGINX/")
  [[ $got == "hello from nginx" ]] || fail "request $i through nginx answered '$got'"
  got=$(echo_once "$FRONT_ECHO")
  [[ $got == ping ]] || fail "echo $i answered '$got'"
done
for port in "$NGINX_PORT" "$ECHO_PORT"; do
  [[ $(backend_lines "$port" "") == 3 ]] || fail "backend $port: not 3 handshakes in the log"
  resumed=$(backend_lines "$port" "\(resumed\)")
  [[ $resumed == 2 ]] || fail "backend $port: expected 2 resumed handshakes, the log has $resumed"
done
[[ $(count_lines "$WORK/front.log" "backend 127\.0\.0\.1:$ECHO_PORT .*: TLS1\.3 ") == 3 ]] ||
  fail "the echo backend did not speak TLS 1.3"

# The echo backend restarts (new ticket keys): the front's ticket is refused, the handshake is
# a full one, and the connection works.
stop_pids 5 "$ECHO_PID"
start_backend echo "$ECHO_PORT" backend
[[ $(echo_once "$FRONT_ECHO") == ping ]] || fail "echo after the backend's restart failed"
[[ $(backend_lines "$ECHO_PORT" "") == 4 && $(backend_lines "$ECHO_PORT" "\(resumed\)") == 2 ]] ||
  fail "after the restart the handshake should be a full one"

# A stranger on the backend's port with a certificate the front does not trust: a ticket from
# the real backend is in the cache, but no handshake with the stranger can resume it, so its
# certificate is checked and refused.
[[ $(echo_once "$FRONT_ECHO") == ping ]] || fail "echo before the stranger failed"
stop_pids 5 "$BACKEND_PID"
start_backend echo "$ECHO_PORT" stranger
[[ -z $(echo_once "$FRONT_ECHO") ]] || fail "a connection through an untrusted backend worked"
expect_one_line "$WORK/front.log" "certificate verification failed" "untrusted backend"

front_alive "$WORK/front.log"
stop_front
pass
