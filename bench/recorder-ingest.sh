#!/bin/bash
# Ingest throughput of tlstap-recorder: how fast a front can push plaintext into it over the unix
# socket while it writes one pcap file (-w) on tmpfs. replay-client --bench opens FLOWS flows and
# pushes TOTAL bytes in fixed-size chunks (16 KiB, then 1 KiB), batched about 64 KiB per
# Flow.data call as tlstap-front does; the rate is payload bytes over the wall time from the first
# openFlow to the last close() answered. Target: >= 1 GB/s with 16 KiB chunks.
#
# CPU seconds of both processes are printed too: on a shared machine the wall-clock rate moves
# with the load, while "MB per recorder CPU second" says what one core of recorder can take.
# Each chunk size runs three times: writing a file on tmpfs (-w), with no file at all (only an
# idle --pcapoverip listener: packets are still synthesized, then dropped), which separates the
# cost of writing the pcap from the rest of the recorder, and writing the file again over the TLS
# link (TCP on loopback, TLS 1.3 with a pre-shared key) that a front on another host uses.
#
# Environment: TLSTAP_BUILD (default <source>/build), TOTAL (bytes, default 2 GiB), FLOWS
# (default 4), CHUNKS (default "16384 1024"), PCAP_DIR (default /dev/shm), JOBS (build
# parallelism, default 2).
set -euo pipefail

SOURCE=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TLSTAP_BUILD:-$SOURCE/build}
TOTAL=${TOTAL:-2147483648}
FLOWS=${FLOWS:-4}
CHUNKS=${CHUNKS:-16384 1024}

cmake -S "$SOURCE" -B "$BUILD" > /dev/null
cmake --build "$BUILD" --target tlstap-recorder replay-client -j "${JOBS:-2}" > /dev/null
RECORDER=$BUILD/recorder/tlstap-recorder
REPLAY=$BUILD/tests/replay-client

# tmpfs by default, so that the disk is not what is measured.
base=${PCAP_DIR:-/dev/shm}
[[ -d $base && -w $base ]] || base=${TMPDIR:-/tmp}
WORK=$(mktemp -d "$base/tlstap-bench.XXXXXX")
recorder_pid=
cleanup() {
  [[ -n $recorder_pid ]] && kill "$recorder_pid" 2> /dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# CPU time (user + system) of a process in clock ticks.
cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat"
}

ticks_per_second=$(getconf CLK_TCK)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# The link's pre-shared key, as a front and a recorder on two hosts would share it.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/link.psk"
chmod 600 "$WORK/link.psk"

# run_once CHUNK OUTPUT [LINK]: one recorder writing OUTPUT (a file, or "none"), one replay-client
# --bench run over LINK: unix (the default) or tls.
run_once() {
  local chunk=$1 output=$2 link=${3:-unix}
  local outputs=(-w "$output")
  if [[ $output == none ]]; then
    outputs=(--pcapoverip "127.0.0.1:$(free_port)")
  fi
  local listen=(--listen "unix:$WORK/recorder.sock") connect=(--connect "unix:$WORK/recorder.sock")
  if [[ $link == tls ]]; then
    local port
    port=$(free_port)
    listen=(--listen "127.0.0.1:$port" --link-psk "file:$WORK/link.psk")
    connect=(--connect "127.0.0.1:$port" --link-psk "file:$WORK/link.psk")
  fi
  rm -f "$WORK/bench.pcap"
  "$RECORDER" "${listen[@]}" "${outputs[@]}" > "$WORK/recorder.log" 2>&1 &
  recorder_pid=$!
  for _ in $(seq 100); do
    grep -q "info: listening on" "$WORK/recorder.log" && break
    sleep 0.1
  done
  if ! grep -q "info: listening on" "$WORK/recorder.log"; then
    cat "$WORK/recorder.log"
    exit 1
  fi

  local before after line status=0
  before=$(cpu_ticks "$recorder_pid")
  line=$(/usr/bin/time -f "client-cpu %U %S" -o "$WORK/client.time" \
    "$REPLAY" "${connect[@]}" --bench --chunk-size "$chunk" \
    --total-bytes "$TOTAL" --flows "$FLOWS")
  after=$(cpu_ticks "$recorder_pid")
  kill -TERM "$recorder_pid"
  wait "$recorder_pid" || status=$?
  recorder_pid=
  if [[ $status != 0 ]]; then
    echo "tlstap-recorder exited with $status"
    cat "$WORK/recorder.log"
    exit 1
  fi

  local size=0
  if [[ -f $output ]]; then
    size=$(stat -c %s "$output")
    ((size > TOTAL)) || { echo "the pcap holds $size bytes, less than the payload"; exit 1; }
  fi
  local client_user client_sys
  read -r _ client_user client_sys < "$WORK/client.time"
  python3 - "$line" "$((after - before))" "$ticks_per_second" "$client_user" "$client_sys" \
    "$TOTAL" "$size" "$output" "$link" << 'EOF'
import sys
line, ticks, hz, cuser, csys, total, size, output, link = sys.argv[1:]
fields = dict(f.split("=", 1) for f in line.split()[1:])
recorder_cpu = int(ticks) / int(hz)
client_cpu = float(cuser) + float(csys)
total = int(total)
target = "no file" if output == "none" else "file (%.0f MB)" % (int(size) / 1e6)
print("chunk %6s B %-8s -> %-16s %7.1f MB/s wall (%.2f s) | recorder %.2f CPU s = %.0f MB/CPU s"
      " | client %.2f CPU s"
      % (fields["chunk-size"], "TLS link" if link == "tls" else "unix", target,
         float(fields["MB/s"]), float(fields["seconds"]),
         recorder_cpu, total / 1e6 / max(recorder_cpu, 1e-9), client_cpu))
EOF
}

echo "tlstap-recorder ingest: $TOTAL bytes in $FLOWS flows per run, pcap on $base, $(nproc) cores"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for chunk in $CHUNKS; do
  run_once "$chunk" "$WORK/bench.pcap"
  # The same without the file: what the recorder takes when writing costs nothing.
  run_once "$chunk" none
  # The file again, over the TLS link: what encrypting and decrypting the link costs.
  run_once "$chunk" "$WORK/bench.pcap" tls
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
