#!/usr/bin/env bash
# The cipher the front picks for clients that offer both AES-GCM and ChaCha20-Poly1305: on a CPU
# with AES instructions AES-128-GCM, whatever order the client lists the AES suites in (the
# front's order wins), unless the client lists ChaCha20-Poly1305 first, then that; the same for
# TLS 1.2; the same with --terminate and when re-encrypting. curl, gnutls-cli and Python with
# their defaults get AES-128-GCM.
. "$(dirname "$0")/lib.sh"
require_tools openssl gnutls-cli curl python3

start_front_with_backends 443 echo -- -v
PORT=${FRONT_PORTS[echo]}
TERMINATE_PID=$FRONT_PID
make_ca backend-ca "cipher test CA"
make_signed_cert backend backend-ca www.example.com
TLS_BACKEND_PORT=$(free_port)
start_backend echo "$TLS_BACKEND_PORT" backend
REENCRYPT_PORT=$(free_port)
mkdir -p "$WORK/captures-reencrypt"
give_to_recorder_user "$WORK/captures-reencrypt"
start_front "$WORK/front-reencrypt.log" "$REENCRYPT_PORT" -v --connect 127.0.0.1 \
  --backend-ca "$WORK/backend-ca.pem" --servercert "www.example.com:$WORK/site-bundle.pem" \
  -p "$REENCRYPT_PORT,443,$TLS_BACKEND_PORT" -o "$WORK/captures-reencrypt"

AES=aes
grep -qw aes /proc/cpuinfo || AES=
if [[ -z $AES ]]; then
  note "this CPU has no AES instructions: the front puts ChaCha20-Poly1305 first for everyone"
fi
# preferred AES-ANSWER NO-AES-ANSWER: what the front should pick for a client that does not list
# ChaCha20-Poly1305 first.
preferred() {
  if [[ -n $AES ]]; then echo "$1"; else echo "$2"; fi
}

# openssl_cipher PORT ARGS...: the cipher an openssl s_client with ARGS negotiates.
openssl_cipher() {
  local port=$1
  shift
  timeout 20 openssl s_client -connect "127.0.0.1:$port" -servername www.example.com "$@" \
    < /dev/null 2> /dev/null | sed -n 's/^New, TLSv[0-9.]*, Cipher is //p' | head -n 1
}

expect_cipher() {
  local what=$1 want=$2 got=$3
  [[ $got == "$want" ]] || fail "$what: negotiated '$got', expected '$want'"
}

for port in "$PORT" "$REENCRYPT_PORT"; do
  expect_cipher "TLS 1.3, openssl's default order (AES-256-GCM, ChaCha20, AES-128-GCM)" \
    "$(preferred TLS_AES_128_GCM_SHA256 TLS_CHACHA20_POLY1305_SHA256)" "$(openssl_cipher "$port")"
  expect_cipher "TLS 1.3, AES-256-GCM then ChaCha20" \
    "$(preferred TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256)" \
    "$(openssl_cipher "$port" -ciphersuites TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256)"
  expect_cipher "TLS 1.3, ChaCha20 listed first" TLS_CHACHA20_POLY1305_SHA256 \
    "$(openssl_cipher "$port" \
      -ciphersuites TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384)"
  expect_cipher "TLS 1.2, AES-256-GCM, ChaCha20, AES-128-GCM" \
    "$(preferred ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-CHACHA20-POLY1305)" \
    "$(openssl_cipher "$port" -tls1_2 -cipher \
      ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256)"
  expect_cipher "TLS 1.2, ChaCha20 listed first" ECDHE-ECDSA-CHACHA20-POLY1305 \
    "$(openssl_cipher "$port" -tls1_2 -cipher \
      ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256)"
done

# Other clients with their defaults.
got=$(curl -sv --max-time 20 --cacert "$WORK/site.pem" \
  --resolve "www.example.com:$PORT:127.0.0.1" "https://www.example.com:$PORT/" -o /dev/null 2>&1 |
  sed -n 's/^\* SSL connection using TLSv1.3 \/ //p' | head -n 1 || true)
expect_cipher "curl" "$(preferred TLS_AES_128_GCM_SHA256 TLS_CHACHA20_POLY1305_SHA256)" "$got"
got=$(timeout 20 gnutls-cli --x509cafile "$WORK/site.pem" -p "$PORT" --sni-hostname www.example.com \
  --verify-hostname www.example.com 127.0.0.1 < /dev/null \
  2>&1 | sed -n 's/^- Description: .*-(\([A-Z0-9-]*\))$/\1/p' | head -n 1 || true)
expect_cipher "gnutls-cli" "$(preferred AES-128-GCM CHACHA20-POLY1305)" "$got"
got=$(timeout 20 python3 -c "
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
with context.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[2]))),
                         server_hostname='www.example.com') as s:
    print(s.cipher()[0])" "$WORK/site.pem" "$PORT" || true)
expect_cipher "python" "$(preferred TLS_AES_128_GCM_SHA256 TLS_CHACHA20_POLY1305_SHA256)" "$got"

front_alive "$WORK/front-reencrypt.log"
stop_front
FRONT_PID=$TERMINATE_PID
front_alive "$WORK/front.log"
stop_front
pass
