# The one shell library of tlstap's scripts (sourced, not run): the integration tests source it
# whole; bench/run.sh borrows its generic helpers.
#
#   . "$(dirname "$0")/lib.sh"                                  # an integration test
#   . "$SOURCE_DIR/tests/integration/lib.sh" --helpers-only     # the functions only
#
# Gives every test script: $WORK (a work directory, removed when the test passes, kept and its
# logs printed when it fails), processes started with `spawn` stopped on exit, fail/pass, free
# ports, waiting for a port, test certificates, backends (nginx, echo, refusing, resetting,
# greeting), starting and stopping tlstap-front and tlstap-recorder, and tshark checks of what was
# recorded. The helpers report errors through `fail`; a script that sources --helpers-only may
# define its own. The set-up of a test ($WORK, the exit trap) is at the end of this file.
set -euo pipefail

TLSTAP_SOURCE=${TLSTAP_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SPAWNED=()
# free_port is called as $(free_port), in a subshell, so the ports it has handed out are kept in
# a file named after $$ (which subshells share) rather than in a variable that would be lost.
USED_PORTS_FILE=/tmp/tlstap-used-ports.$$

fail() {
  echo "FAIL: $TEST_NAME: $*"
  exit 1
}

note() {
  echo "$TEST_NAME: $*"
}

pass() {
  PASSED=1
  echo "PASS: $TEST_NAME ($SECONDS s)"
}

require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" > /dev/null || fail "$tool is not installed (tests/install-deps.sh)"
  done
}

require_built() {
  local file
  for file in "$@"; do
    [[ -x $file ]] || fail "$file is not built"
  done
}

# --- processes --------------------------------------------------------------------------------

# spawn LOG COMMAND...: runs COMMAND in the background with stdout and stderr in LOG; sets
# SPAWNED_PID. Every spawned process is stopped when the script exits.
spawn() {
  local log=$1
  shift
  "$@" > "$log" 2>&1 &
  SPAWNED_PID=$!
  SPAWNED+=("$SPAWNED_PID")
}

# True while the process runs (kill -0 alone also succeeds on a zombie).
process_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2> /dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# stop_pids SECONDS PID...: SIGTERM, then SIGKILL for what still runs after SECONDS.
stop_pids() {
  local timeout=$1 pid
  shift
  # Only processes still alive get a signal: a PID that has gone may be reused by someone else's.
  for pid in "$@"; do
    process_alive "$pid" && { kill -TERM "$pid" 2> /dev/null || true; }
  done
  local deadline=$((SECONDS + timeout))
  for pid in "$@"; do
    while process_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    process_alive "$pid" && { kill -KILL "$pid" 2> /dev/null || true; }
  done
  return 0
}

# stop_process PID [SECONDS]: SIGTERM, wait for the exit; sets STOP_STATUS to the exit status
# (not a command substitution: only this shell can wait for its children). Fails if the process
# is still running after SECONDS (default 20).
stop_process() {
  local pid=$1 timeout=${2:-20}
  kill -TERM "$pid" 2> /dev/null || true
  local deadline=$((SECONDS + timeout))
  while process_alive "$pid"; do
    ((SECONDS < deadline)) || fail "process $pid still running ${timeout} s after SIGTERM"
    sleep 0.1
  done
  STOP_STATUS=0
  wait "$pid" 2> /dev/null || STOP_STATUS=$?
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls until COMMAND succeeds.
wait_for() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after ${timeout} s waiting for $what"
    sleep 0.1
  done
}

# --- ports ------------------------------------------------------------------------------------

# free_port: prints a TCP port that nothing listens on now (on IPv4 or IPv6 loopback/any) and
# that this script has not handed out before.
free_port() {
  local port
  for _ in $(seq 50); do
    port=$(python3 -c '
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 0))
print(s.getsockname()[1])')
    if ! grep -qx "$port" "$USED_PORTS_FILE" 2> /dev/null; then
      echo "$port" >> "$USED_PORTS_FILE"
      echo "$port"
      return 0
    fi
  done
  fail "no free port found"
}

