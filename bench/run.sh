#!/usr/bin/env bash
# tlstap benchmark: tlstap-front (recording to a pcap) side by side with hitch and HAProxy, all
# three terminating TLS in front of the same nginx, with the same ECDSA P-256 certificate and one
# worker each, in one run; and a second tlstap-front ("tlstap-re") that re-encrypts to nginx's
# TLS port instead of terminating (the front's default mode), recording too. Measures, for each:
#
#   bulk        MB/s through 1 MiB keep-alive downloads (wrk, 4 connections)
#   small       requests/s of ~100-byte keep-alive responses (wrk, 32 connections)
#   handshakes  full TLS handshakes/s: one request per connection (wrk, 32 connections, with
#               wrk-full-handshake.so so that no connection resumes a session)
#   memory      KiB of RSS per idle proxied TLS connection (2000, each after one request)
#
# prints them with tlstap's ratio to each peer and the targets of DESIGN.md, then stops the front
# with SIGTERM and checks that its pcap holds every byte relayed, phase by phase.
#
#   bash bench/run.sh                           # as root on Debian 12; installs and builds if needed
#   TLSTAP_BUILD=/work/build-main bash bench/run.sh
#
# Knobs (environment): TLSTAP_BUILD (build directory, default ./build; built with tests/build.sh
# if it has no tlstap-front), BENCH_SECONDS (per wrk run, default 10), BENCH_IDLE_CONNECTIONS
# (default 2000), BENCH_EXACT_DOWNLOADS (1 MiB downloads of the exact recording check, default
# 200), BENCH_REENCRYPT=0 (leave out the re-encrypting front), BENCH_KEEP_WORK=1 (keep the work
# directory with logs and the pcap).
#
# Traffic stays on 127.0.0.1. Every client run has a time limit; every process started here is
# stopped on exit. Nothing is pinned: client, proxy and backend share the machine's cores, so the
# figures are for comparison within one run, not absolute.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE_DIR=$(cd "$BENCH_DIR/.." && pwd)
# Generic helpers (spawn, process_alive, stop_pids, wait_for, free_port, port_listening, make_cert)
# come from the integration tests' library; they report errors through fail, defined below.
. "$SOURCE_DIR/tests/integration/lib.sh" --helpers-only
BUILD_DIR=${TLSTAP_BUILD:-$SOURCE_DIR/build}
FRONT=$BUILD_DIR/front/tlstap-front

RUN_SECONDS=${BENCH_SECONDS:-10}
IDLE_CONNECTIONS=${BENCH_IDLE_CONNECTIONS:-2000}
EXACT_DOWNLOADS=${BENCH_EXACT_DOWNLOADS:-200}
BULK_CONNECTIONS=4
SMALL_CONNECTIONS=32
HANDSHAKE_CONNECTIONS=32
# The name clients connect to: it must resolve to 127.0.0.1 without touching /etc/hosts, because
# wrk sends the URL's host as SNI and tlstap-front picks its certificate by SNI.
SERVER_NAME=localhost
PROXIES=(hitch haproxy tlstap)
[[ ${BENCH_REENCRYPT:-1} == 0 ]] || PROXIES+=(tlstap-re)
# Server port written into the pcap (-p LISTEN,PCAPPORT,FORWARD): tells the directions apart.
PCAP_PORT=80

WORK=
declare -A PROXY_PID PROXY_PORT
# tlstap phases in time order, NAME=EPOCH_SECONDS: the pcap is split at these instants.
WINDOWS=()
WINDOW_LOG_LINES=()

# --- output and processes ------------------------------------------------------------------------

progress() {
  echo "bench: $*" >&2
}

fail() {
  echo "bench: error: $*" >&2
  exit 1
}

# descendants PID: the PIDs of every process below PID (hitch forks its worker).
descendants() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END {
      for (pid in parent) {
        for (p = parent[pid]; p > 1; p = parent[p]) if (p == root) { print pid; break }
      }
    }'
}

