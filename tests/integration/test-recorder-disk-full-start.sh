#!/usr/bin/env bash
# tlstap-recorder started on a disk that is already full (a 4 MiB tmpfs and a filler file), as a
# recorder restarted by its supervisor may be: it starts all the same (no exit status 2), says
# once that it cannot create its file, serves PCAP-over-IP, takes flows and holds them (the
# sender gets backpressure, not errors); when the filler is removed it creates the file, and the
# file and the live stream hold every byte of every flow. A directory that is not one still
# stops it at start-up with status 2. Then tlstap-front's embedded recorder, killed while the disk
# is full: started again once (not in a loop), it records once space returns. Needs root
# (mount); exits 77 (skipped) otherwise.
source "$(dirname "$0")/recorder-lib.sh"
require_tools mount umount curl openssl nginx

mount_small_disk
mkdir "$DISK/out"
give_to_recorder_user "$DISK/out"
dd if=/dev/zero of="$DISK/filler" bs=64k 2> /dev/null || true
[[ $(df --output=avail -k "$DISK" | tail -n 1 | tr -d ' ') == 0 ]] || fail "the tmpfs is not full"

# A configuration error is still one: -o naming a file.
status=0
"$RECORDER" --listen "unix:$WORK/bad.sock" -o "$DISK/filler" > "$WORK/bad.log" 2>&1 || status=$?
[[ $status == 2 ]] || fail "-o naming a file: exit status $status, expected 2: $(cat "$WORK/bad.log")"

OVERIP_PORT=$(free_port)
start_recorder "$WORK/recorder.log" --listen "unix:$WORK/recorder.sock" -o "$DISK/out" \
  --pcapoverip "127.0.0.1:$OVERIP_PORT" --stats-interval 0
grep -q "error: cannot create $DISK/out/tlstap-.*No space left on device" "$WORK/recorder.log" ||
  fail "no line saying the file cannot be created: $(cat "$WORK/recorder.log")"
[[ -z $(ls "$DISK/out") ]] || fail "files in the output directory while it is full: $(ls "$DISK/out")"

spawn "$WORK/live.log" "${CHECK[@]}" consume --connect "127.0.0.1:$OVERIP_PORT" \
  --out "$WORK/live.pcap" --ready "$WORK/live.ready"
wait_for 10 "the PCAP-over-IP consumer's pcap header" test -s "$WORK/live.ready"

# 31 flows of up to 50 kB each way: the recorder holds their packets in memory and answers the
# sender only once they are written, so the sender waits.
spawn "$WORK/replay.log" timeout 120 "$REPLAY" --connect "unix:$WORK/recorder.sock" --flows 30 \
  --max-bytes 50000 --seed 7 --http --manifest "$WORK/manifest.json"
replay_pid=$SPAWNED_PID
# Until a flow's opening is answered its data waits in the sender; its handshake is live at once.
wait_for 20 "the live stream to carry handshakes" bash -c \
  "[[ \$(tshark -r '$WORK/live.pcap' -n -Y 'tcp.flags.syn==1 && tcp.flags.ack==0' 2> /dev/null |
     wc -l) -ge 10 ]]"
sleep 2  # a few failed retries
process_alive "$replay_pid" || fail "the flows were answered while nothing could be written: $(cat "$WORK/replay.log")"
recorder_alive || fail "tlstap-recorder died on the full disk"
[[ -z $(ls "$DISK/out") ]] || fail "files in the output directory while it is full: $(ls "$DISK/out")"

# Space returns: the file is created within about a second, and the sender is answered.
rm "$DISK/filler"
wait_for 10 "writing to begin" grep -q "writing again after .* no packet was lost" \
  "$WORK/recorder.log"
status=0
wait "$replay_pid" || status=$?
[[ $status == 0 ]] || fail "replay-client exited $status: $(tail -n 5 "$WORK/replay.log")"
stop_recorder
wait_for 10 "the consumer to see the end of the stream" bash -c "! kill -0 $SPAWNED_PID 2> /dev/null"

[[ $(count_lines "$WORK/recorder.log" "error: cannot create") == 1 ]] ||
  fail "the full disk was not logged exactly once"
if grep -E "could not be recorded|were lost|unwritten" "$WORK/recorder.log"; then
  fail "the recorder lost packets"
fi
files=("$DISK"/out/*.pcap)
[[ ${#files[@]} == 1 && -f ${files[0]} ]] || fail "expected one capture file: $(ls "$DISK/out")"
[[ $(stat -c %U "${files[0]}") == tlstap-rec ]] || fail "the file belongs to $(stat -c %U "${files[0]}")"
"${CHECK[@]}" check --manifest "$WORK/manifest.json" "${files[0]}" ||
  fail "the file does not hold every byte of the flows"
"${CHECK[@]}" check --manifest "$WORK/manifest.json" "$WORK/live.pcap" ||
  fail "the live stream does not hold every byte of the flows"
note "started on a full disk; $(stat -c %s "${files[0]}") bytes in ${files[0]##*/} once space" \
  "returned, every flow in it and in the live stream"

# --- tlstap-front's embedded recorder: killed while the disk is full, it is started again once
# and stays up (no restart loop), and records a page fetched meanwhile once space returns.
mkdir "$DISK/front"
give_to_recorder_user "$DISK/front"
dd if=/dev/zero of="$DISK/filler" bs=64k 2> /dev/null || true
make_cert site www.example.com
mkdir -p "$WORK/www"
marker="tlstap-full-$RANDOM-$RANDOM"
{ echo "$marker"; head -c 100000 /dev/urandom | base64; } > "$WORK/www/page.txt"
BACKEND_PORT=$(free_port)
FRONT_PORT=$(free_port)
start_nginx "$BACKEND_PORT" "$WORK/www"
start_front "$WORK/front.log" "$FRONT_PORT" --terminate --connect 127.0.0.1 \
  --servercert "www.example.com:$WORK/site-bundle.pem" -p "$FRONT_PORT,80,$BACKEND_PORT" \
  -o "$DISK/front" --stats-interval 0
supervisor=$(pgrep -P "$FRONT_PID" | head -n 1)
first=$(pgrep -P "$supervisor" | head -n 1)
[[ -n $first ]] || fail "no embedded recorder process found"
kill -KILL "$first"
wait_for 10 "the recorder to be started again" grep -q "started tlstap-recorder again" \
  "$WORK/front.log"
sleep 3  # a restart loop would start it again within 0.2 s, then 0.4 s, ...
[[ $(count_lines "$WORK/front.log" "starting it again") == 1 ]] ||
  fail "the recorder was started again more than once: $(grep "starting it again" "$WORK/front.log")"
second=$(pgrep -P "$supervisor" | head -n 1)
[[ -n $second && $second != "$first" ]] && process_alive "$second" ||
  fail "no recorder runs after the restart on the full disk"
curl -sS --fail --max-time 20 --cacert "$WORK/site.pem" \
  --resolve "www.example.com:$FRONT_PORT:127.0.0.1" \
  "https://www.example.com:$FRONT_PORT/page.txt" -o "$WORK/got.txt" ||
  fail "curl through the front failed while the disk is full"
cmp -s "$WORK/got.txt" "$WORK/www/page.txt" || fail "the page differs"
rm "$DISK/filler"
wait_for 10 "the restarted recorder to begin writing" grep -q "writing again after" \
  "$WORK/front.log"
stop_front
grep -qa "$marker" "$DISK"/front/*.pcap || fail "the page is not in the embedded recorder's file"
note "embedded recorder killed on the full disk: started again once, recorded once space returned"
pass
