#!/usr/bin/env bash
# Hostile clients: random bytes, an SSLv2-style hello, a ClientHello cut off by EOF, a 64 KiB
# SNI, and clients that stall (silent, mid-ClientHello, after the ClientHello) against
# --handshake-timeout 2. Each is closed with exactly one log line naming the cause; the front
# stays up and the next good connection works.
. "$(dirname "$0")/lib.sh"
require_tools python3

start_front_with_backends 443 echo -- --handshake-timeout 2
FRONT_PORT=${FRONT_PORTS[echo]}

# Each case prints "LOCAL-PORT<tab>REGEX": the one log line the front must write about it.
timeout 120 python3 - "$FRONT_PORT" > "$WORK/cases" 2> "$WORK/cases.err" << 'PYTHON' ||
import random, socket, ssl, struct, sys, threading, time
port = int(sys.argv[1])
results, lock = [], threading.Lock()

def client_hello(name="www.example.com"):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()

def huge_sni_hello(name_bytes):
    name = b"a" * name_bytes
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    extensions = struct.pack("!HH", 0, len(sni)) + sni
    body = (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" +
            struct.pack("!H", len(extensions)) + extensions)
    message = b"\x01" + struct.pack("!I", len(body))[1:] + body
    records = b""
    for offset in range(0, len(message), 16384):
        fragment = message[offset:offset + 16384]
        records += b"\x16\x03\x01" + struct.pack("!H", len(fragment)) + fragment
    return records

def run(case, payload, regex, stall=0.0, then_close=True):
    sock = socket.create_connection(("127.0.0.1", port))
    local = sock.getsockname()[1]
    try:
        if payload:
            sock.sendall(payload)
        if stall:
            # The front must close us by itself (handshake timeout), well before we give up.
            sock.settimeout(stall)
            started = time.monotonic()
            try:
                while sock.recv(65536):
                    pass
            except ConnectionResetError:
                pass
            except socket.timeout:
                raise AssertionError("%s: still open after %.0f s" % (case, stall))
            waited = time.monotonic() - started
            if waited < 1.5:
                raise AssertionError("%s: closed after %.1f s, before the timeout" % (case, waited))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the front closed on us while we were still sending: that is the point
    finally:
        sock.close()
    with lock:
        results.append("%d\t%s" % (local, regex))

hello = client_hello()
rng = random.Random(7)
cases = [
    ("random bytes", b"\x47" + bytes(rng.randrange(256) for _ in range(3000)),
     "not a TLS handshake"),
    ("SSLv2 hello", b"\x80\x2e\x01\x00\x02" + bytes(rng.randrange(256) for _ in range(45)),
     "SSLv2-style ClientHello"),
    ("truncated hello", hello[: len(hello) // 2], "closed the connection within its ClientHello"),
    ("64 KiB SNI", huge_sni_hello(65000), "ClientHello too large"),
]
for case, payload, regex in cases:
    run(case, payload, regex)

stalls = [
    ("silent", b"", "handshake timeout after 2 s \\(waiting for the ClientHello\\)"),
    ("stalled in ClientHello", hello[:20],
     "handshake timeout after 2 s \\(waiting for the ClientHello\\)"),
    ("stalled after ClientHello", hello, "handshake timeout after 2 s \\(in the TLS handshake\\)"),
]
threads = [threading.Thread(target=run, args=(c, p, r, 8.0)) for c, p, r in stalls]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("\n".join(results))
sys.exit(0 if len(results) == len(cases) + len(stalls) else 1)
PYTHON
  fail "hostile clients: $(cat "$WORK/cases.err")"

sleep 0.5
while IFS=$'\t' read -r port regex; do
  expect_one_line "$WORK/front.log" "client 127\.0\.0\.1:$port: $regex" "client port $port"
  [[ $(count_lines "$WORK/front.log" "client 127\.0\.0\.1:$port:") == 1 ]] ||
    fail "more than one line about client port $port: $(grep ":$port:" "$WORK/front.log")"
done < "$WORK/cases"
[[ $(wc -l < "$WORK/cases") == 7 ]] || fail "expected 7 hostile cases, ran $(wc -l < "$WORK/cases")"

# Still up, and a good client gets through.
front_alive "$WORK/front.log"
timeout 120 python3 - "$FRONT_PORT" "$WORK/site.pem" << 'PYTHON' || fail "a good connection after the hostile ones failed"
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
with context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))),
                         server_hostname="www.example.com") as tls:
    tls.sendall(b"ping\n")
    assert tls.recv(100) == b"ping\n"
PYTHON
[[ $(count_lines "$WORK/front.log" ': (error|warning):') == 0 ]] ||
  fail "errors logged: $(grep -E ': (error|warning):' "$WORK/front.log")"

# Nothing of the hostile connections is in the capture: it holds the good connection only.
stop_front
one_capture "$WORK/captures" "$WORK/hostile.pcap"
streams=$(tshark -r "$WORK/hostile.pcap" -n -T fields -e tcp.stream 2> /dev/null | sort -u | wc -l)
[[ $streams == 1 ]] || fail "$streams TCP streams in the capture, expected only the good one"

pass
