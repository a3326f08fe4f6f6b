#!/usr/bin/env bash
# Faults on the link to a recorder on another host, under load. Two network namespaces joined by
# a veth pair stand for the front host (10.231.1.1) and the analysis host (10.231.1.2); the script
# creates them, then runs itself again inside the front host's namespace, where nginx,
# tlstap-front and the curl clients run. The recorder runs on the analysis host, reached over the
# TLS link (pre-shared key), both programs with --link-timeout 3.
#  1. kill -9 of the recorder in the middle of 16 parallel 5 MiB downloads, started again within
#     the buffer window (--recorder-down block): every byte is in the recording.
#  2. the link cut (ip link set down on the analysis host) for 8 s, longer than the link timeout:
#     the front gives the link up (the kernel's unreachable host, or else the unanswered ping) and
#     the recorder drops the silent front (keepalive, TCP_USER_TIMEOUT); the downloads stall, and
#     resume once the link is back and the front has reconnected; every byte is in the recording.
#  3. the recorder hung (SIGSTOP) on an idle link: TCP stays up, so only the front's ping notices;
#     the front gives the link up after 3 s; downloads started then stall, and finish once the
#     recorder runs again; every byte is in the recording.
# Each prints bytes relayed (what curl got), recorded (unique bytes in the capture) and lost.
# Runs as root (ip netns); all traffic stays inside the two namespaces.

if [[ -z ${LINK_FAULTS_FRONT_NS:-} ]]; then
  set -euo pipefail
  name=$(basename "$0" .sh)
  [[ $(id -u) == 0 ]] || { echo "FAIL: $name: needs root to create network namespaces"; exit 1; }
  export LINK_FAULTS_FRONT_NS=tlstap-lf-$$ LINK_FAULTS_RECORDER_NS=tlstap-lr-$$
  export LINK_FAULTS_DEVICE=lr$$
  trap 'ip netns del "$LINK_FAULTS_FRONT_NS" 2> /dev/null || true
        ip netns del "$LINK_FAULTS_RECORDER_NS" 2> /dev/null || true' EXIT
  ip netns add "$LINK_FAULTS_FRONT_NS"
  ip netns add "$LINK_FAULTS_RECORDER_NS"
  ip link add "lf$$" netns "$LINK_FAULTS_FRONT_NS" type veth \
    peer name "$LINK_FAULTS_DEVICE" netns "$LINK_FAULTS_RECORDER_NS"
  ip -n "$LINK_FAULTS_FRONT_NS" addr add 10.231.1.1/30 dev "lf$$"
  ip -n "$LINK_FAULTS_RECORDER_NS" addr add 10.231.1.2/30 dev "$LINK_FAULTS_DEVICE"
  for ns in "$LINK_FAULTS_FRONT_NS" "$LINK_FAULTS_RECORDER_NS"; do
    ip -n "$ns" link set lo up
  done
  ip -n "$LINK_FAULTS_FRONT_NS" link set "lf$$" up
  ip -n "$LINK_FAULTS_RECORDER_NS" link set "$LINK_FAULTS_DEVICE" up
  status=0
  ip netns exec "$LINK_FAULTS_FRONT_NS" bash "$0" || status=$?
  exit "$status"
fi

# --- from here on, inside the front host's namespace --------------------------------------------
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/recorder-faults.sh"
require_tools ip curl nginx tshark mergecap python3 openssl

RECORDER_NS=$LINK_FAULTS_RECORDER_NS
RECORDER_ADDRESS=10.231.1.2:4433
LINK=(--link-psk "file:$WORK/link.psk" --link-timeout 3)

link_carrier() { ip -n "$RECORDER_NS" link show "$LINK_FAULTS_DEVICE" | grep -q "state UP"; }
wait_for 10 "the veth link" link_carrier

openssl rand -hex 32 > "$WORK/link.psk"
chmod 600 "$WORK/link.psk"
serve_download