cleanup() {
  local pid spawned=() children=()
  for pid in "${SPAWNED[@]}"; do
    process_alive "$pid" || continue
    spawned+=("$pid")
    mapfile -t -O "${#children[@]}" children < <(descendants "$pid")
  done
  # The spawned processes first: hitch stops and reaps its own worker. Children still there
  # afterwards (their parent died first) are stopped by PID.
  ((${#spawned[@]} == 0)) || stop_pids 5 "${spawned[@]}"
  wait 2> /dev/null || true
  ((${#children[@]} == 0)) || stop_pids 2 "${children[@]}"
  rm -f "$USED_PORTS_FILE"
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ ${BENCH_KEEP_WORK:-0} == 1 ]]; then
      progress "work directory kept: $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
}

# tree_sum PID PER-PROCESS-COMMAND: the sum of what the command prints for PID and for each of
# its descendants.
tree_sum() {
  local pid total=0
  for pid in "$1" $(descendants "$1"); do
    total=$((total + $("$2" "$pid")))
  done
  echo "$total"
}

# tree_rss_kib PID: resident memory (VmRSS) of PID and all its descendants, in KiB.
tree_rss_kib() {
  tree_sum "$1" process_rss_kib
}

process_rss_kib() {
  local rss
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2> /dev/null) || rss=0
  echo "${rss:-0}"
}

# tree_cpu_ticks PID: user + system CPU time of PID and its descendants, in clock ticks.
tree_cpu_ticks() {
  tree_sum "$1" process_cpu_ticks
}

process_cpu_ticks() {
  local ticks
  # Fields after the ")" that ends the command name: utime and stime are the 12th and 13th.
  ticks=$(sed 's/^.*) //' "/proc/$1/stat" 2> /dev/null | awk '{print $12 + $13}') || ticks=0
  echo "${ticks:-0}"
}

# value FILE KEY: the value of KEY=VALUE in FILE (wrk-summary.lua output); empty if missing.
value() {
  [[ -f $1 ]] || return 0
  awk -F= -v key="$2" '$1 == key {print $2}' "$1"
}

# calc EXPRESSION: floating-point arithmetic (awk), "-" when the expression has no inputs.
calc() {
  awk "BEGIN { print $1 }" 2> /dev/null || echo "-"
}

# --- set-up ---------------------------------------------------------------------------------------

install_and_build() {
  local tool missing=0
  for tool in nginx hitch haproxy wrk curl openssl python3 cc ss; do
    command -v "$tool" > /dev/null || missing=1
  done
  if ((missing)); then
    progress "installing hitch, haproxy, wrk, nginx-light and the build tools"
    TLSTAP_BENCH=1 bash "$SOURCE_DIR/tests/install-deps.sh"
  fi
  if [[ ! -x $FRONT ]]; then
    progress "no $FRONT: building into $BUILD_DIR"
    TLSTAP_BUILD=$BUILD_DIR bash "$SOURCE_DIR/tests/build.sh"
  fi
  [[ -x $FRONT ]] || fail "the build did not produce $FRONT"
}

raise_file_limit() {
  # Each idle connection costs a proxy two descriptors (client and backend) and nginx one.
  local needed=$((2 * IDLE_CONNECTIONS + 1000))
  ulimit -n "$(ulimit -Hn)" 2> /dev/null || true
  (($(ulimit -n) >= needed)) ||
    fail "ulimit -n is $(ulimit -n), the idle-connection test needs $needed (lower BENCH_IDLE_CONNECTIONS)"
}

check_name_resolution() {
  local first
  first=$(python3 -c "import socket; print(socket.getaddrinfo('$SERVER_NAME', 443, type=socket.SOCK_STREAM)[0][4][0])")
  [[ $first == 127.0.0.1 ]] ||
    fail "$SERVER_NAME resolves to $first first; the proxies listen on 127.0.0.1 only"
}

make_shim() {
  cc -shared -fPIC -O2 -o "$WORK/wrk-full-handshake.so" "$BENCH_DIR/wrk-full-handshake.c" -ldl ||
    fail "could not compile wrk-full-handshake.c"
}

make_content() {
  mkdir -p "$WORK/www"
  head -c 1048576 /dev/urandom > "$WORK/www/1m.bin"
}

start_bench_nginx() {
  local port=$1 tls_port=$2 dir=$WORK/nginx
  mkdir -p "$dir"
  # 100 bytes of body: "small" is dominated by per-request costs, not by bytes.
  local small
  small=$(printf '%099d' 0)
  cat > "$dir/nginx.conf" << EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections $((IDLE_CONNECTIONS + 1000)); }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  default_type application/octet-stream;
  sendfile on;
  # Keep-alive runs must stay on their connections: a reconnect would add a handshake.
  keepalive_timeout 300s;
  keepalive_requests 1000000000;
  server {
    listen 127.0.0.1:$port;
    # For the re-encrypting front: the same content over TLS, with the bench certificate.
    listen 127.0.0.1:$tls_port ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $WORK/bench.pem;
    ssl_certificate_key $WORK/bench.key;
    root $WORK/www;
    location = /small { return 200 "$small\n"; }
  }
}
EOF
  spawn "$WORK/nginx.log" nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log"
  PROXY_PID[nginx]=$SPAWNED_PID
  wait_for 10 "nginx on port $port" port_listening "$port"
  wait_for 10 "nginx on port $tls_port" port_listening "$tls_port"
}

start_hitch() {
  local port=$1 backend=$2
  mkdir -p "$WORK/hitch-ocsp"
  # hitch refuses to run its worker as root. The default listen backlog (100) would drop SYNs
  # while thousands of idle connections open; the others listen with a larger one.
  spawn "$WORK/hitch.log" hitch --frontend="[127.0.0.1]:$port" --backend="[127.0.0.1]:$backend" \
    --workers=1 --backlog=1024 --user=nobody --group=nogroup --daemon=off \
    --ocsp-dir="$WORK/hitch-ocsp" "$WORK/bench-bundle.pem"
  PROXY_PID[hitch]=$SPAWNED_PID
  PROXY_PORT[hitch]=$port
}

start_haproxy() {
  local port=$1 backend=$2
  # mode tcp: a TLS relay like hitch and tlstap-front --terminate (no HTTP parsing), which
  # connects the backend as soon as the handshake is done.
  cat > "$WORK/haproxy.cfg" << EOF
global
  nbthread 1
  maxconn $((IDLE_CONNECTIONS + 1000))
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
frontend tls
  bind 127.0.0.1:$port ssl crt $WORK/bench-bundle.pem
  default_backend nginx
backend nginx
  server nginx 127.0.0.1:$backend
EOF
  spawn "$WORK/haproxy.log" haproxy -db -f "$WORK/haproxy.cfg"
  PROXY_PID[haproxy]=$SPAWNED_PID
  PROXY_PORT[haproxy]=$port
}

start_tlstap() {
  local port=$1 backend=$2
  local front=("$FRONT" --terminate --connect 127.0.0.1
    --servercert "bench.example,$SERVER_NAME:$WORK/bench-bundle.pem"
    -p "127.0.0.1,$port,$PCAP_PORT,$backend" --threads 1 --cadir "$WORK/ca")
  PROXY_PORT[tlstap]=$port
  RECORDER_MODE="embedded (-w)"
  spawn "$WORK/tlstap.log" "${front[@]}" -w "$WORK/bench.pcap"
  PROXY_PID[tlstap]=$SPAWNED_PID
  local deadline=$((SECONDS + 5))
  while process_alive "$SPAWNED_PID" && ! port_listening "$port" && ((SECONDS < deadline)); do
    sleep 0.1
  done
  # A front whose embedded recorder is not there yet says so and exits 2: record through an
  # external tlstap-recorder on a unix socket instead, the set-up for a separate recorder service.
  if ! process_alive "$SPAWNED_PID" && grep -q recorder "$WORK/tlstap.log"; then
    local recorder=$BUILD_DIR/recorder/tlstap-recorder
    [[ -x $recorder ]] || fail "tlstap-front cannot record with -w and there is no $recorder"
    RECORDER_MODE="external tlstap-recorder (front said: $(head -n 1 "$WORK/tlstap.log"))"
    spawn "$WORK/recorder.log" "$recorder" --listen "unix:$WORK/recorder.sock" -w "$WORK/bench.pcap"
    PROXY_PID[recorder]=$SPAWNED_PID
    wait_for 10 "tlstap-recorder's socket" test -S "$WORK/recorder.sock"
    spawn "$WORK/tlstap.log" "${front[@]}" --recorder "unix:$WORK/recorder.sock"
    PROXY_PID[tlstap]=$SPAWNED_PID
  fi
}

# start_tlstap_reencrypt PORT TLS-BACKEND: tlstap-front without --terminate, re-encrypting to
# nginx's TLS port (the backend's certificate checked against the bench certificate), recording
# through its own embedded recorder into its own pcap.
start_tlstap_reencrypt() {
  local port=$1 backend=$2
  spawn "$WORK/tlstap-re.log" "$FRONT" --connect 127.0.0.1 --backend-ca "$WORK/bench.pem" \
    --servercert "bench.example,$SERVER_NAME:$WORK/bench-bundle.pem" \
    -p "127.0.0.1,$port,$PCAP_PORT,$backend" --threads 1 --cadir "$WORK/ca-re" \
    -w "$WORK/bench-re.pcap"
  PROXY_PID[tlstap-re]=$SPAWNED_PID
  PROXY_PORT[tlstap-re]=$port
}

start_servers() {
  local backend tls_backend
  backend=$(free_port)
  tls_backend=$(free_port)
  start_bench_nginx "$backend" "$tls_backend"
  start_hitch "$(free_port)" "$backend"
  start_haproxy "$(free_port)" "$backend"
  start_tlstap "$(free_port)" "$backend"
  [[ ${BENCH_REENCRYPT:-1} == 0 ]] || start_tlstap_reencrypt "$(free_port)" "$tls_backend"
  local proxy
  for proxy in "${PROXIES[@]}"; do
    wait_for 15 "$proxy to listen on port ${PROXY_PORT[$proxy]}" proxy_ready "$proxy"
  done
}

proxy_ready() {
  process_alive "${PROXY_PID[$1]}" || fail "$1 exited at start: $(tail -n 5 "$WORK/$1.log")"
  port_listening "${PROXY_PORT[$1]}"
}

# --- measurements ---------------------------------------------------------------------------------

# mark_window NAME: a tlstap phase starts now; what the pcap holds from here on belongs to it.
# The front's log length is kept too: the lines after it (connections that ended) belong to it.
mark_window() {
  WINDOWS+=("$1=$(date +%s.%N)")
  WINDOW_LOG_LINES+=("$(wc -l < "$WORK/tlstap.log")")
}

# tls_parameters PROXY: what an OpenSSL client (wrk's library, default settings) negotiates, and
# whether the server asked for a second ClientHello (HelloRetryRequest: one more round trip and
# one more key share per handshake).
tls_parameters() {
  local port=${PROXY_PORT[$1]} out
  out=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername "$SERVER_NAME" \
    -CAfile "$WORK/bench.pem" -msg < /dev/null 2>&1) || true
  local protocol cipher group hellos
  protocol=$(sed -n 's/^Protocol *: *//p; s/^New, \(TLSv[0-9.]*\),.*/\1/p' <<< "$out" | head -n 1)
  cipher=$(sed -n 's/^New, TLSv[0-9.]*, Cipher is //p' <<< "$out" | head -n 1)
  group=$(sed -n 's/^Server Temp Key: //p' <<< "$out" | head -n 1)
  hellos=$(grep -c '^>>> .*ClientHello' <<< "$out" || true)
  local retry="no HelloRetryRequest"
  ((hellos > 1)) && retry="HelloRetryRequest (2 ClientHellos per handshake)"
  printf '  %-8s %s %s, key exchange %s, %s\n' "$1" "${protocol:-?}" "${cipher:-?}" \
    "${group:-?}" "$retry"
}