port_listening() {
  ss -Hltn "sport = :$1" | grep -q .
}

wait_port() {
  wait_for "${2:-10}" "a listener on port $1" port_listening "$1"
}

# --- certificates -----------------------------------------------------------------------------

# make_cert NAME CN [DNS-NAME...]: a self-signed ECDSA P-256 certificate for CN and the DNS
# names, as $WORK/NAME.pem (certificate), NAME.key, NAME.p12 (PKCS#12 with the password in
# NAME.pw) and NAME-bundle.pem (certificate and key in one PEM).
make_cert() {
  local name=$1 cn=$2
  shift 2
  local sans="DNS:$cn" dns
  for dns in "$@"; do sans+=",DNS:$dns"; done
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=$cn" -addext "subjectAltName=$sans" \
    -keyout "$WORK/$name.key" -out "$WORK/$name.pem" 2> "$WORK/openssl-$name.err" ||
    fail "openssl could not make a certificate: $(cat "$WORK/openssl-$name.err")"
  echo "pw-$name-$RANDOM" > "$WORK/$name.pw"
  openssl pkcs12 -export -in "$WORK/$name.pem" -inkey "$WORK/$name.key" \
    -out "$WORK/$name.p12" -passout "file:$WORK/$name.pw" ||
    fail "openssl could not make $name.p12"
  cat "$WORK/$name.pem" "$WORK/$name.key" > "$WORK/$name-bundle.pem"
}

# make_ca NAME CN: a self-signed ECDSA P-256 CA certificate, as $WORK/NAME.pem and NAME.key.
make_ca() {
  local name=$1 cn=$2
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=$cn" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$WORK/$name.key" -out "$WORK/$name.pem" 2> "$WORK/openssl-$name.err" ||
    fail "openssl could not make the CA $name: $(cat "$WORK/openssl-$name.err")"
}

# make_signed_cert NAME CA CN [DNS-NAME...]: an ECDSA P-256 server certificate for CN and the DNS
# names, signed by the CA made with make_ca CA: $WORK/NAME.pem, NAME.key and NAME-bundle.pem.
make_signed_cert() {
  local name=$1 ca=$2 cn=$3
  shift 3
  local sans="DNS:$cn" dns
  for dns in "$@"; do sans+=",DNS:$dns"; done
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    "$sans" > "$WORK/$name.ext"
  { openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
      -keyout "$WORK/$name.key" -out "$WORK/$name.csr" &&
    openssl x509 -req -in "$WORK/$name.csr" -CA "$WORK/$ca.pem" -CAkey "$WORK/$ca.key" \
      -CAcreateserial -days 30 -extfile "$WORK/$name.ext" -out "$WORK/$name.pem"; } \
    2> "$WORK/openssl-$name.err" ||
    fail "openssl could not make $name: $(cat "$WORK/openssl-$name.err")"
  cat "$WORK/$name.pem" "$WORK/$name.key" > "$WORK/$name-bundle.pem"
}

# make_reencrypt_certs NAME: the certificates of a re-encryption test: "site", the front's
# certificate for NAME (make_cert), a test CA "backend-ca" ($WORK/backend-ca.pem, for
# --backend-ca) and "backend", the backend's certificate signed by it, naming only NAME: it
# verifies only if the front checks (and sends) the client's name, not the --connect address.
make_reencrypt_certs() {
  make_cert site "$1"
  make_ca backend-ca "tlstap test backend CA"
  make_signed_cert backend backend-ca "$1"
}

# The subject of the certificate a TLS server on 127.0.0.1:PORT sends for SNI NAME (no SNI when
# NAME is empty), e.g. "subject=CN = www.example.com"; empty when the handshake fails.
served_subject() {
  local port=$1 name=$2
  local sni=(-servername "$name")
  [[ -n $name ]] || sni=(-noservername)
  timeout 30 openssl s_client -connect "127.0.0.1:$port" "${sni[@]}" < /dev/null 2> /dev/null |
    openssl x509 -noout -subject 2> /dev/null || true
}

