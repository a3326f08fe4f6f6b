#!/usr/bin/env bash
# The demo: installs what is needed, builds, then terminates HTTPS in front of a local HTTP
# backend with recording on, sends a few requests with curl and shows what tshark reads from the
# recorded pcap. Everything runs on loopback and is removed afterwards.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${TLSTAP_BUILD:-$source_dir/build}
bash "$source_dir/tests/install-deps.sh"
bash "$source_dir/tests/build.sh"

work=$(mktemp -d /tmp/tlstap-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== a throw-away certificate for www.example.com (ECDSA P-256)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=www.example.com -addext subjectAltName=DNS:www.example.com \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
echo demo-password >"$work/password"
openssl pkcs12 -export -in "$work/cert.pem" -inkey "$work/key.pem" \
  -passout file:"$work/password" -out "$work/cert.p12"

echo "== a plain HTTP backend on 127.0.0.1:18080"
mkdir -p "$work/site" "$work/captures"
echo "hello from the backend" >"$work/site/index.html"
python3 -m http.server 18080 --bind 127.0.0.1 --directory "$work/site" >/dev/null 2>&1 &
pids+=($!)

echo "== tlstap-front: HTTPS on 18443, recorded as HTTP on port 80"
set -x
"$build_dir/front/tlstap-front" --terminate --connect 127.0.0.1 --nosni www.example.com \
  --servercert "www.example.com:$work/cert.p12:file:$work/password" \
  -p 18443,80,18080 -o "$work/captures" --cadir "$work/ca" &
{ set +x; } 2>/dev/null
front=$!
pids+=($front)
for _ in $(seq 50); do
  curl -s -o /dev/null http://127.0.0.1:18080/ && nc -z 127.0.0.1 18443 && break
  sleep 0.1
done

echo "== three HTTPS requests through tlstap"
for path in / /index.html /missing; do
  curl -s --cacert "$work/cert.pem" --resolve www.example.com:18443:127.0.0.1 \
    -o /dev/null -w "GET $path -> HTTP %{http_code} (certificate check: %{ssl_verify_result}, 0 = verified)\n" \
    "https://www.example.com:18443$path"
done

echo "== stopping tlstap-front (SIGTERM closes the pcap complete)"
kill -TERM "$front"
wait "$front" || true

pcap=$(ls "$work"/captures/*.pcap)
echo "== what tshark reads from $(basename "$pcap") (decrypted HTTP, as if on port 80)"
# tshark warns on stderr when run as root; the warning says nothing about the capture.
tshark -r "$pcap" 2>/dev/null
echo "== HTTP requests and responses: time, client, server, method, URI, status"
tshark -r "$pcap" -Y http -T fields -e frame.time_relative -e ip.src -e tcp.srcport \
  -e ip.dst -e tcp.dstport -e http.request.method -e http.request.uri -e http.response.code \
  2>/dev/null
echo "== TCP analysis problems in the capture: $(tshark -r "$pcap" -Y tcp.analysis.flags 2>/dev/null | wc -l)"