# warm_up PROXY: one request of each kind, so that lazy initialisation is not counted as memory
# per connection; the response sizes bound what wrk can leave in flight.
warm_up() {
  local proxy=$1 port=${PROXY_PORT[$1]} path
  for path in /small /1m.bin; do
    curl -sS --http1.1 --max-time 20 --cacert "$WORK/bench.pem" -o /dev/null \
      -w '%{http_code} %{size_request} %{size_header} %{size_download}\n' \
      "https://$SERVER_NAME:$port$path" >> "$WORK/warmup-$proxy.txt" 2>> "$WORK/warmup-$proxy.err" ||
      progress "warm-up request $path through $proxy failed: $(tail -n 1 "$WORK/warmup-$proxy.err")"
  done
}

# measure_idle_memory PROXY: RSS of the proxy (and its children) before and after opening
# IDLE_CONNECTIONS TLS connections that each made one request and then stay open, idle.
measure_idle_memory() {
  local proxy=$1 pid=${PROXY_PID[$1]} port=${PROXY_PORT[$1]}
  local out=$WORK/idle-$proxy
  process_alive "$pid" || return 0
  [[ $proxy == tlstap ]] && mark_window idle
  local before recorder_before='' alone_before
  before=$(tree_rss_kib "$pid")
  alone_before=$(process_rss_kib "$pid")
  [[ $proxy == tlstap && -n ${PROXY_PID[recorder]:-} ]] &&
    recorder_before=$(tree_rss_kib "${PROXY_PID[recorder]}")
  spawn "$WORK/idle-$proxy.log" python3 "$BENCH_DIR/idle-connections.py" 127.0.0.1 "$port" \
    "$SERVER_NAME" "$WORK/bench.pem" "$IDLE_CONNECTIONS" /small
  local client=$SPAWNED_PID deadline=$((SECONDS + 120))
  while ! grep -q '^ready' "$WORK/idle-$proxy.log" && process_alive "$client" &&
    ((SECONDS < deadline)); do
    sleep 0.2
  done
  # Let deferred frees and the proxy's last writes settle before reading RSS.
  sleep 1
  local after recorder_after='' alone_after
  after=$(tree_rss_kib "$pid")
  alone_after=$(process_rss_kib "$pid")
  [[ -n $recorder_before ]] && recorder_after=$(tree_rss_kib "${PROXY_PID[recorder]}")
  local ready
  ready=$(grep '^ready' "$WORK/idle-$proxy.log" || true)
  stop_pids 30 "$client"
  wait "$client" 2> /dev/null || true
  {
    echo "before_kib=$before"
    echo "after_kib=$after"
    echo "connections=$(sed -n 's/.*connections=\([0-9]*\).*/\1/p' <<< "$ready")"
    echo "sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' <<< "$ready")"
    echo "received=$(sed -n 's/.*received=\([0-9]*\).*/\1/p' <<< "$ready")"
    echo "alone_before_kib=$alone_before"
    echo "alone_after_kib=$alone_after"
    echo "recorder_before_kib=$recorder_before"
    echo "recorder_after_kib=$recorder_after"
  } > "$out.summary"
  grep -v -e '^ready' -e '^closed' "$WORK/idle-$proxy.log" > "$out.errors" || true
  sleep 1
}

