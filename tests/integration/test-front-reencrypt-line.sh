#!/usr/bin/env bash
# A generic line protocol re-encrypted (no --terminate): gnutls-cli, offering ALPN "imap", talks
# to a TLS echo backend (no ALPN, certificate from a test CA given with --backend-ca) through
# tlstap-front. The client gets back exactly the lines it sent and no ALPN (the backend chose
# none), the backend sees the client's SNI, the half-close passes both ways (close_notify and FIN),
# and "follow TCP stream" on the capture gives back exactly those bytes each way.
. "$(dirname "$0")/lib.sh"
require_tools gnutls-cli openssl tshark python3

# The backend's certificate names only the client's SNI (make_reencrypt_certs).
start_tls_echo_backend mail.example.com
FRONT_PORT=$(free_port)
start_front "$WORK/front.log" "$FRONT_PORT" --connect 127.0.0.1 \
  --servercert "mail.example.com:$WORK/site-bundle.pem" --backend-ca "$WORK/backend-ca.pem" \
  -p "127.0.0.1,$FRONT_PORT,143,$BACKEND_PORT" -o "$WORK/captures" -v

{
  printf 'a001 CAPABILITY\r\n'
  for i in $(seq 1 2000); do printf 'a%04d FETCH %d (BODY[HEADER.FIELDS (SUBJECT)])\r\n' "$i" "$i"; done
  printf 'a9999 LOGOUT\r\n'
} > "$WORK/lines.in"
timeout 30 gnutls-cli --logfile="$WORK/gnutls-cli.info" --x509cafile "$WORK/site.pem" \
  --alpn imap --port "$FRONT_PORT" --sni-hostname mail.example.com \
  --verify-hostname mail.example.com 127.0.0.1 < "$WORK/lines.in" > "$WORK/lines.out" \
  2> "$WORK/gnutls-cli.err" || fail "gnutls-cli failed: $(tail -n 3 "$WORK/gnutls-cli.err")"
cmp -s "$WORK/lines.in" "$WORK/lines.out" ||
  fail "echo differs: sent $(wc -c < "$WORK/lines.in") bytes, got $(wc -c < "$WORK/lines.out")"
grep -q "Handshake was completed" "$WORK/gnutls-cli.info" || fail "no handshake in gnutls-cli's log"
# gnutls-cli prints "- Application protocol: NAME" when one was negotiated.
! grep -q "Application protocol" "$WORK/gnutls-cli.info" ||
  fail "the client got an ALPN protocol the backend did not choose: $(grep Application \
    "$WORK/gnutls-cli.info")"

expect_quiet_front "$WORK/front.log"
grep -q "ALPN offered: imap" "$WORK/front.log" || fail "the front did not see the client's ALPN"
stop_front
one_capture "$WORK/captures" "$WORK/all.pcap"

expect_clean_capture "$WORK/all.pcap"
follow_stream "$WORK/all.pcap" 0 "$WORK/stream"
cmp -s "$WORK/stream.client" "$WORK/lines.in" || fail "the recorded client bytes differ"
cmp -s "$WORK/stream.server" "$WORK/lines.in" || fail "the recorded backend bytes differ"
# A clean close both ways: a FIN from each side, no RST.
fins=$(tshark -r "$WORK/all.pcap" -n -Y 'tcp.flags.fin == 1' 2> /dev/null | wc -l)
resets=$(tshark -r "$WORK/all.pcap" -n -Y 'tcp.flags.reset == 1' 2> /dev/null | wc -l)
[[ $fins == 2 && $resets == 0 ]] || fail "capture ends with $fins FIN and $resets RST"

pass
