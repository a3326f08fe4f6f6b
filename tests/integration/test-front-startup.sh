#!/usr/bin/env bash
# Bad start-up input: tlstap-front prints one line naming the option and the cause, exits 2 and
# leaves nothing listening. Then a good command line starts, and SIGTERM ends it with status 0.
. "$(dirname "$0")/lib.sh"
require_tools openssl python3

make_cert site www.example.com
echo "not the password" > "$WORK/wrong.pw"
PORT=$(free_port)
BUSY_PORT=$(free_port)
BACKEND_PORT=$(free_port)
GOOD=(--terminate --connect 127.0.0.1 -o "$WORK/captures")
CERT=(--servercert "www.example.com:$WORK/site.p12:file:$WORK/site.pw")

run_front_expecting_exit2 "wrong PKCS#12 password" "^tlstap-front: --servercert: .*site\.p12" \
  "${GOOD[@]}" --servercert "www.example.com:$WORK/site.p12:file:$WORK/wrong.pw" \
  -p "$PORT,80,$BACKEND_PORT"
run_front_expecting_exit2 "missing certificate file" "^tlstap-front: --servercert: .*missing\.p12" \
  "${GOOD[@]}" --servercert "www.example.com:$WORK/missing.p12:file:$WORK/site.pw" \
  -p "$PORT,80,$BACKEND_PORT"
run_front_expecting_exit2 "missing password file" "^tlstap-front: --servercert: .*nope\.pw" \
  "${GOOD[@]}" --servercert "www.example.com:$WORK/site.p12:file:$WORK/nope.pw" \
  -p "$PORT,80,$BACKEND_PORT"
run_front_expecting_exit2 "bad -p" "^tlstap-front: -p: " "${GOOD[@]}" "${CERT[@]}" -p "99999,80"
run_front_expecting_exit2 "no -p" "^tlstap-front: -p: " "${GOOD[@]}" "${CERT[@]}"
run_front_expecting_exit2 "unknown option" "^tlstap-front: --bogus: " "${GOOD[@]}" "${CERT[@]}" \
  -p "$PORT,80,$BACKEND_PORT" --bogus
# The lookup runs in a network namespace of its own, where no interface is up, so the resolver's
# query cannot leave this machine.
FRONT_OUTSIDE=$FRONT
FRONT=$WORK/front-without-network
printf '#!/bin/sh\nexec unshare --net "%s" "$@"\n' "$FRONT_OUTSIDE" > "$FRONT"
chmod +x "$FRONT"
run_front_expecting_exit2 "unresolvable --connect" "^tlstap-front: --connect: " \
  --terminate --connect no-such-host.invalid -o "$WORK/captures" "${CERT[@]}" \
  -p "$PORT,80,$BACKEND_PORT"
FRONT=$FRONT_OUTSIDE

# A port in use: held by another listener on loopback.
spawn "$WORK/holder.log" python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
time.sleep(120)' "$BUSY_PORT"
wait_port "$BUSY_PORT"
run_front_expecting_exit2 "port in use" \
  "^tlstap-front: -p: cannot listen on 0\.0\.0\.0:$BUSY_PORT: .*Address already in use" \
  "${GOOD[@]}" "${CERT[@]}" -p "$PORT,80,$BACKEND_PORT" -p "$BUSY_PORT,80,$BACKEND_PORT"
# Nothing was left listening by the failed starts.
port_listening "$PORT" && fail "a failed start left port $PORT listening"

# The good command line starts and stops cleanly.
start_front "$WORK/front.log" "$PORT" "${GOOD[@]}" "${CERT[@]}" -p "$PORT,80,$BACKEND_PORT"
stop_front
port_listening "$PORT" && fail "port $PORT still listening after the front stopped"

pass