# run_wrk PROXY PHASE CONNECTIONS PATH [WRK-OPTION...]: one timed wrk run; totals in
# $WORK/wrk-PROXY-PHASE.summary, the shim's handshake count in .handshakes.
run_wrk() {
  local proxy=$1 phase=$2 connections=$3 path=$4
  shift 4
  local port=${PROXY_PORT[$proxy]} base=$WORK/wrk-$proxy-$phase
  process_alive "${PROXY_PID[$proxy]}" || return 0
  [[ $proxy == tlstap ]] && mark_window "$phase"
  progress "$phase: $proxy ($connections connections, $RUN_SECONDS s)"
  local cpu_before alone_before
  cpu_before=$(tlstap_aware_cpu_ticks "$proxy")
  alone_before=$(process_cpu_ticks "${PROXY_PID[$proxy]}")
  # The shim goes into wrk only, through env after timeout: loaded into timeout too, its report
  # at timeout's exit would overwrite wrk's with zeros. The client's CPU time (bash's time)
  # shows whether the client, rather than the proxy, was the limit.
  local TIMEFORMAT='client_cpu_seconds=%U+%S'
  local client=(env LD_PRELOAD="$WORK/wrk-full-handshake.so" WRK_SUMMARY="$base.summary"
    WRK_FULL_HANDSHAKE_REPORT="$base.handshakes"
    wrk -t1 -c"$connections" -d"${RUN_SECONDS}s" --timeout 5s -s "$BENCH_DIR/wrk-summary.lua")
  {
    time timeout -k 5 $((RUN_SECONDS + 30)) "${client[@]}" "$@" \
      "https://$SERVER_NAME:$port$path" > "$base.out" 2>&1 ||
      progress "wrk against $proxy failed: $(tail -n 2 "$base.out")"
  } 2> "$base.time"
  {
    echo "cpu_ticks=$(($(tlstap_aware_cpu_ticks "$proxy") - cpu_before))"
    echo "alone_cpu_ticks=$(($(process_cpu_ticks "${PROXY_PID[$proxy]}") - alone_before))"
    echo "client_cpu_seconds=$(calc "$(sed -n 's/^client_cpu_seconds=//p' "$base.time")")"
  } >> "$base.summary"
  # What wrk left in flight drains before the next run starts.
  sleep 1
}

# tlstap_aware_cpu_ticks PROXY: CPU time (clock ticks) the proxy's processes have used; for
# tlstap with an external recorder, the recorder's too: recording is part of tlstap's cost.
tlstap_aware_cpu_ticks() {
  local ticks
  ticks=$(tree_cpu_ticks "${PROXY_PID[$1]}")
  if [[ $1 == tlstap && -n ${PROXY_PID[recorder]:-} ]]; then
    ticks=$((ticks + $(tree_cpu_ticks "${PROXY_PID[recorder]}")))
  fi
  echo "$ticks"
}

# exact_check: 1 MiB downloads through tlstap-front over 4 keep-alive connections, by curl,
# which reports every byte it wrote and read; unlike wrk it ends each transfer before it exits,
# so the pcap must match it to the byte.
exact_check() {
  local port=${PROXY_PORT[tlstap]} i
  process_alive "${PROXY_PID[tlstap]}" || return 0
  progress "recording check: $EXACT_DOWNLOADS x 1 MiB through tlstap with curl"
  mark_window exact
  for ((i = 0; i < EXACT_DOWNLOADS; i++)); do
    echo "url = \"https://$SERVER_NAME:$port/1m.bin\""
    echo "output = \"/dev/null\""
  done > "$WORK/exact.curl"
  timeout -k 5 120 curl -sS --http1.1 --parallel --parallel-max 4 --max-time 60 \
    --cacert "$WORK/bench.pem" -K "$WORK/exact.curl" \
    -w '%{http_code} %{size_request} %{size_header} %{size_download}\n' \
    > "$WORK/exact.txt" 2> "$WORK/exact.err" ||
    progress "curl in the recording check failed: $(tail -n 2 "$WORK/exact.err")"
  sleep 1
}

