# Shared by the test-recorder-*.sh scenarios (sourced, not run): lib.sh (work directory, spawn,
# fail/pass, wait_for, start_recorder / stop_recorder) and what only these scenarios use: the
# replay client and the capture checker.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPLAY=$TLSTAP_BUILD/tests/replay-client
CHECK=(python3 "$TLSTAP_SOURCE/tests/integration/recorder_check.py")
require_built "$RECORDER" "$REPLAY"
require_tools tshark mergecap python3

recorder_alive() {
  process_alive "$RECORDER_PID"
}
