#!/usr/bin/env bash
# SIGTERM at any moment of start-up: tlstap-front (with its embedded recorder) and
# tlstap-recorder each get SIGTERM 0 to 100 ms after they began (once main() runs:
# their /proc status shows SIGTERM blocked or caught), many times over. Every time the process
# ends through its usual shutdown with status 0, never killed by the signal (143) or a core, and
# leaves no recorder behind. Many of the front's signals must arrive before it has finished
# starting (its last start-up line): that is the window this test is about.
. "$(dirname "$0")/lib.sh"
require_tools openssl

ROUNDS=${TLSTAP_SIGNAL_ROUNDS:-24}
SIGTERM_BIT=$((1 << 14))  # bit 15 - 1 of the SigBlk/SigCgt masks

# handles_sigterm PID PROGRAM: true once PROGRAM's own main() runs in PID: SIGTERM is blocked
# (start-up) or has a handler (the front's loop). Before the exec, the shell's child catches
# SIGTERM itself (for its EXIT trap), so the program must be running first.
handles_sigterm() {
  local key value
  [[ $(readlink "/proc/$1/exe" 2> /dev/null) == "$2" ]] || return 1
  # Shell built-ins from here: a start takes some 50 ms, and the poll must not take most of it.
  while read -r key value; do
    if [[ $key == SigBlk: || $key == SigCgt: ]] && (((16#$value & SIGTERM_BIT) != 0)); then
      return 0
    fi
  done < "/proc/$1/status" 2> /dev/null
  return 1
}

# one_round NAME LOG STARTED COMMAND...: starts COMMAND, sends SIGTERM 0-100 ms after
# its main() began, and checks that it exits 0 within 30 s. Counts in EARLY the rounds whose
# signal came before the log held STARTED (the line that ends start-up).
one_round() {
  local name=$1 log=$2 started=$3
  shift 3
  spawn "$log" "$@"
  local pid=$SPAWNED_PID
  local deadline=$((SECONDS + 10))
  until handles_sigterm "$pid" "$1"; do
    process_alive "$pid" || fail "$name: exited before any signal: $(cat "$log")"
    ((SECONDS < deadline)) || fail "$name: main() did not start within 10 s"
  done
  # A start takes some 20 to 50 ms from here (more on a loaded machine): a third of the
  # signals come at once, a third within 20 ms, a third within 100 ms.
  local delay_ms=0
  ((ROUND % 3 == 0)) || delay_ms=$((RANDOM % (ROUND % 3 == 1 ? 21 : 101)))
  ((delay_ms == 0)) || sleep "$(printf '0.%03d' "$delay_ms")"
  grep -q "$started" "$log" || EARLY[$name]=1
  kill -TERM "$pid"
  deadline=$((SECONDS + 30))
  while process_alive "$pid"; do
    ((SECONDS < deadline)) || fail "$name: still running 30 s after SIGTERM at $delay_ms ms"
    sleep 0.02
  done
  local status=0
  wait "$pid" 2> /dev/null || status=$?
  [[ $status == 0 ]] ||
    fail "$name: SIGTERM $delay_ms ms after start: exit status $status: $(tail -n 3 "$log")"
  grep -q "stopping\|signal 15\|SIGTERM" "$log" ||
    fail "$name: SIGTERM $delay_ms ms after start: no shutdown line: $(tail -n 3 "$log")"
  DELAYS+=("$delay_ms")
}

make_cert site www.example.com
FRONT_PORT=$(free_port)
PCAP_PORT=$(free_port)
REC_PCAP_PORT=$(free_port)
mkdir "$WORK/rec"
give_to_recorder_user "$WORK/rec"
DELAYS=()
declare -A EARLY=()

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  one_round "front $ROUND" "$WORK/front-$ROUND.log" "terminating TLS on" "$FRONT" --terminate \
    --connect 127.0.0.1 -p "$FRONT_PORT,80,$(free_port)" \
    --servercert "www.example.com:$WORK/site-bundle.pem" -o "$WORK/captures" \
    --pcapoverip "127.0.0.1:$PCAP_PORT"
  one_round "recorder $ROUND" "$WORK/recorder-$ROUND.log" "listening on" "$RECORDER" \
    --listen "unix:$WORK/rec.sock" -o "$WORK/rec" --pcapoverip "127.0.0.1:$REC_PCAP_PORT"
done

# The embedded recorders ended with their fronts.
if pgrep -f -- "-o $WORK/captures" > /dev/null; then
  fail "a recorder outlived its front: $(pgrep -af -- "-o $WORK/captures")"
fi
early_fronts=0 early_recorders=0
for name in "${!EARLY[@]}"; do
  if [[ $name == front* ]]; then ((++early_fronts)); else ((++early_recorders)); fi
done
((early_fronts >= ROUNDS / 4)) ||
  fail "only $early_fronts of $ROUNDS fronts got SIGTERM before they had started: the window" \
    "was hardly tried"
sorted=$(printf '%s\n' "${DELAYS[@]}" | sort -n | tr '\n' ' ')
note "$((2 * ROUNDS)) starts ended by SIGTERM, all with status 0 ($early_fronts fronts and" \
  "$early_recorders recorders signalled before they had started); delays (ms): $sorted"
pass