# stop_tlstap: SIGTERM, as a service manager would; the front must flush and close the pcap (or,
# with an external recorder, finish shipping; the recorder then gets its own SIGTERM).
stop_tlstap() {
  stop_and_wait tlstap FRONT_EXIT
  [[ -n ${PROXY_PID[recorder]:-} ]] && stop_and_wait recorder RECORDER_EXIT
  return 0
}

# stop_and_wait NAME VARIABLE: SIGTERM to PROXY_PID[NAME]; VARIABLE describes how it ended.
stop_and_wait() {
  local name=$1 variable=$2
  local pid=${PROXY_PID[$name]} started=$SECONDS status=0
  if ! process_alive "$pid"; then
    wait "$pid" 2> /dev/null || status=$?
    printf -v "$variable" 'DIED during the run (exit status %s)' "$status"
    return 0
  fi
  kill -TERM "$pid" 2> /dev/null || true
  local deadline=$((SECONDS + 60))
  while process_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if process_alive "$pid"; then
    printf -v "$variable" 'still running 60 s after SIGTERM (killed)'
    kill -KILL "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    return 0
  fi
  wait "$pid" 2> /dev/null || status=$?
  printf -v "$variable" 'exit status %s, %s s after SIGTERM' "$status" "$((SECONDS - started))"
}

# --- report ---------------------------------------------------------------------------------------

# build_source: the source tree the front was built from and its commit (read-only git commands;
# uncommitted changes in that tree are not shown).
build_source() {
  local source
  source=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD_DIR/CMakeCache.txt" 2> /dev/null)
  [[ -n $source ]] || { echo "an unknown source tree"; return; }
  echo "$source at $(git -C "$source" rev-parse --short HEAD 2> /dev/null || echo "?")"
}

# figure PROXY KIND: one number of the table, "-" when there is none.
figure() {
  local proxy=$1 kind=$2 file
  case $kind in
    bulk | small | handshakes)
      file=$WORK/wrk-$proxy-$kind.summary
      local requests bytes duration
      requests=$(value "$file" requests)
      bytes=$(value "$file" bytes)
      duration=$(value "$file" duration_us)
      if [[ -z $requests || -z $duration || $duration == 0 ]]; then
        echo "-"
      elif [[ $kind == bulk ]]; then
        calc "sprintf(\"%.0f\", $bytes / $duration)" # bytes per microsecond = MB/s
      else
        calc "sprintf(\"%.0f\", $requests * 1000000 / $duration)"
      fi
      ;;
    cpu-bulk | cpu-small | cpu-handshakes)
      # CPU microseconds the proxy spent per MB (bulk) or per request (the others).
      file=$WORK/wrk-$proxy-${kind#cpu-}.summary
      local ticks count
      ticks=$(value "$file" cpu_ticks)
      count=$(value "$file" requests)
      [[ $kind == cpu-bulk ]] && count=$(calc "$(value "$file" bytes) / 1000000")
      if [[ -z $ticks || -z $count ]]; then
        echo "-"
      else
        calc "($count > 0) ? sprintf(\"%.0f\", $ticks * 1000000 / $CLOCK_TICKS / $count) : \"-\""
      fi
      ;;
    memory)
      file=$WORK/idle-$proxy.summary
      local before after connections
      before=$(value "$file" before_kib)
      after=$(value "$file" after_kib)
      connections=$(value "$file" connections)
      if [[ -z $connections || $connections == 0 ]]; then
        echo "-"
      else
        calc "sprintf(\"%.1f\", ($after - $before) / $connections)"
      fi
      ;;
  esac
}

ratio() {
  [[ $1 == - || $2 == - ]] && { echo "-"; return; }
  calc "($2 > 0) ? sprintf(\"%.2f\", $1 / $2) : \"-\""
}

# verdict KIND TLSTAP HITCH: whether DESIGN.md's target is met.
verdict() {
  local kind=$1 tlstap=$2 hitch=$3
  [[ $kind == bulk || $kind == handshakes || $kind == memory ]] || return 0
  [[ $tlstap == - ]] && { echo "no figure"; return; }
  case $kind in
    bulk | handshakes)
      [[ $hitch == - ]] && { echo "-"; return; }
      calc "($tlstap >= $hitch) ? \"met\" : \"NOT met\""
      ;;
    memory) calc "($tlstap <= 16) ? \"met\" : \"NOT met\"" ;;
  esac
}

