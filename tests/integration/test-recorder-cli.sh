#!/bin/bash
# tlstap-recorder refuses what it cannot honour and survives what a front must not send.
# 1. Contract violations (replay-client --violate) and garbage on the RPC and PCAP-over-IP
#    ports: the recorder logs an error, keeps running, and the good flows around the bad one are
#    complete in the capture.
# 2. Bad arguments (unknown option, bad values, missing or unwritable output, a non-loopback
#    --listen, a port in use): exit 2, one line on stderr naming the option, nothing started
#    (no file in -o DIR, no unix socket left). --help exits 0.
source "$(dirname "$0")/recorder-lib.sh"

SEED=${TLSTAP_SEED:-77}
mkdir "$WORK/out"
give_to_recorder_user "$WORK/out"
touch "$WORK/not-a-directory"
socket="unix:$WORK/cli.sock"

# expect_usage_error OPTION_REGEX ARGS...
expect_usage_error() {
  local option=$1
  shift
  local status=0
  timeout 10 "$RECORDER" "$@" > "$WORK/stdout" 2> "$WORK/stderr" || status=$?
  local what="tlstap-recorder $*"
  [[ $status == 2 ]] || fail "$what: exit status $status, not 2 ($(head -c 300 "$WORK/stderr"))"
  [[ $(wc -l < "$WORK/stderr") == 1 ]] ||
    fail "$what: expected one line on stderr, got: $(cat "$WORK/stderr")"
  grep -qE "^tlstap-recorder: (.* )?($option)[: ]" "$WORK/stderr" ||
    fail "$what: the message does not name $option: $(cat "$WORK/stderr")"
  [[ ! -s $WORK/stdout ]] || fail "$what: wrote to stdout: $(cat "$WORK/stdout")"
  [[ -z $(ls -A "$WORK/out") ]] || fail "$what: left files in -o DIR: $(ls -A "$WORK/out")"
  [[ ! -e $WORK/cli.sock ]] || fail "$what: left its unix socket behind"
  echo "ok: $what -> $(cat "$WORK/stderr")"
}

# --- contract violations and garbage ---------------------------------------------------------
serve_port=$("${CHECK[@]}" free-port)
# -o creates the directory when only its last component is missing.
start_recorder "$WORK/recorder.log" --listen "$socket" -o "$WORK/recorded" \
  --pcapoverip "127.0.0.1:$serve_port"
manifests=()
base=20000
for kind in direction oversize backwards after-close after-fin too-many-chunks close-backwards \
    meta-port meta-address meta-family meta-name; do
  errors_before=$(grep -c ": error: " "$WORK/recorder.log" || true)
  status=0
  timeout 120 "$REPLAY" --connect "$socket" --flows 6 --max-bytes 1048576 --seed "$SEED" \
    --violate "$kind" --port-base $base --manifest "$WORK/manifest-$kind.json" \
    > "$WORK/replay.log" 2>&1 || status=$?
  [[ $status == 0 ]] ||
    fail "--violate $kind: replay-client status $status: $(cat "$WORK/replay.log")"
  grep -q "^violation $kind: rejected: " "$WORK/replay.log" ||
    fail "--violate $kind: the recorder did not refuse the bad flow: $(cat "$WORK/replay.log")"
  errors_after=$(grep -c ": error: " "$WORK/recorder.log" || true)
  ((errors_after > errors_before)) || fail "--violate $kind: no error logged"
  recorder_alive || fail "tlstap-recorder died after --violate $kind"
  echo "ok: --violate $kind -> $(grep ': error: ' "$WORK/recorder.log" | tail -n 1)"
  manifests+=(--manifest "$WORK/manifest-$kind.json")
  base=$((base + 100))
done

for target in "$socket" "127.0.0.1:$serve_port"; do
  "${CHECK[@]}" garbage --connect "$target" --seed "$SEED" > "$WORK/garbage.log" 2>&1 ||
    fail "garbage to $target: $(cat "$WORK/garbage.log")"
  recorder_alive || fail "tlstap-recorder died of garbage sent to $target"
  echo "ok: garbage to $target -> $(cat "$WORK/garbage.log")"
done
# Still serving fronts after all that.
timeout 120 "$REPLAY" --connect "$socket" --flows 4 --max-bytes 65536 --seed "$SEED" \
  --port-base $base --manifest "$WORK/manifest-after.json" > "$WORK/replay.log" 2>&1 ||
  fail "a clean replay after the violations failed: $(cat "$WORK/replay.log")"
manifests+=(--manifest "$WORK/manifest-after.json")

