#!/usr/bin/env bash
# Half-closed connections pass through both ways. Client first: the client sends 100 kB and its
# close_notify at once, and still reads the whole echo afterwards (the backend saw EOF only after
# the data). Backend first: the backend sends a greeting and its FIN; the client gets the
# greeting and close_notify, then sends 100 kB that the backend still receives. The capture
# shows both connections with their bytes and a clean FIN close.
. "$(dirname "$0")/lib.sh"
require_tools python3 openssl tshark

start_front_with_backends 80 echo greet
P_ECHO=${FRONT_PORTS[echo]}
P_GREET=${FRONT_PORTS[greet]}
GREET_LOG=$WORK/backend-greet-${BACKEND_PORTS[greet]}.log

timeout 60 python3 - "$P_ECHO" "$P_GREET" "$WORK/site.pem" "$WORK/expected" << 'PYTHON' ||
import hashlib, socket, ssl, sys
echo_port, greet_port, ca, expected_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=ca)
payload = bytes(range(256)) * 400

class Client:
    """TLS over a memory BIO, so that close_notify can be sent while reading goes on."""
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.port = self.sock.getsockname()[1]
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="www.example.com")
        self.call(self.tls.do_handshake)

    def flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def call(self, step):
        while True:
            try:
                result = step()
                self.flush()
                return result
            except ssl.SSLWantReadError:
                self.flush()
                data = self.sock.recv(65536)
                if not data:
                    raise AssertionError("TCP EOF without close_notify")
                self.incoming.write(data)

    def send(self, data):
        self.call(lambda: self.tls.write(data))

    def send_close_notify(self):
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        self.flush()

    def read_to_close_notify(self):
        received = bytearray()
        while True:
            try:
                data = self.call(lambda: self.tls.read(65536))
            except ssl.SSLZeroReturnError:
                data = b""
            if not data:  # after our own close_notify, OpenSSL reports the peer's as b""
                return bytes(received)
            received += data

def expect(port, up, down):
    sha = lambda data: hashlib.sha256(data).hexdigest()
    return "%d %d %s %d %s fin" % (port, len(up), sha(up), len(down), sha(down))

lines = []
client = Client(echo_port)
client.send(payload)
client.send_close_notify()
echoed = client.read_to_close_notify()
client.sock.close()
assert echoed == payload, "client first: %d bytes echoed of %d" % (len(echoed), len(payload))
lines.append(expect(client.port, payload, payload))

client = Client(greet_port)
greeting = client.read_to_close_notify()
assert greeting == b"greeting\n", greeting
client.send(payload)
client.send_close_notify()
client.sock.close()
lines.append(expect(client.port, payload, greeting))
open(expected_path, "w").write("\n".join(lines) + "\n")
PYTHON
  fail "half-close scenarios failed"

want="received 102400 $(python3 -c 'import hashlib; print(hashlib.sha256(bytes(range(256)) * 400).hexdigest())')"
wait_for 5 "the greeting backend to receive the upload" grep -q "^received" "$GREET_LOG"
[[ $(cat "$GREET_LOG") == "$want" ]] ||
  fail "the backend that closed first received '$(cat "$GREET_LOG")', expected '$want'"

front_alive "$WORK/front.log"
stop_front
one_capture "$WORK/captures" "$WORK/half-close.pcap"
problems=$(tcp_problem_frames "$WORK/half-close.pcap")
[[ $problems == 0 ]] || fail "$problems frames with tcp.analysis.flags in the capture"
check_flows "$WORK/half-close.pcap" "$WORK/expected" || fail "the capture differs from what was relayed"
# The backend's FIN comes before the client's in the greeting connection.
greet_client=$(awk 'NR == 2 {print $1}' "$WORK/expected")
first_fin=$(tshark -r "$WORK/half-close.pcap" -n -Y "tcp.port == $greet_client && tcp.flags.fin == 1" \
  -T fields -e tcp.srcport 2> /dev/null | head -n 1)
[[ $first_fin == 80 ]] || fail "first FIN of the greeting connection from port $first_fin, not the server"

pass