print_results() {
  local -A label=(
    [bulk]="bulk MB/s (1 MiB, ${BULK_CONNECTIONS} conn)"
    [small]="small req/s (${SMALL_CONNECTIONS} conn)"
    [handshakes]="full handshakes/s (${HANDSHAKE_CONNECTIONS} conn)"
    [memory]="KiB per idle conn (${IDLE_CONNECTIONS})"
    [cpu-bulk]="bulk: proxy CPU us per MB"
    [cpu-small]="small: proxy CPU us per request"
    [cpu-handshakes]="handshakes: proxy CPU us per conn"
  )
  local -A target=(
    [bulk]=">= hitch"
    [small]="(none)"
    [handshakes]=">= hitch"
    [memory]="<= 16 (HAProxy ~17, hitch ~49)"
    [cpu-bulk]=""
    [cpu-small]=""
    [cpu-handshakes]=""
  )
  echo
  echo "tlstap benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1))"
  echo "client (wrk, 1 thread), proxy (1 worker) and backend (nginx, 1 worker) share these $(nproc) cores;"
  echo "nothing pinned; load average at start: $LOAD_AT_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg). Same ECDSA P-256 certificate for all."
  echo "wrk runs: $RUN_SECONDS s each; bulk MB/s = 10^6 bytes/s of HTTP responses (headers + body)."
  echo "tlstap-front: $FRONT, built $(date -u -r "$FRONT" '+%Y-%m-%d %H:%M UTC') from $(build_source)"
  echo "recording: $RECORDER_MODE"
  echo
  printf '%-40s %10s %10s %10s %12s %14s  %-34s %s\n' figure hitch haproxy tlstap \
    tlstap/hitch tlstap/haproxy "target (DESIGN.md)" ""
  local kind hitch haproxy tlstap
  for kind in bulk small handshakes memory - cpu-bulk cpu-small cpu-handshakes; do
    if [[ $kind == - ]]; then
      echo "CPU the proxy used (tlstap: front + recorder), lower is better; less sensitive than the"
      echo "rates above to what else runs on the machine, and to the client taking its share:"
      continue
    fi
    hitch=$(figure hitch "$kind")
    haproxy=$(figure haproxy "$kind")
    tlstap=$(figure tlstap "$kind")
    printf '%-40s %10s %10s %10s %12s %14s  %-34s %s\n' "${label[$kind]}" "$hitch" "$haproxy" \
      "$tlstap" "$(ratio "$tlstap" "$hitch")" "$(ratio "$tlstap" "$haproxy")" "${target[$kind]}" \
      "$(verdict "$kind" "$tlstap" "$hitch")"
  done
  if [[ -n ${PROXY_PORT[tlstap-re]:-} ]]; then
    echo "(re): tlstap-re, a tlstap-front re-encrypting (no --terminate) to nginx's TLS port,"
    echo "recording; hitch and HAProxy still terminate (the same figures as above):"
    for kind in bulk small handshakes memory cpu-bulk cpu-small cpu-handshakes; do
      hitch=$(figure hitch "$kind")
      haproxy=$(figure haproxy "$kind")
      tlstap=$(figure tlstap-re "$kind")
      printf '%-40s %10s %10s %10s %12s %14s  %-34s %s\n' "(re) ${label[$kind]}" \
        "$hitch" "$haproxy" "$tlstap" "$(ratio "$tlstap" "$hitch")" \
        "$(ratio "$tlstap" "$haproxy")" "" ""
    done
  fi
  echo "The rates are for the client, proxy and backend together on shared cores: the client's own"
  echo "CPU (run details) limits them too, most for full handshakes, where the OpenSSL client spends"
  echo "about as much per handshake as the server. The CPU rows compare the proxies' own work."
  echo
  echo "TLS as an OpenSSL client (wrk's library) negotiates it:"
  local proxy
  for proxy in "${PROXIES[@]}"; do echo "${TLS_LINE[$proxy]}"; done
  print_run_details
}

# Everything that would make a figure wrong or explain it: client errors, resumed handshakes, a
# client that used a whole core (then it, not the proxy, was the limit), failed idle connections,
# where tlstap's CPU and memory went (front or recorder), proxies that died.
print_run_details() {
  echo
  echo "run details (CPU in % of one core over the run; wrk errors: connect/read/write/status/timeout):"
  local proxy phase file
  for proxy in "${PROXIES[@]}"; do
    for phase in bulk small handshakes; do
      file=$WORK/wrk-$proxy-$phase.summary
      if [[ ! -f $file ]]; then
        printf '  %-8s %-10s not run\n' "$proxy" "$phase"
        continue
      fi
      local seconds proxy_cpu client_cpu split=""
      seconds=$(calc "$(value "$file" duration_us) / 1000000")
      proxy_cpu=$(calc "sprintf(\"%.0f\", 100 * $(value "$file" cpu_ticks) / $CLOCK_TICKS / $seconds)")
      client_cpu=$(calc "sprintf(\"%.0f\", 100 * $(value "$file" client_cpu_seconds) / $seconds)")
      if [[ $proxy == tlstap* ]]; then
        local alone
        alone=$(calc "sprintf(\"%.0f\", 100 * $(value "$file" alone_cpu_ticks) / $CLOCK_TICKS / $seconds)")
        split=" (front $alone%, recorder $((proxy_cpu - alone))%)"
      fi
      printf '  %-8s %-10s %7s req in %4.1f s, errors %s/%s/%s/%s/%s, %s, proxy CPU %s%%%s, client CPU %s%%\n' \
        "$proxy" "$phase" "$(value "$file" requests)" "$seconds" \
        "$(value "$file" errors_connect)" "$(value "$file" errors_read)" \
        "$(value "$file" errors_write)" "$(value "$file" errors_status)" \
        "$(value "$file" errors_timeout)" \
        "$(cat "$WORK/wrk-$proxy-$phase.handshakes" 2> /dev/null || echo "no shim report")" \
        "$proxy_cpu" "$split" "$client_cpu"
    done
    file=$WORK/idle-$proxy.summary
    if [[ -f $file ]]; then
      local connections line
      connections=$(value "$file" connections)
      line="$connections/$IDLE_CONNECTIONS connections open, RSS $(value "$file" before_kib) -> $(value "$file" after_kib) KiB"
      if [[ $proxy == tlstap* ]]; then
        local alone
        alone=$(calc "sprintf(\"%.1f\", ($(value "$file" alone_after_kib) - $(value "$file" alone_before_kib)) / ($connections > 0 ? $connections : 1))")
        if [[ -n $(value "$file" recorder_before_kib) ]]; then
          line+="; external tlstap-recorder (not in the figure): RSS $(value "$file" recorder_before_kib) -> $(value "$file" recorder_after_kib) KiB"
        else
          line+="; the front process alone: $alone KiB per connection, its recorder the rest"
        fi
      fi
      [[ -s $WORK/idle-$proxy.errors ]] && line+=" ($(head -n 1 "$WORK/idle-$proxy.errors"))"
      printf '  %-8s %-10s %s\n' "$proxy" idle "$line"
    fi
    if ! process_alive "${PROXY_PID[$proxy]}" && [[ $proxy != tlstap* ]]; then
      echo "  $proxy DIED during the run; last lines of its log:"
      tail -n 5 "$WORK/$proxy.log" | sed 's/^/    /'
    fi
  done
}

