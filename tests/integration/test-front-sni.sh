#!/usr/bin/env bash
# Certificate choice by SNI, as a client sees it: exact names, several names on one certificate,
# a wildcard (one label only), names in upper case; without SNI the --nosni certificate, or, with
# no --nosni, a refusal with the unrecognized_name alert (112), one log line, and the front stays
# up; a name no certificate covers gets one forged by tlstap's root CA
# (test-front-forged-certs.sh checks those in depth).
. "$(dirname "$0")/lib.sh"
require_tools openssl python3

make_cert main www.example.com
make_cert wild '*.wild.test'
make_cert other other.test alt.other.test
BACKEND_PORT=$(free_port)
PORT_NOSNI=$(free_port)
PORT_STRICT=$(free_port)
start_backend echo "$BACKEND_PORT"
mkdir -p "$WORK/captures-nosni" "$WORK/captures-strict"
give_to_recorder_user "$WORK/captures-nosni" "$WORK/captures-strict"

CERTS=(--servercert "www.example.com:$WORK/main.p12:file:$WORK/main.pw"
  --servercert "*.wild.test:$WORK/wild-bundle.pem"
  --servercert "other.test,alt.other.test:$WORK/other.p12:file:$WORK/other.pw")
start_front "$WORK/front-nosni.log" "$PORT_NOSNI" --terminate --connect 127.0.0.1 "${CERTS[@]}" \
  --nosni www.example.com -p "$PORT_NOSNI,443,$BACKEND_PORT" -o "$WORK/captures-nosni"
NOSNI_PID=$FRONT_PID
start_front "$WORK/front-strict.log" "$PORT_STRICT" --terminate --connect 127.0.0.1 \
  "${CERTS[@]}" -p "$PORT_STRICT,443,$BACKEND_PORT" -o "$WORK/captures-strict"
STRICT_PID=$FRONT_PID

expect_subject() {
  local port=$1 name=$2 want=$3 got
  got=$(served_subject "$port" "$name")
  [[ $got == "$want" ]] || fail "SNI '$name' on port $port: got '$got', expected '$want'"
}

for port in "$PORT_NOSNI" "$PORT_STRICT"; do
  expect_subject "$port" www.example.com "subject=CN = www.example.com"
  expect_subject "$port" WWW.Example.COM "subject=CN = www.example.com"
  expect_subject "$port" a.wild.test "subject=CN = *.wild.test"
  expect_subject "$port" other.test "subject=CN = other.test"
  expect_subject "$port" alt.other.test "subject=CN = other.test"
done
expect_subject "$PORT_NOSNI" "" "subject=CN = www.example.com"

# Names no certificate covers (a wildcard covers one label only) get a forged certificate.
expect_forged() {
  local port=$1 name=$2 issuer
  expect_subject "$port" "$name" "subject=CN = $name"
  issuer=$(timeout 30 openssl s_client -connect "127.0.0.1:$port" -servername "$name" \
    < /dev/null 2> /dev/null | openssl x509 -noout -issuer 2> /dev/null || true)
  [[ $issuer == "issuer=CN = tlstap root CA" ]] || fail "SNI '$name': issuer '$issuer'"
}
expect_forged "$PORT_NOSNI" unknown.test
expect_forged "$PORT_STRICT" deep.a.wild.test

# Refusals: the client reads a fatal alert, the front logs one line naming the cause.
expect_alert() {
  local port=$1 name=$2 alert=$3
  local sni=(-servername "$name")
  [[ -n $name ]] || sni=(-noservername)
  timeout 30 openssl s_client -connect "127.0.0.1:$port" "${sni[@]}" < /dev/null > "$WORK/refused.out" 2>&1 &&
    fail "SNI '$name' on port $port: the handshake succeeded"
  grep -q "alert number $alert" "$WORK/refused.out" ||
    fail "SNI '$name' on port $port: no alert $alert: $(grep -i alert "$WORK/refused.out")"
}
expect_alert "$PORT_STRICT" "" 112
expect_one_line "$WORK/front-strict.log" "client 127\.0\.0\.1:[0-9]+: ClientHello without SNI" \
  "no SNI without --nosni"

# Still serving after the refusals.
expect_subject "$PORT_STRICT" www.example.com "subject=CN = www.example.com"
process_alive "$NOSNI_PID" || fail "the --nosni front died"
process_alive "$STRICT_PID" || fail "the front without --nosni died"
[[ $(count_lines "$WORK/front-nosni.log" ': (error|warning):') == 0 ]] ||
  fail "errors logged: $(grep -E ': (error|warning):' "$WORK/front-nosni.log")"

pass