# --- backends ---------------------------------------------------------------------------------

# start_nginx PORT ROOT [CERT]: nginx (non-daemon, own temp config) serving ROOT on
# 127.0.0.1:PORT; with CERT (a name given to make_cert/make_signed_cert), over TLS with HTTP/2
# and HTTP/1.1 (ALPN).
start_nginx() {
  local port=$1 root=$2 cert=${3:-} dir=$WORK/nginx-$1
  local listen="listen 127.0.0.1:$port;"
  if [[ -n $cert ]]; then
    listen="listen 127.0.0.1:$port ssl http2; ssl_certificate $WORK/$cert.pem;"
    listen+=" ssl_certificate_key $WORK/$cert.key;"
  fi
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" << EOF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 256; }
http {
  access_log $dir/access.log;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  default_type application/octet-stream;
  server {
    $listen
    root $root;
  }
}
EOF
  spawn "$WORK/nginx-$port.log" nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log"
  NGINX_PID=$SPAWNED_PID
  wait_port "$port"
}

# start_nghttpd PORT ROOT CERT: nghttpd, an HTTP/2-only TLS server (ALPN h2), serving ROOT on
# 127.0.0.1:PORT with CERT (a name given to make_cert/make_signed_cert); sets NGHTTPD_PID.
start_nghttpd() {
  local port=$1 root=$2 cert=$3
  spawn "$WORK/nghttpd-$port.log" nghttpd --address=127.0.0.1 -d "$root" "$port" \
    "$WORK/$cert.key" "$WORK/$cert.pem"
  NGHTTPD_PID=$SPAWNED_PID
  wait_port "$port"
}

# start_backend KIND PORT [CERT]: a Python backend on 127.0.0.1:PORT; sets BACKEND_PID. With
# CERT (a name given to make_cert/make_signed_cert), echo and reset speak TLS (no ALPN), and the
# echo's half-close is a close_notify before the FIN.
#   echo    echoes every byte back; closes after the client's EOF, once all is echoed
#   reset   reads a little, then resets the connection (RST)
#   greet   sends "greeting\n" and half-closes (FIN) at once, then reads to EOF and prints
#           "received N SHA256" on its log
#   hangup  reads a little (a ClientHello), then closes (FIN): a backend failing the handshake
#   silent  accepts, reads a little and never sends anything
start_backend() {
  local kind=$1 port=$2 cert=${3:-}
  cat > "$WORK/backend.py" << 'EOF'
import socket, ssl, struct, sys, threading
kind, port, cert = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tls = None
if cert:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert + ".pem", cert + ".key")
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(256)

def echo(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
        if tls:
            try:
                conn.unwrap().shutdown(socket.SHUT_WR)  # close_notify (the peer's came), FIN
            except (ssl.SSLError, OSError):
                pass  # the peer ended without close_notify: the FIN comes with the close

def reset(conn):
    conn.recv(1)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()

def greet(conn):
    import hashlib
    with conn:
        conn.sendall(b"greeting\n")
        conn.shutdown(socket.SHUT_WR)
        digest, count = hashlib.sha256(), 0
        while True:
            data = conn.recv(65536)
            if not data:
                break
            digest.update(data)
            count += len(data)
        print("received", count, digest.hexdigest(), flush=True)

def hangup(conn):
    conn.recv(65536)  # the whole ClientHello: closing with unread bytes would send a RST
    conn.close()

def silent(conn):
    conn.recv(1)
    threading.Event().wait()

def serve(handler, conn):
    if tls and handler in (echo, reset):
        try:
            conn = tls.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            print("TLS handshake failed:", e, flush=True)
            conn.close()
            return
    handler(conn)

handler = {"echo": echo, "reset": reset, "greet": greet, "hangup": hangup,
           "silent": silent}[kind]
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(handler, conn), daemon=True).start()
EOF
  spawn "$WORK/backend-$kind-$port.log" python3 "$WORK/backend.py" "$kind" "$port" \
    "${cert:+$WORK/$cert}"
  BACKEND_PID=$SPAWNED_PID
  wait_port "$port"
}

