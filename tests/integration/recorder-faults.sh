# Helpers of the recorder fault tests (test-recorder-restart.sh, test-recorder-link-faults.sh),
# sourced after lib.sh: parallel downloads through the front while a fault is made, and an
# account of every byte in the capture afterwards (relayed, recorded, lost, sent again).
#
# The caller calls serve_download once, sets DOWNLOADS, and starts fronts with start_front_to.

SIZE=$((5 * 1024 * 1024))

# serve_download: nginx on a free port (NGINX_PORT) serving $WORK/www/big.bin, SIZE random bytes;
# the certificate "site" for www.example.com.
serve_download() {
  make_cert site www.example.com
  mkdir "$WORK/www"
  head -c "$SIZE" /dev/urandom > "$WORK/www/big.bin"
  NGINX_PORT=$(free_port)
  start_nginx "$NGINX_PORT" "$WORK/www"
}

# start_front_to LOG ARGS...: a front on a free port (FRONT_PORT) terminating TLS for
# www.example.com in front of nginx, with ARGS (the recorder options).
start_front_to() {
  local log=$1
  shift
  FRONT_PORT=$(free_port)
  start_front "$log" "$FRONT_PORT" --terminate --connect 127.0.0.1 \
    -p "$FRONT_PORT,80,$NGINX_PORT" --servercert "www.example.com:$WORK/site-bundle.pem" "$@"
}

# A batch the dead recorder wrote but could not acknowledge is sent again at the same sequence
# numbers, identical (analyse checks it): tshark calls such a segment a retransmission (or, close
# in time to the original, out-of-order) and the ACK after it a duplicate ACK. Nothing else.
RESENT_FLAGS="retransmission|out-of-order segment|Duplicate ACK"

# downloads NAME RATE: DOWNLOADS parallel curls through the front, rate-limited so that a fault
# lands mid-transfer; each writes "LOCAL-PORT REQUEST-BYTES HEADER-BYTES BODY-BYTES" into
# $WORK/NAME.curl. Runs in the background; sets DOWNLOAD_PIDS.
downloads() {
  local name=$1 rate=$2 i
  DOWNLOAD_PIDS=()
  : > "$WORK/$name.curl"
  for ((i = 0; i < DOWNLOADS; i++)); do
    curl -sS --max-time 60 --limit-rate "$rate" --cacert "$WORK/site.pem" \
      --resolve "www.example.com:$FRONT_PORT:127.0.0.1" -o /dev/null \
      -w '%{local_port} %{size_request} %{size_header} %{size_download}\n' \
      "https://www.example.com:$FRONT_PORT/big.bin" >> "$WORK/$name.curl" \
      2>> "$WORK/$name.curl-errors" &
    DOWNLOAD_PIDS+=($!)
  done
}

# wait_recorded DIR BYTES: until the pcap files in DIR hold BYTES, so that a fault lands in the
# middle of the transfers (curl takes a while to start 20 TLS connections on a busy machine).
recorded_bytes() {
  find "$1" -name '*.pcap' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'
}
wait_recorded() {
  local dir=$1 min=$2
  local deadline=$((SECONDS + 30))
  until (($(recorded_bytes "$dir") >= min)); do
    ((SECONDS < deadline)) || fail "fewer than $min bytes recorded in $dir after 30 s"
    sleep 0.05
  done
}

wait_downloads() {
  local name=$1 pid
  for pid in "${DOWNLOAD_PIDS[@]}"; do
    wait "$pid" || fail "$name: curl failed: $(cat "$WORK/$name.curl-errors")"
  done
  local complete
  complete=$(awk -v size="$SIZE" '$4 == size' "$WORK/$name.curl" | wc -l)
  [[ $complete == "$DOWNLOADS" ]] || fail "$name: $complete of $DOWNLOADS downloads complete"
}


# The front's own account at exit: "recording: N bytes relayed, N acknowledged ..., N lost; ...".
front_lost() {
  sed -n 's/.*recording: .* \([0-9]*\) lost;.*/\1/p' "$1" | tail -n 1
}

