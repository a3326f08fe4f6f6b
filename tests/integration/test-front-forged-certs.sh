#!/usr/bin/env bash
# Certificates forged by tlstap's own root CA, as clients see them: names no --servercert covers
# (one label and deep names) verify in curl and gnutls-cli against the CA exported with -x; a name
# a --servercert wildcard covers still gets that certificate; a name is forged once; --certhttp
# serves the same DER; the generated CA lives in --cadir (0700, key 0600) and survives a restart
# byte for byte; re-encrypting to a TLS backend works with a forged certificate and HTTP/2; a
# PKCS#12 CA made by openssl (--cacert load:FILE:file:PWFILE) signs the forged certificates
# instead; a bad --cacert is one error line and exit status 2.
. "$(dirname "$0")/lib.sh"
require_tools openssl curl gnutls-cli nginx python3

make_cert wild '*.wild.test'
BACKEND_PORT=$(free_port)
PORT=$(free_port)
HTTP_PORT=$(free_port)
mkdir -p "$WORK/site"
echo "hello from the backend" > "$WORK/site/index.html"
start_nginx "$BACKEND_PORT" "$WORK/site"
CADIR=$WORK/cadir/tlstap
FRONT_ARGS=(--terminate --connect 127.0.0.1 -p "$PORT,80,$BACKEND_PORT" -o "$WORK/captures"
  --servercert "*.wild.test:$WORK/wild-bundle.pem")

start_front "$WORK/front.log" "$PORT" "${FRONT_ARGS[@]}" --cadir "$CADIR" -x "$WORK/ca.der" \
  --certhttp "$HTTP_PORT" --cn "Forged Test CA" -v
wait_port "$HTTP_PORT"
openssl x509 -inform DER -in "$WORK/ca.der" -out "$WORK/ca.pem" ||
  fail "-x did not write a DER certificate"
[[ $(openssl x509 -in "$WORK/ca.pem" -noout -subject) == "subject=CN = Forged Test CA" ]] ||
  fail "the generated CA is not named by --cn: $(openssl x509 -in "$WORK/ca.pem" -noout -subject)"
[[ $(stat -c %a "$CADIR") == 700 ]] || fail "--cadir has mode $(stat -c %a "$CADIR"), not 700"
[[ $(stat -c %a "$CADIR/root-ca.pem") == 600 ]] ||
  fail "the CA key file has mode $(stat -c %a "$CADIR/root-ca.pem"), not 600"

# fetch CA-PEM NAME: the page through the front, verified by curl against CA-PEM for NAME.
fetch() {
  curl -sS --max-time 20 --cacert "$1" --resolve "$2:$PORT:127.0.0.1" "https://$2:$PORT/index.html"
}

# The certificate the front sends for NAME, in PEM, into FILE.
served_cert() {
  timeout 30 openssl s_client -connect "127.0.0.1:$PORT" -servername "$1" < /dev/null 2> /dev/null |
    openssl x509 > "$2" 2> /dev/null || fail "no certificate for '$1'"
}

for name in www.forged.test a.b.c.forged.test "$(printf 'x%.0s' {1..40}).$(printf 'y%.0s' {1..40}).forged.test"; do
  got=$(fetch "$WORK/ca.pem" "$name") || fail "curl does not accept the certificate forged for $name"
  [[ $got == "hello from the backend" ]] || fail "$name: wrong page: $got"
done
note "curl verified forged certificates for 3 names"

served_cert www.forged.test "$WORK/forged.pem"
openssl x509 -in "$WORK/forged.pem" -noout -ext subjectAltName | grep -qx " *DNS:www.forged.test" ||
  fail "forged SAN: $(openssl x509 -in "$WORK/forged.pem" -noout -ext subjectAltName)"
[[ $(openssl x509 -in "$WORK/forged.pem" -noout -issuer) == "issuer=CN = Forged Test CA" ]] ||
  fail "forged issuer: $(openssl x509 -in "$WORK/forged.pem" -noout -issuer)"
openssl x509 -in "$WORK/forged.pem" -noout -checkend $((6 * 86400)) > /dev/null ||
  fail "the forged certificate expires within 6 days"
openssl x509 -in "$WORK/forged.pem" -noout -checkend $((8 * 86400)) > /dev/null &&
  fail "the forged certificate is valid for more than 8 days"
