#!/usr/bin/env bash
# A hardened start (README "Running as a hardened install"): tlstap-front started as root on a
# port below 1024, with its embedded recorder. Both drop to their own unprivileged users and run
# under seccomp with no_new_privs (/proc/PID/status); the recorder's supervisor keeps uid 0 but
# only the capabilities a recorder's start needs, under its own filter with no_new_privs
# (tlstap-recorder(8), SECURITY); traffic still flows and is recorded, into
# files the recorder's user owns; the private key is in the front's memory and not in the
# recorder's (the same scan finding it in the front shows it can find it).
. "$(dirname "$0")/lib.sh"
require_tools openssl curl python3 tshark

if [[ $(id -u) != 0 ]]; then
  note "skipped: needs root (it starts the programs as root to see them drop privileges)"
  pass
  exit 0
fi
for user in tlstap tlstap-rec; do
  id -u "$user" > /dev/null 2>&1 || fail "user $user is missing (tests/install-deps.sh)"
done

# A free port below 1024: only root may bind it.
low_port() {
  local port
  for port in $(shuf -i 600-999 -n 50); do
    port_listening "$port" || { echo "$port"; return 0; }
  done
  fail "no free port below 1024"
}

status_field() {
  awk -v field="$2:" '$1 == field { print $2 }' "/proc/$1/status"
}

make_cert site www.example.com
mkdir -p "$WORK/www"
marker="tlstap-sandbox-$RANDOM-$RANDOM"
{ echo "$marker"; head -c 200000 /dev/urandom | base64; } > "$WORK/www/page.txt"
BACKEND_PORT=$(free_port)
FRONT_PORT=$(low_port)
start_nginx "$BACKEND_PORT" "$WORK/www"

# -o names a directory that does not exist yet: the recorder creates it and gives it to its user.
start_front "$WORK/front.log" "$FRONT_PORT" --terminate --connect 127.0.0.1 \
  --servercert "www.example.com:$WORK/site-bundle.pem" -p "$FRONT_PORT,80,$BACKEND_PORT" \
  -o "$WORK/recorded"
# The embedded recorder: a child of the front's child, the supervisor (both tlstap-recorder),
# once it has locked down (the front listens before it asks for the recorder).
locked_recorder() {
  local supervisor child
  for supervisor in $(cat /proc/"$FRONT_PID"/task/*/children 2> /dev/null); do
    for child in $(cat /proc/"$supervisor"/task/*/children 2> /dev/null); do
      if [[ $(cat "/proc/$child/comm" 2> /dev/null) == tlstap-recorder &&
            $(status_field "$child" Seccomp) == 2 ]]; then
        RECORDER_PID=$child
        SUPERVISOR_PID=$supervisor
        return 0
      fi
    done
  done
  return 1
}
wait_for 20 "the embedded recorder's lock-down" locked_recorder

# --- users, no_new_privs, seccomp ------------------------------------------------------------
for pid in "$FRONT_PID" "$RECORDER_PID"; do
  [[ $(status_field "$pid" Seccomp) == 2 ]] || fail "pid $pid: not in seccomp filter mode"
  [[ $(status_field "$pid" NoNewPrivs) == 1 ]] || fail "pid $pid: no_new_privs is not set"
  read -r real effective saved fs < <(awk '$1 == "Uid:" { print $2, $3, $4, $5 }' \
    "/proc/$pid/status")
  for uid in "$real" "$effective" "$saved" "$fs"; do
    [[ $uid != 0 ]] || fail "pid $pid: still has uid 0 ($real $effective $saved $fs)"
  done
  read -r groups < <(awk '$1 == "Groups:" { $1 = ""; print }' "/proc/$pid/status")
  [[ " $groups " != *" 0 "* ]] || fail "pid $pid: still in group 0 ($groups)"
done
front_uid=$(awk '$1 == "Uid:" { print $2 }' "/proc/$FRONT_PID/status")
recorder_uid=$(awk '$1 == "Uid:" { print $2 }' "/proc/$RECORDER_PID/status")
[[ $front_uid == $(id -u tlstap) ]] || fail "the front runs as uid $front_uid, not tlstap"
[[ $recorder_uid == $(id -u tlstap-rec) ]] ||
  fail "the recorder runs as uid $recorder_uid, not tlstap-rec"
[[ $front_uid != "$recorder_uid" ]] || fail "front and recorder share uid $front_uid"
note "front uid $front_uid, recorder uid $recorder_uid; both Seccomp 2, NoNewPrivs 1"

