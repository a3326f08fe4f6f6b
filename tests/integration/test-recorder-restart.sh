#!/usr/bin/env bash
# The recorder dies under load (kill -9) and the front must lose nothing it can keep:
#  1. external recorder killed and started again within the buffer window (--recorder-down block,
#     the default): every byte of 20 parallel 5 MiB downloads is in the merged capture, and a byte
#     sent again (written by the dead recorder, never acknowledged) is identical, at the same
#     sequence number;
#  2. a long outage with --recorder-down pass: the downloads go on at full speed, and the bytes the
#     front logs as not recorded are exactly the holes in the capture;
#  3. a long outage with block: the downloads stall (the front relays nothing) until the recorder
#     is back, then finish, and nothing is lost;
#  4. the embedded recorder killed: its supervisor starts a new one, the front resumes on it.
# Each prints bytes relayed (what curl got), recorded (unique bytes in the capture) and lost.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/recorder-faults.sh"
require_tools curl nginx tshark mergecap python3

DOWNLOADS=20  # scenario 1; the others use fewer to stay within a minute or so
serve_download

# Started as root, the front reconnects as its own user (tlstap), which must be able to reach
# the recorder sockets in the work directory: search permission only, nothing to list or read.
chmod 711 "$WORK"

# --- 1. kill -9 of an external recorder, back within the buffer window ----------------------
mkdir "$WORK/cap1" && give_to_recorder_user "$WORK/cap1"
start_recorder "$WORK/rec1a.log" --listen "unix:$WORK/rec1.sock" -o "$WORK/cap1"
start_front_to "$WORK/front1.log" --recorder "unix:$WORK/rec1.sock"
downloads short 2M
wait_recorded "$WORK/cap1" $((30 * 1024 * 1024))
kill -9 "$RECORDER_PID"
wait "$RECORDER_PID" 2> /dev/null || true
sleep 0.3
start_recorder "$WORK/rec1b.log" --listen "unix:$WORK/rec1.sock" -o "$WORK/cap1"
wait_downloads short
stop_front
stop_recorder
expect_nothing_lost short "$WORK/front1.log" "$WORK/cap1"

# --- 2. a long outage with --recorder-down pass ---------------------------------------------
DOWNLOADS=10
mkdir "$WORK/cap2" && give_to_recorder_user "$WORK/cap2"
start_recorder "$WORK/rec2a.log" --listen "unix:$WORK/rec2.sock" -o "$WORK/cap2"
start_front_to "$WORK/front2.log" --recorder "unix:$WORK/rec2.sock" --recorder-down pass
downloads pass 1M
started=$SECONDS
wait_recorded "$WORK/cap2" $((10 * 1024 * 1024))
kill -9 "$RECORDER_PID"
wait "$RECORDER_PID" 2> /dev/null || true
wait_downloads pass  # the outage does not slow them
elapsed=$((SECONDS - started))
((elapsed <= 12)) || fail "pass: the downloads took $elapsed s during the outage"
start_recorder "$WORK/rec2b.log" --listen "unix:$WORK/rec2.sock" -o "$WORK/cap2"
wait_for 10 "the link to come back" grep -q "restored after" "$WORK/front2.log"
stop_front
stop_recorder
lost=$(front_lost "$WORK/front2.log")
logged=$(sed -n 's/.*: \([0-9]*\) bytes not recorded$/\1/p' "$WORK/front2.log" |
  awk '{ s += $1 } END { print s + 0 }')
ALLOW_HOLES=1 analyse pass "$WORK/cap2"
read -r _ _ _ _ _ holes _ < "$WORK/pass.result"
((lost > 0)) || fail "pass: nothing was lost in a 10 s outage; the test did not test"
[[ $holes == "$lost" ]] ||
  fail "pass: the front counted $lost bytes lost, the capture misses $holes"
[[ $logged == "$lost" ]] || fail "pass: the per-flow lines add up to $logged, the total is $lost"
# The gap is visible where the recording goes on: segments after it, and ACKs covering it.
flags_only pass "$RESENT_FLAGS|Previous segment|ACKed segment that wasn't captured"
grep -q "Previous segment" "$WORK/pass.flags" || fail "pass: the capture does not show the gap"
report pass "$lost"

# --- 3. a long outage with block: the downloads wait for the recorder -----------------------
mkdir "$WORK/cap3" && give_to_recorder_user "$WORK/cap3"
start_recorder "$WORK/rec3a.log" --listen "unix:$WORK/rec3.sock" -o "$WORK/cap3"
start_front_to "$WORK/front3.log" --recorder "unix:$WORK/rec3.sock"
downloads block 8M  # well under a second each without the outage
wait_recorded "$WORK/cap3" $((5 * 1024 * 1024))
kill -9 "$RECORDER_PID"
wait "$RECORDER_PID" 2> /dev/null || true
under_way=$((DOWNLOADS - $(wc -l < "$WORK/block.curl")))
((under_way > 0)) || fail "block: every download finished before the kill; the test did not test"
expect_stalled block "$WORK/front3.log" 3
start_recorder "$WORK/rec3b.log" --listen "unix:$WORK/rec3.sock" -o "$WORK/cap3"
wait_downloads block
stop_front
stop_recorder
expect_nothing_lost block "$WORK/front3.log" "$WORK/cap3"
note "block: $under_way downloads under way at the kill stalled for the 4 s outage (nothing" \
  "relayed for 3 s of it) and finished after it"

# --- 4. kill -9 of the embedded recorder -----------------------------------------------------
# tlstap-front -> tlstap-recorder --supervise -> tlstap-recorder --connection-fd 3: the
# supervisor starts a new recorder, and the front takes a link to it and resumes its flows.
mkdir "$WORK/cap4" && give_to_recorder_user "$WORK/cap4"
start_front_to "$WORK/front4.log" -o "$WORK/cap4"
supervisor=$(pgrep -P "$FRONT_PID") || fail "embedded: no supervisor"
wait_for 10 "the first recorder" pgrep -P "$supervisor"
child=$(pgrep -P "$supervisor")
downloads embedded 2M
wait_recorded "$WORK/cap4" $((15 * 1024 * 1024))
kill -9 "$child"
wait_downloads embedded
new_child=$(pgrep -P "$supervisor") || fail "embedded: no recorder after the kill"
[[ $new_child != "$child" ]] || fail "embedded: the recorder was not restarted"
stop_front
expect_nothing_lost embedded "$WORK/front4.log" "$WORK/cap4"

pass