stop_recorder
# Locked down, the recorder may no longer remove its socket file at exit (a later start replaces
# a stale socket). The failed starts below must not create one, so it goes now.
[[ -S $WORK/cli.sock ]] || fail "the socket of the stopped recorder is not a socket any more"
rm -f "$WORK/cli.sock"
"${CHECK[@]}" check "${manifests[@]}" "$WORK"/recorded/*.pcap ||
  fail "the good flows around the violations are not intact (seed $SEED)"

# --- bad arguments ---------------------------------------------------------------------------
# A port that is in use: the listener of the helper holds it for the whole test.
spawn /dev/null "${CHECK[@]}" listen --out "$WORK/unused.pcap" --ready "$WORK/busy.ready" \
  --connected "$WORK/busy.connected" --timeout 600
wait_for 10 "the port-holding listener" test -s "$WORK/busy.ready"
busy=$(cat "$WORK/busy.ready")
free=$("${CHECK[@]}" free-port)

expect_usage_error "--bogus" --listen "$socket" -o "$WORK/out" --bogus
expect_usage_error "--autoflush" --listen "$socket" -o "$WORK/out" --autoflush abc
expect_usage_error "--autoflush" --listen "$socket" -o "$WORK/out" --autoflush 0
expect_usage_error "--autoflush" --listen "$socket" -o "$WORK/out" --autoflush -1
# -o creates its directory, but not the parents of it.
expect_usage_error "-o|--output" --listen "$socket" -o "$WORK/missing/output"
if [[ $(id -u) == 0 ]]; then
  # root writes into any directory: a path that is not a directory is what can be checked.
  expect_usage_error "-o|--output" --listen "$socket" -o "$WORK/not-a-directory"
else
  mkdir "$WORK/read-only"
  chmod 555 "$WORK/read-only"
  expect_usage_error "-o|--output" --listen "$socket" -o "$WORK/read-only"
fi
expect_usage_error "-w|--write" --listen "$socket" -w "$WORK/missing/all.pcap"
expect_usage_error "-o|-w|--output|--write" --listen "$socket" -o "$WORK/out" -w "$WORK/all.pcap"
expect_usage_error "-o|-w|--output|--write" --listen "$socket"
expect_usage_error "--listen" -o "$WORK/out"
expect_usage_error "--listen" -o "$WORK/out" --listen
expect_usage_error "--listen" --listen "0.0.0.0:$free" -o "$WORK/out"
expect_usage_error "--listen" --listen "192.0.2.1:$free" -o "$WORK/out"
expect_usage_error "--listen" --listen "[::]:$free" -o "$WORK/out"
# The TLS link: options that cannot work together, and keys that cannot be read.
expect_usage_error "--link-cert" --listen "127.0.0.1:$free" -o "$WORK/out" --link-cert x.pem
expect_usage_error "--link-ca" --listen "127.0.0.1:$free" -o "$WORK/out" --link-ca ca.pem
expect_usage_error "--link-psk" --listen "$socket" -o "$WORK/out" --link-psk "file:$WORK/k"
expect_usage_error "--link-psk" --listen "0.0.0.0:$free" -o "$WORK/out" \
  --link-psk "file:$WORK/missing.psk"
expect_usage_error "--link-pin" --listen "0.0.0.0:$free" -o "$WORK/out" --link-pin sha256:12ab
expect_usage_error "--pcapoverip" --listen "$socket" -o "$WORK/out" --pcapoverip 99999
expect_usage_error "--pcapoveripconnect" --listen "$socket" -o "$WORK/out" \
  --pcapoveripconnect no-port-here
expect_usage_error "stray" --listen "$socket" -o "$WORK/out" stray
expect_usage_error "--retain-hours" --listen "$socket" -o "$WORK/out" --retain-hours 0
expect_usage_error "--retain-hours" --listen "$socket" -w "$WORK/all.pcap" --retain-hours 5
expect_usage_error "--max-bytes" --listen "$socket" -o "$WORK/out" --max-bytes 10X
expect_usage_error "--max-bytes" --listen "$socket" -o "$WORK/out" --max-bytes 0
expect_usage_error "--stats-interval" --listen "$socket" -o "$WORK/out" --stats-interval -5
expect_usage_error "--link-timeout" --listen "$socket" -o "$WORK/out" --link-timeout 0
# A --pcapoveripconnect name is resolved at start-up. The lookup runs in a network namespace of
# its own, where no interface is up, so the resolver's query cannot leave this machine.
RECORDER_OUTSIDE=$RECORDER
RECORDER=$WORK/recorder-without-network
printf '#!/bin/sh\nexec unshare --net "%s" "$@"\n' "$RECORDER_OUTSIDE" > "$RECORDER"
chmod +x "$RECORDER"
expect_usage_error "--pcapoveripconnect" --listen "$socket" -o "$WORK/out" \
  --pcapoveripconnect no-such-host.invalid:57012
grep -q "cannot resolve 'no-such-host.invalid" "$WORK/stderr" ||
  fail "the unresolvable --pcapoveripconnect line: $(cat "$WORK/stderr")"
RECORDER=$RECORDER_OUTSIDE

status=0
"$RECORDER" --help > "$WORK/help" 2> "$WORK/stderr" || status=$?
[[ $status == 0 ]] || fail "--help: exit status $status"
for option in --listen -o -w --pcapoverip --pcapoveripconnect --autoflush --retain-hours \
  --max-bytes --stats-interval --link-timeout; do
  grep -qe "$option " "$WORK/help" || fail "--help does not mention $option"
done
echo "ok: --help"

# -w never overwrites: an existing file (an earlier capture) must be left as it was.
echo "an earlier capture" > "$WORK/earlier.pcap"
expect_usage_error "-w|--write" --listen "$socket" -w "$WORK/earlier.pcap"
[[ $(cat "$WORK/earlier.pcap") == "an earlier capture" ]] || fail "-w overwrote an existing file"

# A port in use is only found when binding: nothing may have been started before that either.
expect_usage_error "--listen" --listen "127.0.0.1:$busy" -o "$WORK/out"
expect_usage_error "--pcapoverip" --listen "$socket" -o "$WORK/out" \
  --pcapoverip "127.0.0.1:$busy"
pass
