#!/usr/bin/env bash
# The recorder on another host: two network namespaces joined by a veth pair stand for a front
# host (10.231.0.1) and an analysis host (10.231.0.2). tlstap-recorder listens there with the TLS
# link; tlstap-front, its backend and its clients run in the front namespace.
#
# 1. Certificates from a link CA: 300 TLS connections with known bodies go through the front;
#    the recorder's pcap holds each of them with exactly those bytes both ways, and nothing else.
# 2. Refused, with one log line on the recorder naming the peer address and the reason, and
#    nothing in the recording: a front with a certificate the link CA did not issue, a front with
#    the wrong pre-shared key (against a second recorder using a PSK, which records a front with
#    the right key), a plain TCP client sending garbage. A front without TLS options refuses to
#    start towards a non-loopback recorder, and so does a recorder listening off loopback.
# Runs as root (ip netns); all traffic stays inside the two namespaces.
. "$(dirname "$0")/lib.sh"
require_tools ip openssl tshark python3
[[ $(id -u) == 0 ]] || fail "needs root to create network namespaces"

CONNECTIONS=${CONNECTIONS:-300}
NS_FRONT=tlstap-front-$$
NS_RECORDER=tlstap-rec-$$
FRONT_IP=10.231.0.1
RECORDER_IP=10.231.0.2
# Fixed ports: each namespace is a host of its own with nothing else listening.
CERT_LINK_PORT=4433
PSK_LINK_PORT=4434
BACKEND_PORT=8080
FRONT_PORT=8443
PSK_FRONT_PORT=8444

in_front() { ip netns exec "$NS_FRONT" "$@"; }
in_recorder() { ip netns exec "$NS_RECORDER" "$@"; }

remove_namespaces() {
  # Processes inside are stopped by lib.sh's exit trap, which runs first (see below).
  ip netns del "$NS_FRONT" 2> /dev/null || true
  ip netns del "$NS_RECORDER" 2> /dev/null || true
}
trap '_cleanup || true; remove_namespaces' EXIT

ip netns add "$NS_FRONT"
ip netns add "$NS_RECORDER"
ip link add "tf$$" netns "$NS_FRONT" type veth peer name "tr$$" netns "$NS_RECORDER"
in_front ip addr add "$FRONT_IP/30" dev "tf$$"
in_recorder ip addr add "$RECORDER_IP/30" dev "tr$$"
for ns in "$NS_FRONT" "$NS_RECORDER"; do
  ip -n "$ns" link set lo up
done
in_front ip link set "tf$$" up
in_recorder ip link set "tr$$" up
link_up() { ip -n "$NS_FRONT" link show "tf$$" | grep -q "state UP"; }
wait_for 10 "the veth link" link_up

# listening_in NS PORT: something listens on PORT inside namespace NS.
listening_in() {
  ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .
}

# --- keys and certificates, as the README tells a user to make them ---------------------------
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=link-ca \
  -keyout link-ca.key -out link-ca.pem 2> openssl.log
for side in recorder:IP:$RECORDER_IP front:DNS:front.example; do
  name=${side%%:*}
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$name.key" -out "$name.csr" 2>> openssl.log
  openssl x509 -req -in "$name.csr" -CA link-ca.pem -CAkey link-ca.key -CAcreateserial -days 30 \
    -extfile <(echo "subjectAltName=${side#*:}") -out "$name.pem" 2>> openssl.log
done
# A front certificate that looks right but comes from another CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=front \
  -keyout rogue.key -out rogue.pem 2>> openssl.log