# --- the supervisor: uid 0 (its recorders start as root), but only their capabilities ----------
# CapBnd and CapPrm 0x4e7: CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, KILL, SETGID, SETUID,
# NET_BIND_SERVICE; CapEff 0x20: KILL alone. Under seccomp with no_new_privs, like the others.
[[ $(status_field "$SUPERVISOR_PID" Seccomp) == 2 ]] || fail "the supervisor is not under seccomp"
[[ $(status_field "$SUPERVISOR_PID" NoNewPrivs) == 1 ]] ||
  fail "the supervisor does not have no_new_privs"
for field in CapBnd CapPrm; do
  [[ $(status_field "$SUPERVISOR_PID" $field) == 00000000000004e7 ]] ||
    fail "the supervisor's $field is $(status_field "$SUPERVISOR_PID" $field), not 0x4e7"
done
[[ $(status_field "$SUPERVISOR_PID" CapEff) == 0000000000000020 ]] ||
  fail "the supervisor's CapEff is $(status_field "$SUPERVISOR_PID" CapEff), not CAP_KILL alone"
[[ $(status_field "$SUPERVISOR_PID" CapInh) == 0000000000000000 &&
   $(status_field "$SUPERVISOR_PID" CapAmb) == 0000000000000000 ]] ||
  fail "the supervisor has inheritable or ambient capabilities"
[[ $(status_field "$RECORDER_PID" CapEff) == 0000000000000000 ]] || fail "the recorder has capabilities"
# The recorder runs under both filters: the supervisor's, inherited, and its own.
[[ $(status_field "$RECORDER_PID" Seccomp_filters) == 2 ]] ||
  fail "the recorder has $(status_field "$RECORDER_PID" Seccomp_filters) seccomp filters, not 2"
note "supervisor uid $(status_field "$SUPERVISOR_PID" Uid), Seccomp 2, NoNewPrivs 1," \
  "CapEff 0x20 (CAP_KILL), CapBnd 0x4e7; the recorder under 2 filters, CapEff 0"

# --- traffic still flows and is recorded -------------------------------------------------------
for i in 1 2 3; do
  curl -sS --fail --max-time 20 --cacert "$WORK/site.pem" \
    --resolve "www.example.com:$FRONT_PORT:127.0.0.1" \
    "https://www.example.com:$FRONT_PORT/page.txt" -o "$WORK/got-$i.txt" ||
    fail "curl through the locked-down front failed (request $i)"
  cmp -s "$WORK/got-$i.txt" "$WORK/www/page.txt" || fail "request $i: the page differs"
done
front_alive "$WORK/front.log"

# --- the key is in the front's memory, not in the recorder's -----------------------------------
# The P-256 private scalar, big-endian as in the DER of the key, and little-endian as GnuTLS's
# multi-precision integers hold it.
scalar=$(openssl ec -in "$WORK/site.key" -noout -text 2> /dev/null |
  awk '/^priv:/ { on = 1; next } /^pub:/ { on = 0 } on' | tr -d ' :\n')
scalar=${scalar: -64}
[[ ${#scalar} == 64 ]] || fail "could not read the private scalar of site.key"
reversed=$(echo "$scalar" | fold -w2 | tac | tr -d '\n')
read -r in_front front_bytes < <(python3 "$TLSTAP_SOURCE/tests/integration/proc_memory.py" \
  "$FRONT_PID" "$scalar" "$reversed")
read -r in_recorder recorder_bytes < <(python3 "$TLSTAP_SOURCE/tests/integration/proc_memory.py" \
  "$RECORDER_PID" "$scalar" "$reversed")
[[ $in_front == found ]] ||
  fail "the private key is not in the front's memory ($front_bytes bytes scanned): the scan cannot tell"
[[ $in_recorder == absent ]] ||
  fail "the private key is in the recorder's memory ($recorder_bytes bytes scanned)"
note "private key found in the front ($front_bytes bytes scanned), absent from the recorder" \
  "($recorder_bytes bytes scanned)"

stop_front
# The recorder's files and directory belong to its user; the capture holds the decrypted pages.
[[ $(stat -c %U "$WORK/recorded") == tlstap-rec ]] ||
  fail "the output directory belongs to $(stat -c %U "$WORK/recorded"), not tlstap-rec"
pcaps=("$WORK"/recorded/*.pcap)
[[ -f ${pcaps[0]} ]] || fail "no pcap file in $WORK/recorded"
for pcap in "${pcaps[@]}"; do
  [[ $(stat -c %U "$pcap") == tlstap-rec ]] || fail "$pcap belongs to $(stat -c %U "$pcap")"
done
responses=$(tshark -r "${pcaps[0]}" -Y 'http.response.code == 200' 2> /dev/null | wc -l)
[[ $responses == 3 ]] || fail "the capture holds $responses HTTP 200 responses, expected 3"
grep -qa "$marker" "${pcaps[0]}" || fail "the page's bytes are not in the capture"
grep -q "seccomp" "$WORK/front.log" && fail "a seccomp message in the log: $(grep seccomp "$WORK/front.log")"
pass