# start_tls_echo_backend NAME: make_reencrypt_certs NAME, and a TLS echo backend with the
# "backend" certificate on a free port, BACKEND_PORT.
start_tls_echo_backend() {
  make_reencrypt_certs "$1"
  BACKEND_PORT=$(free_port)
  start_backend echo "$BACKEND_PORT" backend
}

# --- tlstap-recorder and tlstap-front ---------------------------------------------------------

# start_recorder LOG ARGS...: an external tlstap-recorder (e.g. --listen unix:PATH -w FILE);
# waits for its "listening on" line; sets RECORDER_PID.
start_recorder() {
  local log=$1
  shift
  require_built "$RECORDER"
  spawn "$log" "$RECORDER" "$@"
  RECORDER_PID=$SPAWNED_PID
  local deadline=$((SECONDS + 10))
  until grep -q "info: listening on" "$log"; do
    process_alive "$RECORDER_PID" || fail "tlstap-recorder exited at start-up: $(cat "$log")"
    ((SECONDS < deadline)) || fail "tlstap-recorder did not start listening within 10 s"
    sleep 0.1
  done
}

# stop_recorder: SIGTERM; the recorder must finish what is queued and exit 0 within 60 s.
stop_recorder() {
  stop_process "$RECORDER_PID" 60
  [[ $STOP_STATUS == 0 ]] || fail "tlstap-recorder exited with status $STOP_STATUS after SIGTERM"
}

# start_front LOG LISTEN-PORT ARGS...: starts tlstap-front with ARGS and waits until it listens
# on LISTEN-PORT; sets FRONT_PID.
start_front() {
  local log=$1 port=$2
  shift 2
  require_built "$FRONT"
  spawn "$log" "$FRONT" "$@"
  FRONT_PID=$SPAWNED_PID
  local deadline=$((SECONDS + 10))
  until port_listening "$port"; do
    process_alive "$FRONT_PID" || fail "tlstap-front exited at start-up: $(cat "$log")"
    ((SECONDS < deadline)) || fail "tlstap-front does not listen on $port after 10 s"
    sleep 0.1
  done
  # The ports are bound before the recorder has answered; the front names its root CA once its
  # start-up is over, and a test that goes on before that would race it (a SIGTERM then is held
  # until start-up ends). The front itself gives the recorder 10 s to answer.
  deadline=$((SECONDS + 20))
  until grep -q "info: .*root CA '" "$log"; do
    process_alive "$FRONT_PID" || fail "tlstap-front exited at start-up: $(cat "$log")"
    ((SECONDS < deadline)) || fail "tlstap-front did not finish starting within 20 s"
    sleep 0.1
  done
}

front_alive() {
  process_alive "$FRONT_PID" || fail "tlstap-front died: $(tail -n 5 "$1" 2> /dev/null)"
}

# expect_quiet_front LOG [PATTERN]: tlstap-front is alive and LOG has no line matching the
# extended regex PATTERN (by default, any line about a client connection that went wrong).
expect_quiet_front() {
  local log=$1 pattern=${2:-': (error|warning|info): client'}
  front_alive "$log"
  [[ $(count_lines "$log" "$pattern") == 0 ]] ||
    fail "problems in the front's log: $(grep -m5 -E -- "$pattern" "$log")"
}

# stop_front: SIGTERM; tlstap-front must exit 0 within 20 s.
stop_front() {
  stop_process "$FRONT_PID"
  [[ $STOP_STATUS == 0 ]] || fail "tlstap-front exited with status $STOP_STATUS after SIGTERM"
}