openssl rand -hex 32 > link.psk
openssl rand -hex 32 > wrong.psk
chmod 600 ./*.key ./*.psk
make_cert site www.example.com
cd - > /dev/null

# --- the analysis host: one recorder with certificates, one with a PSK ------------------------
mkdir "$WORK/psk-captures"
give_to_recorder_user "$WORK/psk-captures"
spawn "$WORK/recorder.log" ip netns exec "$NS_RECORDER" "$RECORDER" \
  --listen "$RECORDER_IP:$CERT_LINK_PORT" --link-cert "$WORK/recorder.pem+$WORK/recorder.key" \
  --link-ca "$WORK/link-ca.pem" -o "$WORK/captures"
CERT_RECORDER_PID=$SPAWNED_PID
spawn "$WORK/psk-recorder.log" ip netns exec "$NS_RECORDER" "$RECORDER" \
  --listen "$RECORDER_IP:$PSK_LINK_PORT" --link-psk "file:$WORK/link.psk" -o "$WORK/psk-captures"
PSK_RECORDER_PID=$SPAWNED_PID
wait_for 10 "the recorders" listening_in "$NS_RECORDER" "$CERT_LINK_PORT"
wait_for 10 "the recorders" listening_in "$NS_RECORDER" "$PSK_LINK_PORT"

# --- the front host: backend, front, clients ---------------------------------------------------
cat > "$WORK/echo.py" << 'EOF'
import socket, sys, threading
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(512)
def echo(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    conn, _ = server.accept()
    threading.Thread(target=echo, args=(conn,), daemon=True).start()
EOF
spawn "$WORK/backend.log" ip netns exec "$NS_FRONT" python3 "$WORK/echo.py" "$BACKEND_PORT"
wait_for 10 "the backend" listening_in "$NS_FRONT" "$BACKEND_PORT"

SITE=(--terminate --connect 127.0.0.1 --servercert "www.example.com:$WORK/site-bundle.pem")
spawn "$WORK/front.log" ip netns exec "$NS_FRONT" "$FRONT" "${SITE[@]}" \
  -p "127.0.0.1,$FRONT_PORT,80,$BACKEND_PORT" --recorder "$RECORDER_IP:$CERT_LINK_PORT" \
  --link-cert "$WORK/front.pem+$WORK/front.key" --link-ca "$WORK/link-ca.pem"
FRONT_PID=$SPAWNED_PID
wait_for 15 "tlstap-front" listening_in "$NS_FRONT" "$FRONT_PORT"
grep -q "front connected: $RECORDER_IP:$CERT_LINK_PORT from $FRONT_IP:[0-9]* (TLS, certificates" \
  "$WORK/recorder.log" ||
  fail "the recorder did not log the authenticated front: $(cat "$WORK/recorder.log")"

# clients PORT COUNT EXPECTED: COUNT TLS connections, each sending a body of its own size and
# reading its echo; EXPECTED gets one check_flows line per connection.
clients() {
  timeout 120 ip netns exec "$NS_FRONT" python3 - "$1" "$WORK/site.pem" "$2" "$3" << 'PYTHON'
import asyncio, hashlib, random, ssl, sys
port, ca, count, expected_path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]

async def client(index, context, results, limit):
    async with limit:
        data = random.Random(index).randbytes(1 + index * 211)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                       server_hostname="www.example.com")
        local_port = writer.get_extra_info("sockname")[1]
        writer.write(data)
        echoed = await reader.readexactly(len(data))
        writer.close()
        await writer.wait_closed()
        if echoed != data:
            raise AssertionError("connection %d: echo differs" % index)
        digest = hashlib.sha256(data).hexdigest()
        results.append("%d %d %s %d %s fin" % (local_port, len(data), digest, len(data), digest))

async def main():
    context = ssl.create_default_context(cafile=ca)
    results, limit = [], asyncio.Semaphore(50)
    outcomes = await asyncio.gather(*(client(i, context, results, limit) for i in range(count)),
                                    return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    for e in errors[:5]:
        print("client error:", repr(e))
    open(expected_path, "w").write("\n".join(results) + "\n")
    total = sum(int(line.split()[1]) for line in results)
    print("%d of %d connections relayed, %d bytes each way" % (len(results), count, total))
    sys.exit(1 if errors else 0)

asyncio.run(main())
PYTHON
}

clients "$FRONT_PORT" "$CONNECTIONS" "$WORK/expected" || fail "clients of the front failed"

# --- refusals -----------------------------------------------------------------------------------
# more_lines LOG PATTERN N: LOG has more than N lines matching PATTERN (for wait_for).
more_lines() {
  (($(count_lines "$1" "$2") > $3))
}

# refused_front DESCRIPTION RECORDER-LOG PATTERN FRONT-ARGS...: a front that the recorder must
# refuse: it exits 2 at start-up, and the recorder logs one more refusal matching PATTERN.
refused_front() {
  local what=$1 log=$2 pattern=$3
  shift 3
  local before status=0 refusal="front refused: .* from $FRONT_IP:[0-9]+: $pattern"
  before=$(count_lines "$log" "$refusal")
  timeout 20 ip netns exec "$NS_FRONT" "$FRONT" "${SITE[@]}" -p "127.0.0.1,9443,80,$BACKEND_PORT" \
    "$@" > "$WORK/refused.out" 2> "$WORK/refused.err" || status=$?
  [[ $status == 2 ]] ||
    fail "$what: front exit status $status, expected 2 ($(cat "$WORK/refused.err"))"
  wait_for 5 "$what: the recorder's refusal line" more_lines "$log" "$refusal" "$before"
  echo "ok: $what: $(tail -n 1 "$WORK/refused.err")"
}

refused_front "certificate from another CA" "$WORK/recorder.log" "TLS handshake: .*not trusted" \
  --recorder "$RECORDER_IP:$CERT_LINK_PORT" --link-cert "$WORK/rogue.pem+$WORK/rogue.key" \
  --link-ca "$WORK/link-ca.pem"
refused_front "wrong pre-shared key" "$WORK/psk-recorder.log" \
  "TLS handshake: .*--link-psk differs" --recorder "$RECORDER_IP:$PSK_LINK_PORT" \
  --link-psk "file:$WORK/wrong.psk"

# A plain TCP client sending garbage where a front's ClientHello belongs.
refusal="front refused: .* from $FRONT_IP:[0-9]+: TLS handshake: not a TLS"
before=$(count_lines "$WORK/recorder.log" "$refusal")
in_front python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"\x00\x00\x00\x00" * 64 + b"GET / HTTP/1.1\r\n\r\n")
try:
    s.recv(100)
except OSError:
    pass
' "$RECORDER_IP" "$CERT_LINK_PORT"
wait_for 5 "the refusal of the plain TCP client" more_lines "$WORK/recorder.log" "$refusal" \
  "$before"
echo "ok: plain TCP garbage: $(grep 'front refused' "$WORK/recorder.log" | tail -n 1)"

# Plain TCP off loopback is refused at start-up, by both programs.
status=0
timeout 10 ip netns exec "$NS_FRONT" "$FRONT" "${SITE[@]}" -p "127.0.0.1,9443,80,$BACKEND_PORT" \
  --recorder "$RECORDER_IP:$CERT_LINK_PORT" 2> "$WORK/plain.err" || status=$?
[[ $status == 2 ]] && grep -q "not on loopback: the link needs TLS" "$WORK/plain.err" ||
  fail "a front without TLS options towards $RECORDER_IP: status $status: $(cat "$WORK/plain.err")"
status=0
timeout 10 ip netns exec "$NS_RECORDER" "$RECORDER" --listen "$RECORDER_IP:4435" \
  -o "$WORK/captures" 2> "$WORK/plain.err" || status=$?
[[ $status == 2 ]] && grep -q -- "--listen: .*off loopback the link needs TLS" "$WORK/plain.err" ||
  fail "a recorder without TLS options on $RECORDER_IP: status $status: $(cat "$WORK/plain.err")"
echo "ok: plain TCP off loopback refused at start-up by both programs"

# A front with the right key records through the PSK recorder.
spawn "$WORK/psk-front.log" ip netns exec "$NS_FRONT" "$FRONT" "${SITE[@]}" \
  -p "127.0.0.1,$PSK_FRONT_PORT,80,$BACKEND_PORT" --recorder "$RECORDER_IP:$PSK_LINK_PORT" \
  --link-psk "file:$WORK/link.psk"
PSK_FRONT_PID=$SPAWNED_PID
wait_for 15 "the PSK front" listening_in "$NS_FRONT" "$PSK_FRONT_PORT"
clients "$PSK_FRONT_PORT" 20 "$WORK/psk-expected" || fail "clients of the PSK front failed"

# --- what was recorded --------------------------------------------------------------------------
for pid in "$FRONT_PID" "$PSK_FRONT_PID"; do
  stop_process "$pid"
  [[ $STOP_STATUS == 0 ]] || fail "tlstap-front exited with status $STOP_STATUS after SIGTERM"
done
for pid in "$CERT_RECORDER_PID" "$PSK_RECORDER_PID"; do
  stop_process "$pid" 60
  [[ $STOP_STATUS == 0 ]] || fail "tlstap-recorder exited with status $STOP_STATUS after SIGTERM"
done
one_capture "$WORK/captures" "$WORK/all.pcap"
check_flows "$WORK/all.pcap" "$WORK/expected" ||
  fail "the certificate recorder's capture does not hold exactly the relayed connections"
one_capture "$WORK/psk-captures" "$WORK/psk.pcap"
check_flows "$WORK/psk.pcap" "$WORK/psk-expected" ||
  fail "the PSK recorder's capture does not hold exactly the relayed connections"
refusals=$(count_lines "$WORK/recorder.log" "front refused")
[[ $refusals == 2 ]] || fail "expected 2 refusals on the certificate recorder, found $refusals"
pass
