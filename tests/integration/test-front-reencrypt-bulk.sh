#!/usr/bin/env bash
# Bulk re-encrypted (no --terminate): 20 TLS clients at once, each uploading 1 MiB of random data
# through tlstap-front to a TLS echo backend and reading the 1 MiB echo back: every byte right at
# both ends, and the capture holds each connection with exactly those bytes both ways, a clean
# FIN close and no TCP analysis problems.
. "$(dirname "$0")/lib.sh"
require_tools openssl tshark python3

CONNECTIONS=${CONNECTIONS:-20}
BYTES=$((1024 * 1024))

start_tls_echo_backend bulk.example.com
FRONT_PORT=$(free_port)
# This test is about bytes, not timeouts: on a loaded machine (a sanitizer build, tests in
# parallel) a hundred Python clients may take longer than the default 10 s to say hello.
start_front "$WORK/front.log" "$FRONT_PORT" --connect 127.0.0.1 --handshake-timeout 120 \
  --servercert "bulk.example.com:$WORK/site-bundle.pem" --backend-ca "$WORK/backend-ca.pem" \
  -p "127.0.0.1,$FRONT_PORT,9000,$BACKEND_PORT" -w "$WORK/bulk.pcap"

bulk_clients "$FRONT_PORT" "$WORK/site.pem" bulk.example.com "$CONNECTIONS" "$BYTES" \
  "$WORK/expected"

expect_quiet_front "$WORK/front.log"
stop_front

expect_clean_capture "$WORK/bulk.pcap" "$WORK/expected"

pass
