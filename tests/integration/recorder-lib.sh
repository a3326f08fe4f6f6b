# Shared by the test-recorder-*.sh scenarios (sourced, not run): where the binaries are, a work
# directory that is kept when a test fails, and starting / stopping tlstap-recorder.
set -euo pipefail

: "${TLSTAP_BUILD:?set TLSTAP_BUILD to the build directory}"
: "${TLSTAP_SOURCE:?set TLSTAP_SOURCE to the source directory}"
RECORDER=$TLSTAP_BUILD/recorder/tlstap-recorder
REPLAY=$TLSTAP_BUILD/tests/replay-client
CHECK=(python3 "$TLSTAP_SOURCE/tests/integration/recorder_check.py")
for needed in "$RECORDER" "$REPLAY"; do
  [[ -x $needed ]] || { echo "FAIL: $needed is not built"; exit 1; }
done
for tool in tshark mergecap python3; do
  if ! command -v $tool > /dev/null; then
    echo "FAIL: $tool is not installed (tests/install-deps.sh)"
    exit 1
  fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tlstap-$(basename "$0" .sh).XXXXXX")
BACKGROUND=()
PASSED=0

cleanup() {
  local pid
  for pid in "${BACKGROUND[@]}"; do kill "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
  if [[ $PASSED == 1 ]]; then
    rm -rf "$WORK"
  else
    echo "work directory kept: $WORK"
    for log in "$WORK"/*.log; do
      [[ -f $log ]] && { echo "--- last lines of $log"; tail -n 20 "$log"; }
    done
  fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  exit 1
}

pass() {
  PASSED=1
  echo "PASS: $(basename "$0" .sh) ($SECONDS s)"
}

# Runs a command in the background and remembers it, so cleanup never leaves it behind.
background() {
  "$@" &
  BACKGROUND+=($!)
}

# wait_for TIMEOUT_SECONDS DESCRIPTION COMMAND...: polls until COMMAND succeeds.
wait_for() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for $what"
    sleep 0.1
  done
}

# start_recorder LOG ARGS...: starts tlstap-recorder and waits for its "listening on" line.
# Sets RECORDER_PID.
start_recorder() {
  local log=$1
  shift
  "$RECORDER" "$@" > "$log" 2>&1 &
  RECORDER_PID=$!
  BACKGROUND+=($RECORDER_PID)
  local deadline=$((SECONDS + 10))
  until grep -q "info: listening on" "$log"; do
    recorder_alive || fail "tlstap-recorder exited at start-up: $(cat "$log")"
    ((SECONDS < deadline)) || fail "tlstap-recorder did not log 'listening on' within 10 s"
    sleep 0.1
  done
}

# True while the process runs (kill -0 is not enough: it also succeeds on a zombie).
process_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2> /dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

recorder_alive() {
  process_alive "$RECORDER_PID"
}

# stop_recorder: SIGTERM, then the recorder must finish what is queued and exit 0 within 60 s.
stop_recorder() {
  kill -TERM "$RECORDER_PID"
  local deadline=$((SECONDS + 60))
  while recorder_alive; do
    ((SECONDS < deadline)) || fail "tlstap-recorder still running 60 s after SIGTERM"
    sleep 0.1
  done
  local status=0
  wait "$RECORDER_PID" || status=$?
  [[ $status == 0 ]] || fail "tlstap-recorder exited with status $status after SIGTERM"
}
