#!/usr/bin/env bash
# Routing by SNI (no --connect): a DNS server of the test's own on loopback (dnsmasq, which never
# forwards: --no-resolv and no server=) names three backends on one port, alpha.test (127.0.0.2),
# beta.test (127.0.0.3) and v6.test (::1, AAAA only). curl through the front reaches the backend
# its name resolves to, or without SNI the --nosni name's; re-encrypted (no --terminate), the
# backend's certificate must name the routed host. Bad --dns uses stop start-up.
# NXDOMAIN, names that are no DNS host names, an IP address as SNI, a name that points back at
# the front and a DNS server that does not answer each get a TLS alert and one log line, and the
# front serves on, and with forged certificates none is forged for them. The capture shows each resolved upstream as the server, on port PCAPPORT,
# with no TCP analysis problems.
. "$(dirname "$0")/lib.sh"
require_tools curl openssl tshark python3 ss
DNSMASQ=/usr/sbin/dnsmasq
[[ -x $DNSMASQ ]] || fail "$DNSMASQ is not installed (dnsmasq-base, tests/install-deps.sh)"

PCAP_PORT=80
DNS_PORT=$(free_port)
BACKEND_PORT=$(free_port)
FRONT_PORT=$(free_port)
LOOP_PORT=$(free_port)
SLOW_PORT=$(free_port)
SILENT_DNS_PORT=$(free_port)
TLS_PORT=$(free_port)
TLS_BACKEND_PORT=$(free_port)

# listening_on ADDRESS PORT: a TCP listener on exactly that address (the backends share a port).
listening_on() {
  ss -Hltn "( src $1 ) and ( sport = :$2 )" | grep -q .
}

# --local=/test/: every other name under .test is NXDOMAIN, answered here, never forwarded.
spawn "$WORK/dnsmasq.log" "$DNSMASQ" --keep-in-foreground --conf-file=/dev/null --pid-file= \
  --no-resolv --no-hosts --port="$DNS_PORT" --listen-address=127.0.0.1 --bind-interfaces \
  --local=/test/ --address=/alpha.test/127.0.0.2 --address=/beta.test/127.0.0.3 \
  --address=/v6.test/::1 --address=/self.test/127.0.0.1 --address=/tls.test/127.0.0.4 \
  --address=/wrong.test/127.0.0.4 --log-queries --log-facility=-
wait_port "$DNS_PORT"

declare -A BACKEND_IPS=([alpha]=127.0.0.2 [beta]=127.0.0.3 [v6]=::1)
for name in "${!BACKEND_IPS[@]}"; do
  mkdir -p "$WORK/www-$name"
  echo "this is the $name backend" > "$WORK/www-$name/index.html"
  spawn "$WORK/backend-$name.log" python3 -m http.server --bind "${BACKEND_IPS[$name]}" \
    --directory "$WORK/www-$name" "$BACKEND_PORT"
done
for name in "${!BACKEND_IPS[@]}"; do
  ip=${BACKEND_IPS[$name]}
  [[ $ip == *:* ]] && ip="[$ip]"
  wait_for 10 "the $name backend" listening_on "$ip" "$BACKEND_PORT"
done

