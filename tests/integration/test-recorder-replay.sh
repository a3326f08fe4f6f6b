#!/bin/bash
# tlstap-recorder turns flows into a capture that tshark reads back exactly: 200 concurrent flows
# of random sizes (a few of 10 MiB) and one HTTP exchange go in over the unix socket; after
# SIGTERM the rotated files in -o DIR must hold every byte of every flow, in order, with no TCP
# analysis warning, the HTTP request and response dissected, and each flow closed as it was.
# TLSTAP_SEED picks another run; a failure prints the seed to reproduce it.
source "$(dirname "$0")/recorder-lib.sh"

SEED=${TLSTAP_SEED:-20261127}
echo "seed $SEED"

# The checker itself must reject damaged captures, or a pass below would mean nothing.
"${CHECK[@]}" selftest > "$WORK/selftest.log" 2>&1 || fail "recorder_check.py selftest failed"

mkdir "$WORK/out"
give_to_recorder_user "$WORK/out"
start_recorder "$WORK/recorder.log" --listen "unix:$WORK/recorder.sock" -o "$WORK/out" \
  --autoflush 1
timeout 300 "$REPLAY" --connect "unix:$WORK/recorder.sock" --flows 200 --max-bytes 10485760 \
  --seed "$SEED" --http --manifest "$WORK/manifest.json" > "$WORK/replay.log" 2>&1 ||
  fail "replay-client failed (seed $SEED): $(tail -n 5 "$WORK/replay.log")"
cat "$WORK/replay.log"
recorder_alive || fail "tlstap-recorder died during the replay"

# A file is readable while being written: with --autoflush 1 everything is on disk soon after the
# last flow, before any signal. Wait until the sizes stop changing from one second to the next.
previous=
for _ in $(seq 20); do
  sleep 1
  sizes=$(stat -c %s "$WORK"/out/*.pcap | tr '\n' ' ')
  [[ $sizes == "$previous" ]] && break
  previous=$sizes
done
mkdir "$WORK/before-sigterm"
give_to_recorder_user "$WORK/before-sigterm"
cp "$WORK"/out/*.pcap "$WORK/before-sigterm/"

stop_recorder
if grep -E ": (error|warning): " "$WORK/recorder.log"; then
  fail "tlstap-recorder logged errors or warnings for a clean replay"
fi

files=("$WORK"/out/*.pcap)
[[ -f ${files[0]} ]] || fail "no pcap file in -o DIR: $(ls -la "$WORK/out")"
now_hour=$(date -u +%Y%m%d-%H0000)
for file in "${files[@]}"; do
  name=$(basename "$file")
  # Hourly rotation on the hour (UTC), names that sort by time.
  [[ $name =~ ^tlstap-[0-9]{8}-[0-9]{2}0000\.pcap$ ]] || fail "file name $name"
  [[ $name < "tlstap-$now_hour.pcap" || $name == "tlstap-$now_hour.pcap" ]] ||
    fail "file $name is named after an hour still to come (now $now_hour UTC)"
  "${CHECK[@]}" same-packets "$WORK/before-sigterm/$name" "$file" ||
    fail "$name changed after SIGTERM: not everything was flushed within --autoflush"
done
echo "files: ${files[*]##*/}"

"${CHECK[@]}" check --manifest "$WORK/manifest.json" "${files[@]}" ||
  fail "the capture does not match what was sent (seed $SEED)"
pass
