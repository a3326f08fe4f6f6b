#!/usr/bin/env bash
# HTTPS terminated by tlstap-front, relayed as HTTP/1.1 to nginx: curl gets the right answers
# (GET, POST, keep-alive, IPv6), a TLS session resumes with its ticket, SIGTERM ends the front
# with status 0, and the capture holds each request and response, dissected by tshark as HTTP,
# with exactly the bytes that were relayed.
. "$(dirname "$0")/lib.sh"
require_tools curl nginx openssl gnutls-cli tshark python3

make_cert site www.example.com
mkdir -p "$WORK/www"
echo "hello from the backend" > "$WORK/www/index.html"
head -c 300000 /dev/urandom > "$WORK/www/big.bin"

BACKEND_PORT=$(free_port)
FRONT_PORT=$(free_port)
start_nginx "$BACKEND_PORT" "$WORK/www"
start_front "$WORK/front.log" "$FRONT_PORT" --terminate --connect 127.0.0.1 \
  --nosni www.example.com --servercert "www.example.com:$WORK/site.p12:file:$WORK/site.pw" \
  -p "$FRONT_PORT,80,$BACKEND_PORT" -o "$WORK/captures" --autoflush 1 -v

URL=https://www.example.com:$FRONT_PORT
CURL=(curl -sS --max-time 20 --cacert "$WORK/site.pem"
  --resolve "www.example.com:$FRONT_PORT:127.0.0.1")

# GET, over HTTP/1.1 (ALPN http/1.1 although curl offers h2 first).
got=$("${CURL[@]}" -w '|%{http_version}|%{http_code}' "$URL/index.html") ||
  fail "curl GET through the front failed"
[[ $got == "hello from the backend"$'\n''|1.1|200' ]] || fail "GET answered '$got'"

# Two requests on one connection, the second a 300 kB download.
"${CURL[@]}" -o "$WORK/index.out" "$URL/index.html" -o "$WORK/big.out" "$URL/big.bin" \
  2> "$WORK/curl-keepalive.err" || fail "keep-alive GETs failed: $(cat "$WORK/curl-keepalive.err")"
cmp -s "$WORK/big.out" "$WORK/www/big.bin" || fail "300 kB download differs from the file"
cmp -s "$WORK/index.out" "$WORK/www/index.html" || fail "index.html differs"

# A POST with a body (under 1 KiB, so curl sends it at once instead of waiting for a
# "100 Continue" that nginx never sends for a static file): nginx answers 405.
head -c 1000 "$WORK/www/big.bin" > "$WORK/post.bin"
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' --data-binary @"$WORK/post.bin" \
  "$URL/index.html") || fail "POST failed"
[[ $code == 405 ]] || fail "POST answered $code, nginx answers 405 to a POST on a static file"

# IPv6 clients reach the default listener too.
if ip -6 addr show lo 2> /dev/null | grep -q '::1'; then
  got=$(curl -sS --max-time 20 --cacert "$WORK/site.pem" \
    --resolve "www.example.com:$FRONT_PORT:[::1]" "$URL/index.html") ||
    fail "curl over IPv6 failed"
  [[ $got == "hello from the backend" ]] || fail "IPv6 GET answered '$got'"
fi

# One exact request whose raw bytes we keep, to compare with the capture.
timeout 120 python3 - "$FRONT_PORT" "$WORK/site.pem" "$WORK/exact" << 'PYTHON' ||
import socket, ssl, sys
port, ca, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=ca)
context.set_alpn_protocols(["http/1.1"])
tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                          server_hostname="www.example.com")
local_port = tls.getsockname()[1]
request = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n"
tls.sendall(request)
response = bytearray()
while True:
    data = tls.recv(65536)
    if not data:
        break
    response += data
tls.close()
open(out + ".port", "w").write(str(local_port))
open(out + ".request", "wb").write(request)
open(out + ".response", "wb").write(response)
assert response.startswith(b"HTTP/1.1 200 OK"), response[:40]
assert response.endswith(b"hello from the backend\n"), response[-40:]
PYTHON
  fail "exact HTTP exchange failed"

# Session resumption with a ticket.
timeout 30 gnutls-cli --resume --x509cafile "$WORK/site.pem" -p "$FRONT_PORT" 127.0.0.1 \
  --sni-hostname www.example.com --verify-hostname www.example.com < /dev/null \
  > "$WORK/resume.out" 2>&1 || fail "gnutls-cli --resume failed: $(tail -n 5 "$WORK/resume.out")"
grep -q "This is a resumed session" "$WORK/resume.out" ||
  fail "the second connection was not resumed: $(grep -i resum "$WORK/resume.out")"

front_alive "$WORK/front.log"
stop_front
[[ $(count_lines "$WORK/front.log" ': (error|warning):') == 0 ]] ||
  fail "errors in the front's log: $(grep -E ': (error|warning):' "$WORK/front.log")"

# --- what was recorded (by the embedded recorder, in -o captures) ---
one_capture "$WORK/captures" "$WORK/http.pcap"
problems=$(tcp_problem_frames "$WORK/http.pcap")
[[ $problems == 0 ]] || fail "$problems frames with tcp.analysis.flags in the capture"

# Every request and response, dissected as HTTP (IPv6 GET only where ::1 exists).
expected_requests="GET GET GET POST GET"
expected_codes="200 200 200 405 200"
if ip -6 addr show lo 2> /dev/null | grep -q '::1'; then
  expected_requests+=" GET"
  expected_codes+=" 200"
fi
sorted_words() {
  tr -s ' \n' '\n' | grep -v '^$' | sort | tr '\n' ' '
}
requests=$(tshark -r "$WORK/http.pcap" -n -Y http.request -T fields -e http.request.method \
  2> /dev/null | sorted_words)
codes=$(tshark -r "$WORK/http.pcap" -n -Y http.response -T fields -e http.response.code \
  2> /dev/null | sorted_words)
[[ $requests == "$(sorted_words <<< "$expected_requests")" ]] ||
  fail "HTTP requests dissected: '$requests', expected '$expected_requests'"
[[ $codes == "$(sorted_words <<< "$expected_codes")" ]] ||
  fail "HTTP responses dissected: '$codes', expected '$expected_codes'"

# "Follow TCP stream" gives back exactly the bytes of the exact exchange, both ways, and the
# server side is the backend's address with PCAPPORT 80.
exact_port=$(cat "$WORK/exact.port")
stream=$(stream_of_client_port "$WORK/http.pcap" "$exact_port")
[[ -n $stream ]] || fail "no stream from client port $exact_port in the capture"
follow_stream "$WORK/http.pcap" "$stream" "$WORK/follow"
cmp -s "$WORK/follow.client" "$WORK/exact.request" ||
  fail "stream $stream client->server differs from the request sent"
cmp -s "$WORK/follow.server" "$WORK/exact.response" ||
  fail "stream $stream server->client differs from the response received"
server=$(tshark -r "$WORK/http.pcap" -n -Y "tcp.stream == $stream && tcp.flags.syn == 1 && \
  tcp.flags.ack == 0" -T fields -e ip.dst -e tcp.dstport 2> /dev/null)
[[ $server == $'127.0.0.1\t80' ]] || fail "recorded server of stream $stream: '$server'"

pass