# check_recording: the pcap, phase by phase, against what the clients wrote and read.
check_recording() {
  echo
  echo "recording check: tlstap-front $FRONT_EXIT${RECORDER_EXIT:+; tlstap-recorder $RECORDER_EXIT}"
  echo "TCP payload bytes in the pcap vs the bytes the clients wrote (c->s) and read (s->c):"
  local pcap=$WORK/bench.pcap
  if [[ ! -s $pcap ]]; then
    echo "  NO PCAP: $pcap is missing or empty; every relayed byte is unrecorded"
    echo "  last lines of the front's log:"
    tail -n 5 "$WORK/tlstap.log" | sed 's/^/    /'
    return 0
  fi
  local counts
  counts=$(python3 "$BENCH_DIR/pcap-payload.py" "$pcap" "$PCAP_PORT" "${WINDOWS[@]}" 2>&1) || true
  echo "  pcap: $(du -h "$pcap" | cut -f1), read by bench/pcap-payload.py$(grep -q truncated <<< "$counts" && echo ", TRUNCATED")"
  printf '  %-11s %14s %14s %10s %15s %15s %12s  %s\n' phase "pcap c->s" "client c->s" diff \
    "pcap s->c" "client s->c" diff verdict
  local index name
  for index in "${!WINDOWS[@]}"; do
    name=${WINDOWS[$index]%%=*}
    local pcap_c2s pcap_s2c
    pcap_c2s=$(sed -n "s/^$name c2s=\([0-9]*\) .*/\1/p" <<< "$counts")
    pcap_s2c=$(sed -n "s/^$name .*s2c=\([0-9]*\) .*/\1/p" <<< "$counts")
    expected_bytes "$name"
    local diff_c2s=$((pcap_c2s - EXPECT_C2S)) diff_s2c=$((pcap_s2c - EXPECT_S2C))
    printf '  %-11s %14s %14s %10s %15s %15s %12s  %s\n' "$name" "$pcap_c2s" "$EXPECT_C2S" \
      "$diff_c2s" "$pcap_s2c" "$EXPECT_S2C" "$diff_s2c" \
      "$(recording_verdict "$diff_c2s" "$diff_s2c")"
    [[ $name == bulk || $name == small ]] && compare_with_front_log "$index" "$pcap_c2s" "$pcap_s2c"
  done
  local before
  before=$(sed -n 's/^before \(.*\)/\1/p' <<< "$counts")
  [[ $before == "c2s=0 s2c=0 packets=0" ]] || echo "  before the first phase: $before"
  echo "  warmup, idle, exact: the clients count every byte; the difference must be 0. wrk phases"
  echo "  end with wrk's exit while each connection has a request in flight: the pcap may hold up to"
  echo "  one request and one response per connection more than wrk counted, never less; the"
  echo "  \"front log\" line then compares with the front's own per-connection counts instead."
  grep -i -e truncated -e error <<< "$counts" | sed 's/^/  /' || true
  if [[ -n ${REENCRYPT_EXIT:-} ]]; then
    echo "  tlstap-re (re-encrypting, its own pcap, not checked byte by byte): $REENCRYPT_EXIT;"
    echo "  its summary: $(grep -m 1 'info: recording:' "$WORK/tlstap-re.log" |
      sed 's/^.*recording: //')"
  fi
}

# compare_with_front_log WINDOW-INDEX PCAP-C2S PCAP-S2C: wrk cannot count what it left in flight,
# but the front logs, for each connection the client resets, the bytes it read from each side
# ("(N bytes from client, M from backend)"). wrk resets every keep-alive connection when it exits,
# so when the phase logged one such line per wrk connection, their sums are everything the front
# relayed in that phase, and the pcap must hold exactly that.
compare_with_front_log() {
  local index=$1 pcap_c2s=$2 pcap_s2c=$3 name=${WINDOWS[$1]%%=*}
  local first=$((WINDOW_LOG_LINES[index] + 1)) last='$'
  ((index + 1 < ${#WINDOWS[@]})) && last=${WINDOW_LOG_LINES[index + 1]}
  local sums
  # Sums print with %.0f: Debian's mawk prints large numbers as %g and caps %d at 2^31 - 1.
  sums=$(sed -n "${first},${last}p" "$WORK/tlstap.log" |
    sed -n 's/.*(\([0-9]*\) bytes from client, \([0-9]*\) from backend).*/\1 \2/p' |
    awk '{c += $1; s += $2; n++} END {printf "%d %.0f %.0f\n", n, c, s}')
  local logged front_c2s front_s2c connections
  read -r logged front_c2s front_s2c <<< "$sums"
  connections=$(sed -n 's/.* and \([0-9]*\) connections.*/\1/p' "$WORK/wrk-tlstap-$name.out")
  if [[ $logged != "${connections:-x}" ]]; then
    # wrk closes a connection with nothing in flight with a FIN (the front logs nothing), one
    # with a request in flight gets reset when the response arrives: then the c->s difference
    # is exactly one request per reset connection.
    local request_bytes diff
    request_bytes=$(value "$WORK/wrk-tlstap-$name.summary" request_bytes)
    diff=$((pcap_c2s - EXPECT_C2S))
    local consistent="consistent"
    ((diff == logged * ${request_bytes:-0})) || consistent="NOT consistent"
    echo "    front log: $logged of $connections connections reset at wrk's exit, the others closed" \
      "idle; c->s difference $diff = $logged x $request_bytes-byte requests: $consistent"
    return 0
  fi
  local verdict="exact: the pcap holds every byte the front relayed"
  ((pcap_c2s == front_c2s && pcap_s2c == front_s2c)) ||
    verdict="MISMATCH with the front's own count"
  printf '    %-9s %14s %14s %10s %15s %15s %12s  %s\n' "front log" "$pcap_c2s" "$front_c2s" \
    "$((pcap_c2s - front_c2s))" "$pcap_s2c" "$front_s2c" "$((pcap_s2c - front_s2c))" "$verdict"
}

# expected_bytes PHASE: sets EXPECT_C2S, EXPECT_S2C (what the clients counted) and INFLIGHT_C2S,
# INFLIGHT_S2C (how much more the pcap may hold because wrk stopped mid-request; 0 for exact
# phases).
expected_bytes() {
  local phase=$1 file
  INFLIGHT_C2S=0
  INFLIGHT_S2C=0
  case $phase in
    warmup)
      EXPECT_C2S=$(awk '{s += $2} END {printf "%.0f\n", s}' "$WORK/warmup-tlstap.txt" 2> /dev/null || echo 0)
      EXPECT_S2C=$(awk '{s += $3 + $4} END {printf "%.0f\n", s}' "$WORK/warmup-tlstap.txt" 2> /dev/null || echo 0)
      ;;
    idle)
      EXPECT_C2S=$(value "$WORK/idle-tlstap.summary" sent)
      EXPECT_S2C=$(value "$WORK/idle-tlstap.summary" received)
      ;;
    exact)
      EXPECT_C2S=$(awk '{s += $2} END {printf "%.0f\n", s}' "$WORK/exact.txt" 2> /dev/null || echo 0)
      EXPECT_S2C=$(awk '{s += $3 + $4} END {printf "%.0f\n", s}' "$WORK/exact.txt" 2> /dev/null || echo 0)
      ;;
    bulk | small | handshakes)
      file=$WORK/wrk-tlstap-$phase.summary
      local requests request_bytes connections response
      requests=$(value "$file" requests)
      request_bytes=$(value "$file" request_bytes)
      EXPECT_C2S=$((${requests:-0} * ${request_bytes:-0}))
      EXPECT_S2C=$(value "$file" bytes)
      connections=$(sed -n 's/.* and \([0-9]*\) connections.*/\1/p' "$WORK/wrk-tlstap-$phase.out")
      # The largest response of the phase: the warm-up measured both (+ slack for headers that
      # differ, e.g. "Connection: close").
      if [[ $phase == bulk ]]; then
        response=$(awk '{print $3 + $4}' "$WORK/warmup-tlstap.txt" 2> /dev/null | sort -n | tail -n 1)
      else
        response=$(awk '{print $3 + $4}' "$WORK/warmup-tlstap.txt" 2> /dev/null | sort -n | head -n 1)
      fi
      INFLIGHT_C2S=$((${connections:-0} * ${request_bytes:-0}))
      INFLIGHT_S2C=$((${connections:-0} * (${response:-0} + 64)))
      ;;
  esac
  EXPECT_C2S=${EXPECT_C2S:-0}
  EXPECT_S2C=${EXPECT_S2C:-0}
}