openssl x509 -in "$WORK/forged.pem" -noout -text | grep -q "ASN1 OID: prime256v1" ||
  fail "the forged certificate's key is not ECDSA P-256"
# Forged once: a second connection gets the same certificate (same serial).
served_cert www.forged.test "$WORK/forged-again.pem"
cmp -s "$WORK/forged.pem" "$WORK/forged-again.pem" || fail "www.forged.test was forged twice"
# A name some --servercert covers keeps that certificate.
[[ $(served_subject "$PORT" x.wild.test) == "subject=CN = *.wild.test" ]] ||
  fail "x.wild.test did not get its --servercert: $(served_subject "$PORT" x.wild.test)"

gnutls-cli --x509cafile "$WORK/ca.pem" --sni-hostname www.forged.test \
  --verify-hostname www.forged.test -p "$PORT" 127.0.0.1 < /dev/null > "$WORK/gnutls-cli.out" 2>&1 ||
  fail "gnutls-cli does not verify the forged certificate: $(grep -i -m3 -E 'error|status' "$WORK/gnutls-cli.out")"
grep -q "The certificate is trusted" "$WORK/gnutls-cli.out" || fail "gnutls-cli: not trusted"
gnutls-cli --x509cafile "$WORK/ca.pem" --sni-hostname www.forged.test \
  --verify-hostname other.forged.test -p "$PORT" 127.0.0.1 < /dev/null > "$WORK/gnutls-cli-other.out" 2>&1 &&
  fail "gnutls-cli accepted the certificate of www.forged.test for other.forged.test"

# --certhttp: the same DER, as a CA certificate browsers offer to install.
curl -sS --max-time 10 -D "$WORK/certhttp.headers" -o "$WORK/certhttp.der" \
  "http://127.0.0.1:$HTTP_PORT/ca.crt" || fail "--certhttp did not answer"
cmp -s "$WORK/ca.der" "$WORK/certhttp.der" || fail "--certhttp served other bytes than -x wrote"
grep -qi "^content-type: application/x-x509-ca-cert" "$WORK/certhttp.headers" ||
  fail "--certhttp content type: $(cat "$WORK/certhttp.headers")"
curl -sS --max-time 10 -o "$WORK/certhttp-root.der" "http://127.0.0.1:$HTTP_PORT/"
cmp -s "$WORK/ca.der" "$WORK/certhttp-root.der" || fail "GET / did not serve the CA"
front_alive "$WORK/front.log"
[[ $(count_lines "$WORK/front.log" ': (error|warning):') == 0 ]] ||
  fail "errors logged: $(grep -E ': (error|warning):' "$WORK/front.log")"
stop_front

# A restart loads the same CA, whatever --cn says now (with a warning), and the old CA file on
# the clients still verifies the new forgeries.
start_front "$WORK/front2.log" "$PORT" "${FRONT_ARGS[@]}" --cadir "$CADIR" -x "$WORK/ca2.der" \
  --cn "Renamed CA"
cmp -s "$WORK/ca.der" "$WORK/ca2.der" || fail "the CA changed across a restart"
expect_one_line "$WORK/front2.log" "warning: --cn: the existing root CA .* is named 'Forged Test CA'" \
  "--cn differs from the existing CA"
[[ $(fetch "$WORK/ca.pem" new.forged.test) == "hello from the backend" ]] ||
  fail "after the restart a forged certificate does not verify"
stop_front

# Re-encrypting (no --terminate) to a TLS backend verified with its own CA: the client gets a
# certificate forged for the name, and HTTP/2 end to end.
make_ca backend-ca "Forged Test Backend CA"
make_signed_cert backend backend-ca app.forged.test
TLS_BACKEND_PORT=$(free_port)
start_nginx "$TLS_BACKEND_PORT" "$WORK/site" backend
start_front "$WORK/front-reencrypt.log" "$PORT" --connect 127.0.0.1 \
  -p "$PORT,443,$TLS_BACKEND_PORT" -o "$WORK/captures" --backend-ca "$WORK/backend-ca.pem" \
  --cadir "$CADIR"