# start_remote_recorder LOG DIR: the recorder on the analysis host, writing into DIR; sets
# RECORDER_PID (ip netns exec executes it in place).
start_remote_recorder() {
  local log=$1 dir=$2
  spawn "$log" ip netns exec "$RECORDER_NS" "$RECORDER" --listen "$RECORDER_ADDRESS" \
    "${LINK[@]}" -o "$dir"
  RECORDER_PID=$SPAWNED_PID
  wait_for 10 "tlstap-recorder on the analysis host" grep -qs "info: listening on" "$log"
}

# --- 1. kill -9 of the recorder, back within the buffer window -------------------------------
DOWNLOADS=16
mkdir "$WORK/cap1" && give_to_recorder_user "$WORK/cap1"
start_remote_recorder "$WORK/rec1a.log" "$WORK/cap1"
start_front_to "$WORK/front1.log" --recorder "$RECORDER_ADDRESS" "${LINK[@]}"
downloads kill 2M
wait_recorded "$WORK/cap1" $((24 * 1024 * 1024))
kill -9 "$RECORDER_PID"
wait "$RECORDER_PID" 2> /dev/null || true
sleep 0.3
start_remote_recorder "$WORK/rec1b.log" "$WORK/cap1"
wait_downloads kill
stop_front
stop_recorder
expect_nothing_lost kill "$WORK/front1.log" "$WORK/cap1"

# --- 2. the link cut for longer than the link timeout ----------------------------------------
DOWNLOADS=10
mkdir "$WORK/cap2" && give_to_recorder_user "$WORK/cap2"
start_remote_recorder "$WORK/rec2.log" "$WORK/cap2"
start_front_to "$WORK/front2.log" --recorder "$RECORDER_ADDRESS" "${LINK[@]}"
downloads cut 1M  # 5 s each without the cut
wait_recorded "$WORK/cap2" $((8 * 1024 * 1024))
ip -n "$RECORDER_NS" link set "$LINK_FAULTS_DEVICE" down
cut_at=$SECONDS
wait_for 12 "the front to give the link up" grep -q "recorder link to .* lost" "$WORK/front2.log"
given_up_after=$((SECONDS - cut_at))
reason=$(sed -n 's/.*recorder link to .* lost (\(.*\)); reconnecting.*/\1/p' "$WORK/front2.log")
wait_for 8 "the recorder to drop the silent front" grep -q "front .*disconnected" "$WORK/rec2.log"
expect_stalled cut "$WORK/front2.log" 2
while ((SECONDS - cut_at < 8)); do sleep 0.2; done
ip -n "$RECORDER_NS" link set "$LINK_FAULTS_DEVICE" up
restored_at=$SECONDS
wait_downloads cut
resumed_in=$((SECONDS - restored_at))
stop_front
stop_recorder
expect_nothing_lost cut "$WORK/front2.log" "$WORK/cap2"
note "cut: the front gave the link up ${given_up_after} s after the cut ($reason); the downloads" \
  "stalled during the 8 s cut and had all finished ${resumed_in} s after the link was back"

# --- 3. a hung recorder (SIGSTOP) on an idle link ---------------------------------------------
# Its kernel still acknowledges every byte and answers keepalive probes, so only the front's
# ping notices. (Under load the kernel's TCP_USER_TIMEOUT may notice first: the hung recorder's
# receive window closes.) Downloads started while it hangs stall, and finish once it runs again.
mkdir "$WORK/cap3" && give_to_recorder_user "$WORK/cap3"
start_remote_recorder "$WORK/rec3.log" "$WORK/cap3"
start_front_to "$WORK/front3.log" --recorder "$RECORDER_ADDRESS" "${LINK[@]}"
kill -STOP "$RECORDER_PID"
stopped_at=$SECONDS
wait_for 12 "the front to give the hung recorder up" \
  grep -q "lost (no answer to a ping for 3 s (--link-timeout))" "$WORK/front3.log"
given_up_after=$((SECONDS - stopped_at))
downloads hung 8M  # well under a second each without the hang
expect_stalled hung "$WORK/front3.log" 2
kill -CONT "$RECORDER_PID"
wait_downloads hung
stop_front
stop_recorder
expect_nothing_lost hung "$WORK/front3.log" "$WORK/cap3"
note "hung: the front gave the link up ${given_up_after} s after SIGSTOP; the downloads started" \
  "then stalled until it ran again"

pass
