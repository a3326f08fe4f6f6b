#!/bin/bash
# PCAP-over-IP: every live consumer gets a pcap header and then every packet, and a slow one
# never holds up the others. Three consumers watch one replay: a fast reader on --pcapoverip, a
# listener the recorder connects to (--pcapoveripconnect), and a reader that never reads (tiny
# receive buffer). The fast ones must receive exactly the packets of the -w file, which must
# match what was sent; the stalled one must be cut off with a log line, with fewer bytes.
source "$(dirname "$0")/recorder-lib.sh"

SEED=${TLSTAP_SEED:-4242}
echo "seed $SEED"

# The --pcapoveripconnect target listens first, on a port of its own choosing. The recorder is
# given it by name (localhost): resolved at start-up, it is still reached after lock-down.
spawn "$WORK/listen.log" "${CHECK[@]}" listen --out "$WORK/connected.pcap" \
  --ready "$WORK/listen.ready" --connected "$WORK/listen.connected"
wait_for 10 "the --pcapoveripconnect listener" test -s "$WORK/listen.ready"
listen_port=$(cat "$WORK/listen.ready")
serve_port=$("${CHECK[@]}" free-port)

start_recorder "$WORK/recorder.log" --listen "unix:$WORK/recorder.sock" -w "$WORK/all.pcap" \
  --pcapoverip "127.0.0.1:$serve_port" --pcapoveripconnect "localhost:$listen_port"
grep -q "serving PCAP-over-IP on 127.0.0.1:$serve_port" "$WORK/recorder.log" ||
  fail "no 'serving PCAP-over-IP on 127.0.0.1:$serve_port' in the log"
wait_for 10 "the recorder to connect to the listener" test -s "$WORK/listen.connected"

spawn "$WORK/fast.log" "${CHECK[@]}" consume --connect "127.0.0.1:$serve_port" \
  --out "$WORK/fast.pcap" --ready "$WORK/fast.ready"
fast_pid=$SPAWNED_PID
spawn "$WORK/slow.log" "${CHECK[@]}" stall --connect "127.0.0.1:$serve_port" \
  --out "$WORK/slow.pcap" --ready "$WORK/slow.ready" --go "$WORK/slow.go" --report "$WORK/slow.json"
slow_pid=$SPAWNED_PID
wait_for 10 "the fast consumer's pcap header" test -s "$WORK/fast.ready"
wait_for 10 "the stalled consumer's pcap header" test -s "$WORK/slow.ready"
slow_port=$(cat "$WORK/slow.ready")

# Around 100 MiB of packets: far more than the recorder queues for one consumer (32 MiB) plus
# what the kernel buffers, so the stalled consumer has to be cut off.
timeout 300 "$REPLAY" --connect "unix:$WORK/recorder.sock" --flows 120 --max-bytes 8388608 \
  --seed "$SEED" --http --manifest "$WORK/manifest.json" > "$WORK/replay.log" 2>&1 ||
  fail "replay-client failed (seed $SEED): $(tail -n 5 "$WORK/replay.log")"
cat "$WORK/replay.log"
recorder_alive || fail "tlstap-recorder died during the replay"
grep -E "(warning|error): .*:$slow_port[^0-9].*(slow|overflow|cut off|disconnected)" \
  "$WORK/recorder.log" ||
  fail "no log line about cutting off the stalled consumer (port $slow_port)"

touch "$WORK/slow.go"
stop_recorder
# SIGTERM drains the consumers' queues and closes them: each consumer sees its end of stream.
wait_for 30 "the fast consumer to see the end of the stream" eval '! process_alive $fast_pid'
wait_for 30 "the stalled consumer to finish draining" eval '! process_alive $slow_pid'
wait_for 30 "the listener to see the end of the stream" test -s "$WORK/listen.log"
cat "$WORK/fast.log" "$WORK/slow.log" "$WORK/listen.log"

"${CHECK[@]}" check --manifest "$WORK/manifest.json" "$WORK/fast.pcap" ||
  fail "the fast consumer's stream does not match what was sent (seed $SEED)"
"${CHECK[@]}" same-packets "$WORK/all.pcap" "$WORK/fast.pcap" ||
  fail "the fast consumer did not get exactly the packets of the -w file"
"${CHECK[@]}" same-packets "$WORK/all.pcap" "$WORK/connected.pcap" ||
  fail "the --pcapoveripconnect listener did not get exactly the packets of the -w file"

fast_bytes=$(stat -c %s "$WORK/fast.pcap")
slow_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes"])' \
  "$WORK/slow.json")
echo "fast consumer: $fast_bytes bytes, stalled consumer: $slow_bytes bytes"
((slow_bytes < fast_bytes / 2)) || fail "the stalled consumer got $slow_bytes of $fast_bytes bytes"
pass
