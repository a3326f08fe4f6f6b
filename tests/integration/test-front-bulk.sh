#!/usr/bin/env bash
# 100 TLS clients at once, each uploading 1 MiB of random data through tlstap-front to an echo
# backend and reading the 1 MiB echo back: every byte right at both ends, and the capture holds
# each connection with exactly those bytes both ways and a clean FIN close. Recorded through an
# external tlstap-recorder (--recorder unix:PATH).
. "$(dirname "$0")/lib.sh"
require_tools openssl tshark python3

CONNECTIONS=${CONNECTIONS:-100}
BYTES=$((1024 * 1024))

make_cert site bulk.example.com
BACKEND_PORT=$(free_port)
FRONT_PORT=$(free_port)
start_backend echo "$BACKEND_PORT"
start_recorder "$WORK/recorder.log" --listen "unix:$WORK/recorder.sock" -w "$WORK/bulk.pcap"
# This test is about bytes, not timeouts: on a loaded machine (a sanitizer build, tests in
# parallel) a hundred Python clients may take longer than the default 10 s to say hello.
start_front "$WORK/front.log" "$FRONT_PORT" --terminate --connect 127.0.0.1 \
  --handshake-timeout 120 --servercert "bulk.example.com:$WORK/site-bundle.pem" \
  -p "$FRONT_PORT,9000,$BACKEND_PORT" --recorder "unix:$WORK/recorder.sock"

bulk_clients "$FRONT_PORT" "$WORK/site.pem" bulk.example.com "$CONNECTIONS" "$BYTES" \
  "$WORK/expected"

expect_quiet_front "$WORK/front.log"
stop_front
stop_recorder

expect_clean_capture "$WORK/bulk.pcap" "$WORK/expected"
# The server side is the backend's address with the PCAPPORT of -p.
servers=$(tshark -r "$WORK/bulk.pcap" -n -Y "tcp.flags.syn == 1 && tcp.flags.ack == 0" \
  -T fields -e ip.dst -e tcp.dstport 2> /dev/null | sort -u)
[[ $servers == $'127.0.0.1\t9000' ]] || fail "recorded server addresses: $servers"

pass