# analyse NAME DIR: concatenates the pcap files of DIR in name (time) order, as one_capture does
# (a file is in the order the recorder wrote it, not sorted by timestamp, so a chronological merge
# would interleave the files' halves arbitrarily), and checks each download's flow against curl:
# every byte in the capture once (reassembled by sequence number across the files), and prints
# "relayed R recorded C holes H" in $WORK/NAME.result. Holes are allowed (and reported) only with
# ALLOW_HOLES=1. Also counts tshark's TCP analysis flags by kind into $WORK/NAME.flags.
analyse() {
  local name=$1 dir=$2
  local files
  mapfile -t files < <(find "$dir" -name '*.pcap' -type f | sort)
  ((${#files[@]} > 0)) || fail "$name: no pcap file in $dir"
  # The killed recorder's file may end in the middle of a record: the recorder writes whole
  # records, but the kernel stops a write(2) to a file between pages when SIGKILL arrives.
  # Nothing there was acknowledged (the front sends it again), so the torn tail is cut off, as a
  # user would before merging; its size is reported.
  python3 - "${files[@]}" >> "$WORK/$name.torn" << 'EOF'
import os, struct, sys
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack("<I", data[pos + 8:pos + 12])[0]
        if pos + 16 + incl > len(data):
            break
        pos += 16 + incl
    if pos != len(data):
        os.truncate(path, pos)
        print("%s: cut %d bytes of a torn last record" % (os.path.basename(path), len(data) - pos))
EOF
  mergecap -a -F pcap -w "$WORK/$name.pcap" "${files[@]}" || fail "$name: mergecap failed"
  python3 - "$WORK/$name.pcap" "$WORK/$name.curl" "${ALLOW_HOLES:-0}" > "$WORK/$name.result" \
    << 'EOF' || fail "$name: $(cat "$WORK/$name.result")"
import struct, sys
pcap, curl_path, allow_holes = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
data = open(pcap, "rb").read()
assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4, "not a microsecond pcap"
flows = {}  # (client port) -> {"isn": {side: isn}, "ranges": {side: {offset: payload}}}
pos = 24
while pos + 16 <= len(data):
    incl = struct.unpack("<I", data[pos + 8:pos + 12])[0]
    frame = data[pos + 16:pos + 16 + incl]
    pos += 16 + incl
    if struct.unpack("!H", frame[12:14])[0] != 0x0800:
        continue
    ihl = (frame[14] & 15) * 4
    tcp = frame[14 + ihl:]
    total = struct.unpack("!H", frame[16:18])[0]
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    offset = (tcp[12] >> 4) * 4
    flags = tcp[13]
    payload = tcp[offset:total - ihl]
    client = dport if sport == 80 else sport
    side = "down" if sport == 80 else "up"
    f = flows.setdefault(client, {"isn": {}, "segments": {"up": [], "down": []}})
    if flags & 0x02:
        f["isn"][side] = seq
    if payload:
        f["segments"][side].append((seq, payload))
problems = []
relayed = recorded = holes = overlap = 0
for line in open(curl_path):
    port, request, header, body = map(int, line.split())
    f = flows.get(port)
    if f is None:
        problems.append("client port %d: not in the capture" % port)
        continue
    for side, expected in (("up", request), ("down", header + body)):
        relayed += expected
        isn = f["isn"].get(side)
        if isn is None:
            problems.append("client port %d %s: no SYN" % (port, side))
            continue
        stream = bytearray(expected)
        known = bytearray(expected)
        for seq, payload in f["segments"][side]:
            start = (seq - isn - 1) & 0xFFFFFFFF
            if start + len(payload) > expected:
                problems.append("client port %d %s: bytes past the end" % (port, side))
                break
            end = start + len(payload)
            seen = known.count(1, start, end)
            if seen:
                overlap += seen
                if seen == len(payload):
                    same = stream[start:end] == payload
                else:
                    same = all(stream[i] == payload[i - start]
                               for i in range(start, end) if known[i])
                if not same:
                    problems.append("client port %d %s: bytes at %d differ when sent again"
                                    % (port, side, start))
            stream[start:end] = payload
            known[start:end] = b"\1" * len(payload)
        got = known.count(1)
        recorded += got
        holes += expected - got
        if got != expected and not allow_holes:
            problems.append("client port %d %s: %d of %d bytes recorded" % (port, side, got,
                                                                            expected))
for p in problems[:10]:
    print("FAIL:", p)
print("relayed %d recorded %d holes %d resent %d" % (relayed, recorded, holes, overlap))
sys.exit(1 if problems else 0)
EOF
  # TCP analysis only: reassembling and dissecting 100 MB of HTTP would triple the time.
  tshark -r "$WORK/$name.pcap" -n -o tcp.desegment_tcp_streams:FALSE --disable-protocol http \
    -Y tcp.analysis.flags -T fields -e _ws.expert.message \
    2> /dev/null | sort | uniq -c | sed 's/^ *//' > "$WORK/$name.flags" || true
}

# flags_only NAME ALLOWED-REGEX: every TCP analysis flag tshark raised is one we can justify.
flags_only() {
  local name=$1 allowed=$2
  local unexpected
  unexpected=$(grep -vE "$allowed" "$WORK/$name.flags" | head -n 5 || true)
  [[ -z $unexpected ]] || fail "$name: unexpected TCP analysis flags: $unexpected"
}

report() {
  local name=$1 lost=$2
  read -r _ relayed _ recorded _ holes _ resent < "$WORK/$name.result"
  note "$name: relayed $relayed bytes, recorded $recorded, lost $lost" \
    "(holes in the capture: $holes, bytes sent again: $resent);" \
    "TCP analysis flags: $(tr '\n' ';' < "$WORK/$name.flags")"
  [[ ! -s $WORK/$name.torn ]] || note "$name: $(tr '\n' ';' < "$WORK/$name.torn")"
}

# expect_nothing_lost NAME FRONT-LOG DIR: after a fault that broke the recorder link, the front
# logged the loss and the new link, counted no byte lost, every byte curl got is once in the
# capture in DIR (analyse), and the only TCP analysis flags are those of bytes sent again; then
# the figures are reported.
expect_nothing_lost() {
  local name=$1 log=$2 dir=$3 lost
  grep -q "recorder link to .* lost" "$log" || fail "$name: the front did not log the lost link"
  grep -q "restored after" "$log" || fail "$name: the front did not log the new link"
  lost=$(front_lost "$log")
  [[ $lost == 0 ]] || fail "$name: the front counted $lost bytes lost"
  analyse "$name" "$dir"
  flags_only "$name" "$RESENT_FLAGS"
  report "$name" "$lost"
}

# relayed_now LOG: the bytes the front (FRONT_PID, logging to LOG) has relayed from the servers,
# from the counters line it logs on SIGUSR1.
relayed_now() {
  local log=$1 before deadline=$((SECONDS + 10))
  before=$(count_lines "$log" "stats: ")
  kill -USR1 "$FRONT_PID"
  until (($(count_lines "$log" "stats: ") > before)); do
    ((SECONDS < deadline)) || fail "no counters line from the front within 10 s"
    sleep 0.05
  done
  sed -n 's/.*stats: .* bytes_server_to_client=\([0-9]*\) .*/\1/p' "$log" | tail -n 1
}

# expect_stalled NAME LOG SECONDS: with no recorder, --recorder-down block holds the downloads:
# once the record queues are full (a second), the front relays nothing for SECONDS.
expect_stalled() {
  local name=$1 log=$2 seconds=$3 first last
  sleep 1
  first=$(relayed_now "$log")
  sleep "$seconds"
  last=$(relayed_now "$log")
  [[ $first == "$last" ]] ||
    fail "$name: the front relayed $((last - first)) bytes in $seconds s without a recorder"
}