# One certificate for every name tried, so that each refusal below comes from routing.
NAMES=alpha.test,beta.test,v6.test,nx.test,self.test,under_score.test,1.2.3.4,slow.test,tls.test
NAMES+=,wrong.test
make_cert routed alpha.test ${NAMES//,/ }

# --dns is an address, and only for routing by SNI.
COMMON=(--terminate --servercert "$NAMES:$WORK/routed-bundle.pem" -o "$WORK/captures"
  -p "127.0.0.1,$FRONT_PORT,$PCAP_PORT,$BACKEND_PORT")
run_front_expecting_exit2 "--dns with --connect" \
  "^tlstap-front: --dns: only used when routing by SNI; not with --connect HOST$" \
  "${COMMON[@]}" --connect 127.0.0.1 --dns "127.0.0.1:$DNS_PORT"
run_front_expecting_exit2 "--dns naming a host" \
  "^tlstap-front: --dns: 'dns\.example' is not an IP" "${COMMON[@]}" --dns dns.example
start_front "$WORK/front.log" "$FRONT_PORT" --terminate --dns "127.0.0.1:$DNS_PORT" \
  --nosni alpha.test --servercert "$NAMES:$WORK/routed-bundle.pem" -o "$WORK/captures" \
  -p "127.0.0.1,$FRONT_PORT,$PCAP_PORT,$BACKEND_PORT" \
  -p "::1,$FRONT_PORT,$PCAP_PORT,$BACKEND_PORT" -p "127.0.0.1,$LOOP_PORT,$PCAP_PORT"
wait_for 10 "the front on ::1" listening_on "[::1]" "$FRONT_PORT"
STARTED="forwarding plaintext to the host each SNI names (routing by SNI, DNS: 127.0.0.1:$DNS_PORT)"
# (The listening sockets are bound before this line is logged: wait for it.)
wait_for 10 "the start-up line naming the DNS server" grep -qF "$STARTED" "$WORK/front.log"

# fetch NAME FRONT-IP: the page curl gets through the front for SNI NAME.
fetch() {
  curl -sS --max-time 20 -g --cacert "$WORK/routed.pem" --resolve "$1:$FRONT_PORT:$2" \
    "https://$1:$FRONT_PORT/" 2> "$WORK/curl.err" ||
    fail "curl for $1 failed: $(cat "$WORK/curl.err")"
}
for round in 1 2; do
  got=$(fetch alpha.test 127.0.0.1)
  [[ $got == "this is the alpha backend" ]] || fail "alpha.test (round $round) answered '$got'"
  got=$(fetch beta.test 127.0.0.1)
  [[ $got == "this is the beta backend" ]] || fail "beta.test (round $round) answered '$got'"
done
got=$(fetch v6.test ::1)
[[ $got == "this is the v6 backend" ]] || fail "v6.test answered '$got'"
# No SNI (curl sends none for an address): the --nosni name is routed. (-k: the certificate is
# for names, not for 127.0.0.1; what counts here is which backend answers.)
got=$(curl -sS --max-time 20 -k "https://127.0.0.1:$FRONT_PORT/") || fail "curl without SNI failed"
[[ $got == "this is the alpha backend" ]] || fail "no SNI (--nosni alpha.test) answered '$got'"

# Refusals: the client reads a fatal alert, the front logs one line naming the name and cause.
expect_alert() {
  local port=$1 name=$2 alert=$3
  timeout 30 openssl s_client -connect "127.0.0.1:$port" -servername "$name" < /dev/null \
    > "$WORK/refused.out" 2>&1 && fail "SNI '$name': the handshake succeeded"
  grep -q "alert number $alert" "$WORK/refused.out" ||
    fail "SNI '$name': no alert $alert: $(grep -i alert "$WORK/refused.out")"
}
CLIENT="client 127\.0\.0\.1:[0-9]+: "
expect_alert "$FRONT_PORT" nx.test 112
expect_one_line "$WORK/front.log" "${CLIENT}cannot resolve 'nx\.test': no such name \(NXDOMAIN\)$" \
  "NXDOMAIN"
expect_alert "$FRONT_PORT" under_score.test 112
expect_one_line "$WORK/front.log" \
  "${CLIENT}not routing 'under_score\.test': not a valid DNS host name$" "invalid name"
expect_alert "$FRONT_PORT" 1.2.3.4 112
expect_one_line "$WORK/front.log" "${CLIENT}not routing '1\.2\.3\.4': an IP address" "IP as SNI"
# self.test is 127.0.0.1, and this listener forwards to its own port: that would loop.
expect_alert "$LOOP_PORT" self.test 80
expect_one_line "$WORK/front.log" \
  "${CLIENT}not routing 'self\.test': it resolves only to this front itself" "a loop"
# The DNS server never saw the names refused before a lookup.
grep -qiE "query.*(under_score|1\.2\.3\.4)" "$WORK/dnsmasq.log" &&
  fail "refused names were looked up: $(grep -iE 'under_score|1\.2\.3\.4' "$WORK/dnsmasq.log")"

# Still serving after the refusals.
got=$(fetch beta.test 127.0.0.1)
[[ $got == "this is the beta backend" ]] || fail "beta.test after the refusals answered '$got'"
front_alive "$WORK/front.log"
# (A DNS name of 1.2.3.4 in a certificate is rightly warned about at start-up.)
grep -E ': (error|warning):' "$WORK/front.log" | grep -v "is not valid for '1\.2\.3\.4'" &&
  fail "errors logged"

# Re-encrypting (no --terminate) to the routed host: an HTTPS backend on 127.0.0.4 whose
# certificate (from a test CA) names tls.test only. wrong.test resolves there too, so its
# certificate does not name the host the client asked for: refused.
make_ca backend-ca "tlstap test backend CA"
make_signed_cert tls-backend backend-ca tls.test
mkdir -p "$WORK/www-tls"
echo "this is the tls backend" > "$WORK/www-tls/index.html"
spawn "$WORK/backend-tls.log" python3 -c '
import functools, http.server, ssl, sys
ip, port, cert, root = sys.argv[1:5]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer((ip, int(port)), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert + ".pem", cert + ".key")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()' 127.0.0.4 "$TLS_BACKEND_PORT" "$WORK/tls-backend" "$WORK/www-tls"
wait_for 10 "the TLS backend" listening_on 127.0.0.4 "$TLS_BACKEND_PORT"
MAIN_FRONT_PID=$FRONT_PID
start_front "$WORK/front-tls.log" "$TLS_PORT" --dns "127.0.0.1:$DNS_PORT" \
  --backend-ca "$WORK/backend-ca.pem" --servercert "$NAMES:$WORK/routed-bundle.pem" \
  -w "$WORK/tls.pcap" -p "127.0.0.1,$TLS_PORT,$PCAP_PORT,$TLS_BACKEND_PORT"
got=$(curl -sS --max-time 20 --cacert "$WORK/routed.pem" --resolve "tls.test:$TLS_PORT:127.0.0.1" \
  "https://tls.test:$TLS_PORT/") || fail "curl for tls.test (re-encrypted) failed"
[[ $got == "this is the tls backend" ]] || fail "tls.test (re-encrypted) answered '$got'"
expect_alert "$TLS_PORT" wrong.test 40
expect_one_line "$WORK/front-tls.log" \
  "${CLIENT}backend 127\.0\.0\.4:$TLS_BACKEND_PORT \(wrong\.test\): .*does not match" \
  "a backend certificate not naming the routed name"
stop_front
servers=$(tshark -r "$WORK/tls.pcap" -n -Y "tcp.flags.syn == 1 && tcp.flags.ack == 0" -T fields \
  -e ip.dst -e tcp.dstport 2> /dev/null | tr '\t' ' ')
[[ $servers == "127.0.0.4 $PCAP_PORT" ]] || fail "re-encrypted capture's server: '$servers'"
FRONT_PID=$MAIN_FRONT_PID

# Forged certificates (no --servercert): a name is forged for only once its backend is reached,
# so the names refused above cost no signature; a routed name gets one, and curl trusts it with
# the exported root CA.
FORGE_PORT=$(free_port)
MAIN_FRONT_PID=$FRONT_PID
start_front "$WORK/front-forge.log" "$FORGE_PORT" --terminate --dns "127.0.0.1:$DNS_PORT" \
  -x "$WORK/root-ca.der" -w "$WORK/forge.pcap" -p "127.0.0.1,$FORGE_PORT,$PCAP_PORT,$BACKEND_PORT"
# forged_count: certificates_forged from a counters line asked for with SIGUSR1.
forged_count() {
  local before
  before=$(count_lines "$WORK/front-forge.log" "stats: ")
  kill -USR1 "$FRONT_PID"
  wait_for 5 "the counters line" more_than "$WORK/front-forge.log" "stats: " "$before"
  sed -n 's/.*stats: .*certificates_forged=\([0-9]*\).*/\1/p' "$WORK/front-forge.log" | tail -n 1
}
more_than() { (($(count_lines "$1" "$2") > $3)); }
expect_alert "$FORGE_PORT" nx.test 112
expect_alert "$FORGE_PORT" under_score.test 112
expect_alert "$FORGE_PORT" 1.2.3.4 112
forged=$(forged_count)
[[ $forged == 0 ]] || fail "refused names were forged certificates: certificates_forged=$forged"
openssl x509 -inform der -in "$WORK/root-ca.der" -out "$WORK/root-ca.pem"
got=$(curl -sS --max-time 20 --cacert "$WORK/root-ca.pem" \
  --resolve "alpha.test:$FORGE_PORT:127.0.0.1" "https://alpha.test:$FORGE_PORT/") ||
  fail "curl for alpha.test with a forged certificate failed"
[[ $got == "this is the alpha backend" ]] || fail "alpha.test (forged) answered '$got'"
forged=$(forged_count)
[[ $forged == 1 ]] || fail "one routed name: certificates_forged=$forged"
stop_front
FRONT_PID=$MAIN_FRONT_PID

# A DNS server that never answers: the lookup gives up within half the handshake timeout.
spawn "$WORK/silent-dns.log" python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("bound", flush=True)
time.sleep(600)' "$SILENT_DNS_PORT"
wait_for 10 "the silent DNS server" grep -q bound "$WORK/silent-dns.log"
MAIN_FRONT_PID=$FRONT_PID
start_front "$WORK/front-slow.log" "$SLOW_PORT" --terminate --dns "127.0.0.1:$SILENT_DNS_PORT" \
  --handshake-timeout 2 --servercert "$NAMES:$WORK/routed-bundle.pem" -w "$WORK/slow.pcap" \
  -p "127.0.0.1,$SLOW_PORT,$PCAP_PORT,$BACKEND_PORT"
start=$SECONDS
expect_alert "$SLOW_PORT" slow.test 80
((SECONDS - start <= 3)) || fail "the unanswered lookup took $((SECONDS - start)) s"
expect_one_line "$WORK/front-slow.log" "${CLIENT}cannot resolve 'slow\.test': no usable answer \
from the DNS server within 1\.000 s \(timeout or SERVFAIL\)$" "DNS timeout"
front_alive "$WORK/front-slow.log"
stop_front
FRONT_PID=$MAIN_FRONT_PID

# The capture: one stream per page fetched, each with the upstream it went to as the server.
stop_front
one_capture "$WORK/captures" "$WORK/all.pcap"
tshark -r "$WORK/all.pcap" -n -Y "tcp.flags.syn == 1 && tcp.flags.ack == 0" -T fields \
  -e ip.dst -e ipv6.dst -e tcp.dstport 2> /dev/null |
  awk -F '\t' '{ print ($1 != "" ? $1 : $2), $3 }' | sort | uniq -c | sed 's/^ *//' \
  > "$WORK/servers.txt"
expected="3 127.0.0.2 $PCAP_PORT
3 127.0.0.3 $PCAP_PORT
1 ::1 $PCAP_PORT"
[[ $(cat "$WORK/servers.txt") == "$expected" ]] ||
  fail "servers in the capture: $(cat "$WORK/servers.txt"), expected: $expected"
problems=$(tcp_problem_frames "$WORK/all.pcap")
[[ $problems == 0 ]] || fail "$problems frames with TCP analysis problems"
# Each upstream's answer is in its own stream, dissected as HTTP.
for name in alpha beta v6; do
  ip=${BACKEND_IPS[$name]}
  filter="ip.src == $ip"
  [[ $ip == *:* ]] && filter="ipv6.src == $ip"
  bodies=$(tshark -r "$WORK/all.pcap" -n -Y "$filter && http.response" -T fields \
    -e http.file_data 2> /dev/null | sort -u)
  [[ $bodies == *"this is the $name backend"* ]] ||
    fail "no HTTP answer of the $name backend from $ip in the capture: '$bodies'"
done
note "servers in the capture: $(tr '\n' ';' < "$WORK/servers.txt")"

pass
