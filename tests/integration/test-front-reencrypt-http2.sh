#!/usr/bin/env bash
# Re-encryption with ALPN forwarded (no --terminate): curl --http2 through tlstap-front to
# nghttpd, an HTTP/2-only TLS backend whose certificate comes from a test CA (--backend-ca), gets
# HTTP/2 and the right body; tshark decodes the recorded HTTP/2 frames and headers. Against nginx
# (h2 and http/1.1 over TLS) a client offering h2 gets h2 and one offering only http/1.1 gets
# 1.1, which tshark decodes as HTTP. Every capture is free of TCP analysis problems.
. "$(dirname "$0")/lib.sh"
require_tools curl nghttpd nginx openssl tshark

make_reencrypt_certs www.example.com
mkdir -p "$WORK/www"
echo "hello over h2 from the backend" > "$WORK/www/index.html"
head -c 200000 /dev/urandom > "$WORK/www/big.bin"

H2_PORT=$(free_port)
NGINX_PORT=$(free_port)
FRONT_H2=$(free_port)
FRONT_NGINX=$(free_port)
start_nghttpd "$H2_PORT" "$WORK/www" backend
start_nginx "$NGINX_PORT" "$WORK/www" backend
start_front "$WORK/front.log" "$FRONT_H2" --connect 127.0.0.1 \
  --servercert "www.example.com:$WORK/site-bundle.pem" --backend-ca "$WORK/backend-ca.pem" \
  -p "$FRONT_H2,80,$H2_PORT" -p "$FRONT_NGINX,80,$NGINX_PORT" -o "$WORK/captures" -v
wait_port "$FRONT_NGINX"

curl_via() {
  local port=$1
  shift
  curl -sS --max-time 20 --cacert "$WORK/site.pem" \
    --resolve "www.example.com:$port:127.0.0.1" "$@"
}

# nghttpd speaks only h2: the client gets h2 because the backend chose it.
got=$(curl_via "$FRONT_H2" --http2 -w '|%{http_version}|%{http_code}' \
  "https://www.example.com:$FRONT_H2/index.html") || fail "curl --http2 via nghttpd failed"
[[ $got == "hello over h2 from the backend"$'\n''|2|200' ]] || fail "h2 GET answered '$got'"
curl_via "$FRONT_H2" --http2 -o "$WORK/big.out" "https://www.example.com:$FRONT_H2/big.bin" ||
  fail "h2 download failed"
cmp -s "$WORK/big.out" "$WORK/www/big.bin" || fail "200 kB h2 download differs from the file"

# nginx speaks both: each client gets what it offered first.
got=$(curl_via "$FRONT_NGINX" --http2 -w '|%{http_version}' \
  "https://www.example.com:$FRONT_NGINX/index.html?h2") || fail "curl --http2 via nginx failed"
[[ $got == "hello over h2 from the backend"$'\n''|2' ]] || fail "h2 GET via nginx: '$got'"
got=$(curl_via "$FRONT_NGINX" --http1.1 -w '|%{http_version}' \
  "https://www.example.com:$FRONT_NGINX/index.html?http1") || fail "curl --http1.1 failed"
[[ $got == "hello over h2 from the backend"$'\n''|1.1' ]] || fail "http/1.1 GET: '$got'"

expect_quiet_front "$WORK/front.log"
grep -q "ALPN offered: h2,http/1.1" "$WORK/front.log" || fail "the front did not see curl's ALPN"
stop_front
one_capture "$WORK/captures" "$WORK/all.pcap"

expect_clean_capture "$WORK/all.pcap"
# HTTP/2 on the recorded port 80: tshark finds the connection preface and decodes the frames.
paths=$(tshark -r "$WORK/all.pcap" -n -Y 'http2.header.name == ":path"' -T fields \
  -e http2.header.value 2> /dev/null | tr ',' '\n' | grep '^/' | sort -u | tr '\n' ' ')
[[ $paths == "/big.bin /index.html /index.html?h2 " ]] ||
  fail "HTTP/2 :path headers tshark decoded from the capture: '$paths'"
h2_data=$(tshark -r "$WORK/all.pcap" -n -Y 'http2.type == 0' 2> /dev/null | wc -l)
((h2_data > 0)) || fail "no HTTP/2 DATA frames decoded"
# The HTTP/1.1 connection: the HTTP dissector decodes the request and the response.
http1=$(tshark -r "$WORK/all.pcap" -n -Y 'http.request.uri' -T fields -e http.request.uri \
  -e http.request.version 2> /dev/null)
[[ $http1 == $'/index.html?http1\tHTTP/1.1' ]] || fail "HTTP/1.1 requests decoded: '$http1'"
[[ $(tshark -r "$WORK/all.pcap" -n -Y 'http.response.code == 200' 2> /dev/null | wc -l) == 1 ]] ||
  fail "the HTTP/1.1 response was not decoded"

pass