# start_front_with_backends PCAPPORT KIND... [-- FRONT-ARG...]: the usual front scenario. Makes
# the certificate "site" for www.example.com; for each KIND, a backend on a free port
# (start_backend KIND, or "refusing": a port nobody listens on) and a listener of tlstap-front on
# another free port relaying to it (-p LISTEN,PCAPPORT,BACKEND). The front terminates TLS with
# that certificate, records into $WORK/captures, logs to $WORK/front.log and gets FRONT-ARGs too;
# returns once every listener is up. Sets BACKEND_PORTS[KIND], FRONT_PORTS[KIND] and FRONT_PID.
start_front_with_backends() {
  local pcap_port=$1 kind
  shift
  local kinds=()
  while (($# > 0)) && [[ $1 != -- ]]; do
    kinds+=("$1")
    shift
  done
  (($# == 0)) || shift
  declare -gA BACKEND_PORTS=() FRONT_PORTS=()
  local relays=()
  make_cert site www.example.com
  for kind in "${kinds[@]}"; do
    BACKEND_PORTS[$kind]=$(free_port)
    FRONT_PORTS[$kind]=$(free_port)
    [[ $kind == refusing ]] || start_backend "$kind" "${BACKEND_PORTS[$kind]}"
    relays+=(-p "${FRONT_PORTS[$kind]},$pcap_port,${BACKEND_PORTS[$kind]}")
  done
  start_front "$WORK/front.log" "${FRONT_PORTS[${kinds[0]}]}" --terminate --connect 127.0.0.1 \
    --servercert "www.example.com:$WORK/site-bundle.pem" "${relays[@]}" -o "$WORK/captures" "$@"
  for kind in "${kinds[@]}"; do
    wait_port "${FRONT_PORTS[$kind]}"
  done
}

# count_lines FILE PATTERN: how many lines of FILE match the extended regex PATTERN.
count_lines() {
  grep -cE -- "$2" "$1" || true
}

# expect_one_line FILE PATTERN WHAT: FILE has exactly one line matching PATTERN.
expect_one_line() {
  local n
  n=$(count_lines "$1" "$2")
  [[ $n == 1 ]] || fail "$3: expected one log line matching '$2', found $n"
}

# run_front_expecting_exit2 DESCRIPTION PATTERN ARGS...: tlstap-front must refuse to start: exit
# status 2 within 10 s and exactly one line on stderr, matching PATTERN.
run_front_expecting_exit2() {
  local what=$1 pattern=$2
  shift 2
  local status=0
  timeout 10 "$FRONT" "$@" > "$WORK/exit2.out" 2> "$WORK/exit2.err" || status=$?
  [[ $status == 2 ]] || fail "$what: exit status $status, expected 2 ($(cat "$WORK/exit2.err"))"
  local lines
  lines=$(wc -l < "$WORK/exit2.err")
  [[ $lines == 1 ]] || fail "$what: $lines lines on stderr, expected one: $(cat "$WORK/exit2.err")"
  grep -qE -- "$pattern" "$WORK/exit2.err" ||
    fail "$what: stderr does not match '$pattern': $(cat "$WORK/exit2.err")"
}

# bulk_clients PORT CA NAME COUNT BYTES EXPECTED: COUNT TLS clients at once (SNI NAME, trusting
# CA) to an echo service on 127.0.0.1:PORT, each uploading BYTES of random data while it reads
# the echo back (a relay with bounded buffers would otherwise, rightly, stop reading a client that
# does not read). Fails unless every echo is exact; writes what each relayed to EXPECTED in the
# form check_flows reads.
bulk_clients() {
  timeout 120 python3 "$TLSTAP_SOURCE/tests/integration/bulk_clients.py" "$@" ||
    fail "bulk clients failed"
}

# --- what was recorded ------------------------------------------------------------------------

# one_capture DIR OUT: the pcap files tlstap wrote into DIR as one capture in OUT (a run that
# crosses the hour is split into two files; concatenated in name order they are one capture).
one_capture() {
  local files
  mapfile -t files < <(find "$1" -name '*.pcap' -type f | sort)
  ((${#files[@]} > 0)) || fail "no pcap file in $1"
  if ((${#files[@]} == 1)); then
    cp "${files[0]}" "$2"
  else
    mergecap -a -F pcap -w "$2" "${files[@]}" || fail "mergecap failed on ${files[*]}"
  fi
}

# The tcp.stream number of the connection from client port PORT in PCAP.
stream_of_client_port() {
  tshark -r "$1" -n -Y "tcp.srcport == $2 && tcp.flags.syn == 1 && tcp.flags.ack == 0" \
    -T fields -e tcp.stream 2> /dev/null | head -n 1
}

# Frames tshark flags with TCP analysis problems (retransmission, lost segment, bad ACK ...).
tcp_problem_frames() {
  tshark -r "$1" -n -Y tcp.analysis.flags 2> /dev/null | wc -l
}

# follow_stream PCAP N OUT-PREFIX: the bytes of tcp.stream N as Wireshark's "follow TCP stream"
# gives them, into OUT-PREFIX.client (client to server) and OUT-PREFIX.server.
follow_stream() {
  local pcap=$1 stream=$2 out=$3
  tshark -r "$pcap" -n -q -z "follow,tcp,raw,$stream" > "$out.follow" 2> /dev/null ||
    fail "tshark could not follow stream $stream of $pcap"
  python3 - "$out.follow" "$out" << 'EOF'
import sys
text, out = open(sys.argv[1]).read().splitlines(), sys.argv[2]
data = {"client": bytearray(), "server": bytearray()}
body = False
for line in text:
    if line.startswith("Node 1:"):
        body = True
        continue
    if not body or line.startswith("===") or not line.strip():
        continue
    # Raw follow output: client data flush left, server data indented by a tab.
    side = "server" if line.startswith("\t") else "client"
    data[side] += bytes.fromhex(line.strip())
for side, content in data.items():
    open(out + "." + side, "wb").write(content)
EOF
}

# check_flows PCAP EXPECTED: every line of EXPECTED ("CLIENT-PORT UP-BYTES UP-SHA256 DOWN-BYTES
# DOWN-SHA256 CLOSE", CLOSE one of fin, reset-client, reset-server) is one TCP stream of PCAP with
# exactly those bytes each way and that ending; PCAP holds no other stream. Prints a summary.
check_flows() {
  python3 - "$1" "$2" << 'EOF'
import collections, hashlib, subprocess, sys
pcap, expected_path = sys.argv[1], sys.argv[2]
fields = ["tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.len", "tcp.payload"]
command = ["tshark", "-r", pcap, "-n", "-T", "fields", "-E", "separator=\t"]
for f in fields:
    command += ["-e", f]
out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
streams = {}
for line in out.splitlines():
    cols = line.split("\t")
    if len(cols) < len(fields) or cols[0] == "":
        continue
    s = streams.setdefault(int(cols[0]), {"client": None, "up": hashlib.sha256(), "down":
        hashlib.sha256(), "upBytes": 0, "downBytes": 0, "rst": set(), "fin": set()})
    src, flags = int(cols[1]), int(cols[3], 16)
    if flags & 0x12 == 0x02:  # the SYN names the client
        s["client"] = src
    side = "up" if src == s["client"] else "down"
    if cols[5]:
        payload = bytes.fromhex(cols[5].replace(":", ""))
        s[side].update(payload)
        s[side + "Bytes"] += len(payload)
    if flags & 0x04:
        s["rst"].add(side)
    if flags & 0x01:
        s["fin"].add(side)
by_client = {s["client"]: s for s in streams.values()}
problems = []
expected_ports = set()
for line in open(expected_path):
    port, up_n, up_sha, down_n, down_sha, close = line.split()
    port = int(port)
    expected_ports.add(port)
    s = by_client.get(port)
    if s is None:
        problems.append("client port %d: no stream in the capture" % port)
        continue
    for side, n, sha in (("up", up_n, up_sha), ("down", down_n, down_sha)):
        if s[side + "Bytes"] != int(n) or s[side].hexdigest() != sha:
            problems.append("client port %d %s: %d bytes recorded, %s relayed (sha256 %s)"
                            % (port, side, s[side + "Bytes"], n,
                               "differs" if s[side].hexdigest() != sha else "equal"))
    ending = {"fin": (set(), {"up", "down"}), "reset-client": ({"up"}, None),
              "reset-server": ({"down"}, None)}[close]
    if s["rst"] != ending[0] or (ending[1] is not None and s["fin"] != ending[1]):
        problems.append("client port %d: expected %s, capture has RST %s FIN %s"
                        % (port, close, sorted(s["rst"]), sorted(s["fin"])))
for port in by_client:
    if port not in expected_ports:
        problems.append("unexpected stream from client port %s" % port)
for p in problems[:20]:
    print("FAIL:", p)
print("check_flows: %d streams, %d expected, %d problems" % (len(streams), len(expected_ports),
                                                             len(problems)))
sys.exit(1 if problems else 0)
EOF
}

# expect_clean_capture PCAP [EXPECTED]: tshark finds no TCP analysis problem in PCAP and, given
# EXPECTED, check_flows finds exactly the flows it lists, with their bytes and endings.
expect_clean_capture() {
  local pcap=$1 expected=${2:-} problems
  problems=$(tcp_problem_frames "$pcap")
  [[ $problems == 0 ]] || fail "$problems frames with tcp.analysis.flags in $pcap"
  [[ -z $expected ]] || check_flows "$pcap" "$expected" ||
    fail "the capture $pcap differs from what was relayed"
}

# --- the set-up of a test ---------------------------------------------------------------------
# Sourced with --helpers-only, the functions above are all there is: no $WORK, no exit trap.
if [[ ${1:-} == --helpers-only ]]; then
  return 0
fi

: "${TLSTAP_BUILD:?set TLSTAP_BUILD to the build directory}"
FRONT=$TLSTAP_BUILD/front/tlstap-front
RECORDER=$TLSTAP_BUILD/recorder/tlstap-recorder
TEST_NAME=$(basename "$0" .sh)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tlstap-$TEST_NAME.XXXXXX")
mkdir "$WORK/captures"  # the usual -o directory
# Started as root, both programs drop to their users (tlstap, tlstap-rec) after start-up, and
# the recorder creates its later hourly files as tlstap-rec: the -o directories tests make for
# it are given to that user (a directory the recorder creates itself is given by the recorder).
# mount_small_disk: a 4 MiB tmpfs on $WORK/disk (DISK), unmounted when the script exits, for the
# disk-full tests. Needs root (mount): exits 77 (skipped) otherwise.
mount_small_disk() {
  if [[ $(id -u) != 0 ]]; then
    echo "SKIP: $TEST_NAME needs root to mount a tmpfs"
    PASSED=1
    exit 77
  fi
  DISK=$WORK/disk
  mkdir -p "$DISK"
  mount -t tmpfs -o size=4m tmpfs "$DISK" || fail "cannot mount a tmpfs on $DISK"
  trap _unmount_small_disk EXIT
}

_unmount_small_disk() {
  # The recorder must be gone before the unmount, and the unmount before $WORK is removed.
  stop_pids 5 "${SPAWNED[@]}"
  umount "$DISK" 2> /dev/null || umount -l "$DISK"
  _cleanup
}

give_to_recorder_user() {
  if [[ $(id -u) == 0 ]]; then chown tlstap-rec: "$@"; fi
}
give_to_recorder_user "$WORK/captures"
# tlstap-front generates its root CA in a state directory when it has none: a test keeps its own
# (the default would be /var/lib/tlstap as root, ~/.local/state/tlstap otherwise).
export STATE_DIRECTORY=$WORK/state
PASSED=0

_cleanup() {
  stop_pids 5 "${SPAWNED[@]}"
  wait 2> /dev/null || true
  rm -f "$USED_PORTS_FILE"
  if [[ $PASSED == 1 && -z ${TLSTAP_KEEP_WORK:-} ]]; then
    rm -rf "$WORK"
  else
    echo "work directory kept: $WORK"
    local log
    for log in "$WORK"/*.log; do
      [[ -f $log ]] && { echo "--- last lines of $log"; tail -n 25 "$log"; }
    done
  fi
}
trap _cleanup EXIT
