#!/usr/bin/env bash
# Retention in -o DIR: --retain-hours deletes capture files last written too long ago, --max-bytes
# deletes the oldest (by name) until the total fits; the file being written is never deleted,
# even when it alone is over the limit, and files that are not the recorder's own are never
# touched. Each deletion is logged. (Rotation across hours is covered by the unit tests with an
# injected clock; here the recorder finds files from "earlier runs".)
source "$(dirname "$0")/recorder-lib.sh"

DIR=$WORK/captures
mkdir -p "$DIR"
socket="unix:$WORK/retention.sock"

# A capture file of SIZE bytes written HOURS ago.
old_file() {
  head -c "$2" /dev/zero > "$DIR/$1"
  touch -d "@$(($(date +%s) - $3 * 3600))" "$DIR/$1"
}

# Not the recorder's: other names, and a look-alike, all written long ago.
old_file notes.txt 1000 500
old_file tlstap-old.pcap 1000 500
old_file tlstap-20200101-000000.pcap.gz 1000 500
old_file tlstap-20200101-0000.pcap 1000 500
foreign="notes.txt tlstap-20200101-0000.pcap tlstap-20200101-000000.pcap.gz tlstap-old.pcap"

# --- --retain-hours: by age --------------------------------------------------------------------
old_file tlstap-20200101-080000.pcap 1000 30
old_file tlstap-20200101-090000.pcap 1000 5
old_file tlstap-20200101-100000.pcap 1000 1
start_recorder "$WORK/age.log" --listen "$socket" -o "$DIR" --retain-hours 4
open_file=$(ls "$DIR" | grep -vxF -e notes.txt -e tlstap-old.pcap -e tlstap-20200101-000000.pcap.gz \
  -e tlstap-20200101-0000.pcap -e tlstap-20200101-080000.pcap -e tlstap-20200101-090000.pcap \
  -e tlstap-20200101-100000.pcap | head -1) || true
[[ -n $open_file ]] || fail "the recorder created no file in $DIR: $(ls "$DIR")"
stop_recorder
expected=$(printf '%s\n' $foreign tlstap-20200101-100000.pcap "$open_file" | sort)
got=$(ls "$DIR" | sort)
[[ $got == "$expected" ]] || fail "after --retain-hours 4: $(echo $got), expected $(echo $expected)"
[[ $(count_lines "$WORK/age.log" 'info: retention: deleted ') == 2 ]] ||
  fail "expected two deletions logged: $(grep retention "$WORK/age.log")"
grep -q "retention: deleted $DIR/tlstap-20200101-080000.pcap" "$WORK/age.log" ||
  fail "the 30-hour-old file's deletion is not logged"
note "--retain-hours 4: deleted the files written 30 and 5 hours ago, kept 1 hour and open"

# --- --max-bytes: oldest by name first, the open file never ------------------------------------
rm "$DIR/$open_file" "$DIR/tlstap-20200101-100000.pcap"
# Written just now, but named for older hours: the name decides, not the time of writing.
old_file tlstap-20200102-100000.pcap 400000 0
old_file tlstap-20200102-110000.pcap 400000 0
old_file tlstap-20200102-120000.pcap 400000 0
start_recorder "$WORK/size.log" --listen "$socket" -o "$DIR" --max-bytes 900K
# 3 x 400000 and the new file's header: over 900 KiB until the oldest goes.
wait_for 5 "the oldest file to go" bash -c "[[ ! -e '$DIR/tlstap-20200102-100000.pcap' ]]"
[[ -e $DIR/tlstap-20200102-110000.pcap && -e $DIR/tlstap-20200102-120000.pcap ]] ||
  fail "--max-bytes 900K deleted more than the oldest file: $(ls "$DIR")"
stop_recorder

# A limit smaller than the new file will be: the closed files go, oldest first, until the rest
# fits; the open one stays however large it grows, and is written to.
start_recorder "$WORK/tiny.log" --listen "$socket" -o "$DIR" --max-bytes 1K
timeout 60 "$REPLAY" --connect "$socket" --flows 3 --max-bytes 65536 --seed 5 \
  --manifest "$WORK/manifest.json" > "$WORK/replay.log" 2>&1 || fail "replay-client failed"
recorder_alive || fail "the recorder died"
stop_recorder
mapfile -t captures < <(cd "$DIR" && ls | grep -E '^tlstap-[0-9]{8}-[0-9]{6}(_[0-9]{2})?\.pcap$')
[[ ${captures[*]} != *tlstap-2020* ]] || fail "old files survived --max-bytes 1K: ${captures[*]}"
newest=${captures[${#captures[@]} - 1]}
"${CHECK[@]}" check --manifest "$WORK/manifest.json" "$DIR/$newest" > "$WORK/check.log" 2>&1 ||
  fail "the open file does not hold the flows: $(tail -5 "$WORK/check.log")"
for name in $foreign; do
  [[ -e $DIR/$name ]] || fail "$name is not the recorder's, yet it was deleted"
done
grep -q "retention: deleted $DIR/tlstap-20200102-120000.pcap" "$WORK/tiny.log" ||
  fail "the deletions are not logged: $(cat "$WORK/tiny.log")"
pass