got=$(curl -sS --max-time 20 --http2 --cacert "$WORK/ca.pem" -w '|%{http_version}' \
  --resolve "app.forged.test:$PORT:127.0.0.1" "https://app.forged.test:$PORT/index.html") ||
  fail "re-encrypting: curl does not accept the forged certificate"
[[ $got == "hello from the backend"$'\n''|2' ]] || fail "re-encrypting: got '$got'"
stop_front

# Without --cadir, the CA goes into the default state directory (lib.sh points STATE_DIRECTORY,
# as systemd's StateDirectory= does, into the work directory).
start_front "$WORK/front3.log" "$PORT" "${FRONT_ARGS[@]}" -x "$WORK/default.der"
[[ -f $STATE_DIRECTORY/root-ca.pem ]] || fail "no CA in the default directory $STATE_DIRECTORY"
cmp -s "$WORK/ca.der" "$WORK/default.der" && fail "the default directory reused --cadir's CA"
stop_front

# A CA of one's own: PKCS#12 made by openssl, its password in a file.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/lab-ca.key" -out "$WORK/lab-ca.pem" \
  -subj "/CN=Lab CA" -days 30 -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign 2> "$WORK/openssl-lab.err" || fail "openssl: lab CA"
echo "lab-secret" > "$WORK/lab.pw"
openssl pkcs12 -export -in "$WORK/lab-ca.pem" -inkey "$WORK/lab-ca.key" -out "$WORK/lab-ca.p12" \
  -passout "file:$WORK/lab.pw" || fail "openssl: lab CA PKCS#12"
# Its password from the environment (env:NAME), which the front overwrites once read: the front's
# /proc/PID/environ (the environment it was started with) no longer shows it.
export TLSTAP_LAB_PW=lab-secret
start_front "$WORK/front4.log" "$PORT" "${FRONT_ARGS[@]}" \
  --cacert "load:$WORK/lab-ca.p12:env:TLSTAP_LAB_PW" -x "$WORK/lab-export.der"
unset TLSTAP_LAB_PW
grep -q "TLSTAP_LAB_PW=" "/proc/$FRONT_PID/environ" ||
  fail "the front was not started with TLSTAP_LAB_PW in its environment"
grep -q "lab-secret" "/proc/$FRONT_PID/environ" &&
  fail "the --cacert password is still in the front's environment"
openssl x509 -in "$WORK/lab-ca.pem" -outform DER -out "$WORK/lab-ca.der"
cmp -s "$WORK/lab-ca.der" "$WORK/lab-export.der" || fail "-x did not export the --cacert CA"
[[ $(fetch "$WORK/lab-ca.pem" www.forged.test) == "hello from the backend" ]] ||
  fail "a certificate forged by the --cacert CA does not verify"
fetch "$WORK/ca.pem" www.forged.test > /dev/null 2>&1 &&
  fail "with --cacert the front still signs with the generated CA"
stop_front

echo wrong > "$WORK/wrong.pw"
run_front_expecting_exit2 "wrong --cacert password" \
  "^tlstap-front: --cacert: '.*lab-ca\.p12': wrong password for the PKCS#12 file$" \
  "${FRONT_ARGS[@]}" --cacert "load:$WORK/lab-ca.p12:file:$WORK/wrong.pw"
run_front_expecting_exit2 "missing --cacert file" "^tlstap-front: --cacert: '.*missing\.p12': not found$" \
  "${FRONT_ARGS[@]}" --cacert "load:$WORK/missing.p12"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/leaf.key" \
  -out "$WORK/leaf.pem" -subj /CN=leaf.test -days 30 -addext basicConstraints=CA:FALSE \
  2> "$WORK/openssl-leaf.err" || fail "openssl: leaf"
cat "$WORK/leaf.pem" "$WORK/leaf.key" > "$WORK/leaf-bundle.pem"
run_front_expecting_exit2 "--cacert that is no CA" \
  "^tlstap-front: --cacert: '.*leaf-bundle\.pem': not a CA certificate" \
  "${FRONT_ARGS[@]}" --cacert "load:$WORK/leaf-bundle.pem"
chmod 644 "$CADIR/root-ca.pem"
run_front_expecting_exit2 "a CA key others can read" \
  "^tlstap-front: --cadir: '.*root-ca\.pem': other users can access the CA key \(mode 0644\)" \
  "${FRONT_ARGS[@]}" --cadir "$CADIR"

pass
