#!/usr/bin/env bash
# The counters line: after a known transfer (curl through the front to nginx), SIGUSR1 to the
# front and to its embedded recorder logs their lines, with the bytes curl sent and got each way,
# one connection accepted and one refused (a client that is not TLS), and nothing lost;
# --stats-interval logs it periodically; a bad value is refused at start-up.
. "$(dirname "$0")/lib.sh"
require_tools curl nginx openssl

make_cert site www.example.com
mkdir -p "$WORK/www"
head -c 300000 /dev/urandom > "$WORK/www/big.bin"
BACKEND_PORT=$(free_port)
FRONT_PORT=$(free_port)
start_nginx "$BACKEND_PORT" "$WORK/www"
start_front "$WORK/front.log" "$FRONT_PORT" --terminate --connect 127.0.0.1 \
  --servercert "www.example.com:$WORK/site-bundle.pem" -p "$FRONT_PORT,443,$BACKEND_PORT" \
  -o "$WORK/captures" --stats-interval 2

# Request and response sizes as curl counts them: headers and body.
sizes=$(curl -sS --max-time 20 --cacert "$WORK/site.pem" -o "$WORK/got.bin" \
  --resolve "www.example.com:$FRONT_PORT:127.0.0.1" \
  -w '%{size_request} %{size_header} %{size_download}' \
  "https://www.example.com:$FRONT_PORT/big.bin") || fail "curl through the front failed"
cmp -s "$WORK/got.bin" "$WORK/www/big.bin" || fail "curl got other bytes than nginx served"
read -r sent header body <<< "$sizes"
received=$((header + body))
# Not TLS: refused after the ClientHello peek.
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.stdin.buffer.read())
s.recv(100)' "$FRONT_PORT" 2> /dev/null || true

# The front sees both connections end a moment after the clients do.
stats_line() {
  grep "$1: info: stats:" "$WORK/front.log" | tail -n 1
}
supervisor=$(pgrep -P "$FRONT_PID" | head -n 1)
recorder_pid=$(pgrep -P "$supervisor" | head -n 1)
[[ -n $recorder_pid ]] || fail "no embedded recorder process found"
settled() {
  kill -USR1 "$FRONT_PID" "$recorder_pid"
  sleep 0.3
  [[ $(stats_line tlstap-front) == *" connections_open=0 "* ]]
}
wait_for 10 "the connections to close" settled
front=$(stats_line tlstap-front)
recorder=$(stats_line tlstap-recorder)
note "curl sent $sent and got $received bytes; $front"
for field in connections_accepted=2 connections_refused=1 flows_open=0 \
  "bytes_client_to_server=$sent" "bytes_server_to_client=$received" \
  "bytes_recorded=$((sent + received))" bytes_lost=0; do
  [[ " $front " == *" $field "* ]] || fail "front counters lack $field: $front"
done
for field in flows_open=0 flows_total=1 "payload_bytes_closed_flows=$((sent + received))" \
  packets_lost=0 frame_bytes_lost=0 files_written=1; do
  [[ " $recorder " == *" $field "* ]] || fail "recorder counters lack $field: $recorder"
done
# The recorder's file bytes: its header plus a record per packet, more than the payload.
bytes=$(stat -c %s "$WORK"/captures/*.pcap)
[[ " $recorder " == *" file_bytes_written=$bytes "* ]] ||
  fail "recorder file_bytes_written is not the file size $bytes: $recorder"

# Periodic lines from both programs without a signal.
before=$(count_lines "$WORK/front.log" 'tlstap-front: info: stats:')
sleep 4.5
after=$(count_lines "$WORK/front.log" 'tlstap-front: info: stats:')
((after - before >= 2)) || fail "--stats-interval 2 logged $((after - before)) lines in 4.5 s"
stop_front

run_front_expecting_exit2 "bad --stats-interval" '^tlstap-front: --stats-interval: ' \
  --stats-interval soon -p 443,443 --terminate --connect 127.0.0.1 -o "$WORK/x"
pass