recording_verdict() {
  local c2s=$1 s2c=$2
  if ((c2s < 0 || s2c < 0)); then
    echo "LOST: the pcap holds less than the client exchanged"
  elif ((c2s == 0 && s2c == 0)); then
    echo "exact"
  elif ((c2s <= INFLIGHT_C2S && s2c <= INFLIGHT_S2C)); then
    echo "ok: in flight when wrk stopped (at most ${INFLIGHT_C2S} / ${INFLIGHT_S2C})"
  else
    echo "MISMATCH: more than in flight (at most ${INFLIGHT_C2S} / ${INFLIGHT_S2C})"
  fi
}

# --- main -----------------------------------------------------------------------------------------

main() {
  [[ $(id -u) == 0 ]] || fail "run as root (hitch drops to nobody, install-deps needs apt)"
  install_and_build
  raise_file_limit
  check_name_resolution
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/tlstap-bench.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
  CLOCK_TICKS=$(getconf CLK_TCK)
  progress "work directory $WORK; front $FRONT"
  # One self-signed ECDSA P-256 certificate for every proxy: bench.pem, and bench-bundle.pem
  # (certificate then key), the one-file form hitch, HAProxy and tlstap-front all read.
  make_cert bench bench.example "$SERVER_NAME"
  make_shim
  make_content
  start_servers

  declare -gA TLS_LINE
  local proxy
  for proxy in "${PROXIES[@]}"; do
    [[ $proxy == tlstap ]] && mark_window warmup
    TLS_LINE[$proxy]=$(tls_parameters "$proxy")
    warm_up "$proxy"
  done
  # Memory first, while every proxy is fresh: after the throughput runs, memory the allocator
  # kept from them would be reused by the idle connections and hide their cost.
  for proxy in "${PROXIES[@]}"; do
    progress "memory: $IDLE_CONNECTIONS idle connections through $proxy"
    measure_idle_memory "$proxy"
  done
  # Each measurement for all proxies back to back, so that a change in the machine's background
  # load hits one figure of all three rather than all figures of one.
  for proxy in "${PROXIES[@]}"; do
    run_wrk "$proxy" bulk "$BULK_CONNECTIONS" /1m.bin
  done
  for proxy in "${PROXIES[@]}"; do
    run_wrk "$proxy" small "$SMALL_CONNECTIONS" /small
  done
  for proxy in "${PROXIES[@]}"; do
    run_wrk "$proxy" handshakes "$HANDSHAKE_CONNECTIONS" /small -H 'Connection: close'
  done
  exact_check

  local front_alive=yes
  process_alive "${PROXY_PID[tlstap]}" || front_alive=no
  progress "stopping tlstap-front (SIGTERM) and reading its pcap"
  stop_tlstap
  [[ -z ${PROXY_PID[tlstap-re]:-} ]] || stop_and_wait tlstap-re REENCRYPT_EXIT

  print_results
  if [[ $front_alive == no ]]; then
    echo "  tlstap-front DIED during the run; last lines of its log:"
    tail -n 5 "$WORK/tlstap.log" | sed 's/^/    /'
  fi
  echo "  tlstap-front log: $(wc -l < "$WORK/tlstap.log") lines"
  check_recording
  echo
  echo "total time: $SECONDS s"
}

main "$@"
