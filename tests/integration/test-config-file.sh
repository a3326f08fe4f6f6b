#!/usr/bin/env bash
# --config FILE: tlstap-front started with nothing but a config file (every option it supports
# today, the certificate password written out) serves HTTPS in front of nginx and records the
# request; the password is not in its process list entry; a config file only its owner can read
# gives no warning, the same file readable by others gives one naming it. tlstap-recorder runs
# from a config file and records what a front sends it. A bad line, or a config file naming
# another, makes either program exit 2 with one line naming the file and the line number.
. "$(dirname "$0")/lib.sh"
require_tools curl nginx openssl tshark
require_built "$FRONT" "$RECORDER"

make_cert site www.example.com
mkdir -p "$WORK/www"
echo "hello through a config file" > "$WORK/www/index.html"
BACKEND_PORT=$(free_port)
FRONT_PORT=$(free_port)
PCAP_OVER_IP_PORT=$(free_port)
start_nginx "$BACKEND_PORT" "$WORK/www"
PASSWORD=$(cat "$WORK/site.pw")

# Every form a line can take: long names with and without dashes, a short name, name=value, a
# flag alone, comments, blank lines and stray whitespace.
cat > "$WORK/front.conf" << EOF
# tlstap-front, configured without a secret on its command line
-p $FRONT_PORT,80,$BACKEND_PORT
--terminate
connect 127.0.0.1
nosni www.example.com

   # the password is a literal: this file is the place for it
servercert www.example.com:$WORK/site.p12:$PASSWORD
-o $WORK/captures
pcapoverip 127.0.0.1:$PCAP_OVER_IP_PORT
autoflush=1
recorder-down block
max-connections 100
handshake-timeout 5
idle-timeout 60
threads 1
	-v
EOF
chmod 600 "$WORK/front.conf"

URL=https://www.example.com:$FRONT_PORT
CURL=(curl -sS --max-time 20 --cacert "$WORK/site.pem"
  --resolve "www.example.com:$FRONT_PORT:127.0.0.1")

# --- a private config file: no warning -----------------------------------------------------
start_front "$WORK/front.log" "$FRONT_PORT" --config "$WORK/front.conf"
wait_port "$PCAP_OVER_IP_PORT"  # --pcapoverip from the file reached the embedded recorder
got=$("${CURL[@]}" "$URL/index.html?from=config") || fail "curl through the front failed"
[[ $got == "hello through a config file" ]] || fail "GET answered '$got'"
tr '\0' ' ' < "/proc/$FRONT_PID/cmdline" | grep -qF -- "$PASSWORD" &&
  fail "the password is in the front's command line"
grep -q "debug: " "$WORK/front.log" || fail "-v from the config file did not make the log verbose"
grep -F "warning" "$WORK/front.log" &&
  fail "a literal password in a mode 600 config file was warned about"
stop_front

one_capture "$WORK/captures" "$WORK/private.pcap"
requests=$(tshark -r "$WORK/private.pcap" -n -Y 'http.request.uri == "/index.html?from=config"' \
  2> /dev/null | wc -l)
[[ $requests == 1 ]] || fail "the capture holds $requests recorded requests, expected 1"
tshark -r "$WORK/private.pcap" -n -Y 'tcp.srcport == 80 && http.response.code == 200' \
  2> /dev/null | grep -q . || fail "the response is not in the capture"
grep -aqF -- "$PASSWORD" "$WORK/private.pcap" && fail "the password is in the capture"
note "mode 600: request relayed and recorded, no warning"

# --- the same file, readable by others: one warning naming it --------------------------------
chmod 644 "$WORK/front.conf"
rm -f "$WORK"/captures/*
start_front "$WORK/front-644.log" "$FRONT_PORT" --config "$WORK/front.conf"
got=$("${CURL[@]}" "$URL/index.html") || fail "curl through the front (mode 644) failed"
[[ $got == "hello through a config file" ]] || fail "GET (mode 644) answered '$got'"
stop_front
expect_one_line "$WORK/front-644.log" \
  "^tlstap-front: warning: --config: $WORK/front.conf holds a password and other users can read" \
  "mode 644 config file"
[[ $(count_lines "$WORK/front-644.log" "warning") == 1 ]] ||
  fail "more than one warning: $(grep warning "$WORK/front-644.log")"
grep -qF -- "$PASSWORD" "$WORK/front-644.log" && fail "the password is in the log"
note "mode 644: warned once, naming the file"

# --- bad lines -----------------------------------------------------------------------------
printf '# bad\n-p %s,80\n--bogus 1\n' "$FRONT_PORT" > "$WORK/bad.conf"
run_front_expecting_exit2 "front, unknown option in a config file" \
  "^tlstap-front: --config: $WORK/bad.conf:3: --bogus: unknown option$" --config "$WORK/bad.conf"
printf 'terminate\nconfig %s\n' "$WORK/front.conf" > "$WORK/nested.conf"
run_front_expecting_exit2 "front, nested config file" \
  "^tlstap-front: --config: $WORK/nested.conf:2: --config: not allowed inside a config file$" \
  --config "$WORK/nested.conf"
run_front_expecting_exit2 "front, missing config file" \
  "^tlstap-front: --config: $WORK/none.conf: No such file or directory$" --config "$WORK/none.conf"

# --- tlstap-recorder from a config file --------------------------------------------------------
cat > "$WORK/recorder.conf" << EOF
# tlstap-recorder
listen unix:$WORK/recorder.sock
--write $WORK/recorder.pcap
autoflush 1
verbose
EOF
chmod 600 "$WORK/recorder.conf"
start_recorder "$WORK/recorder.log" --config "$WORK/recorder.conf"
[[ -S $WORK/recorder.sock ]] || fail "the recorder did not create the socket named in its config"
start_front "$WORK/front-ext.log" "$FRONT_PORT" --terminate --connect 127.0.0.1 \
  -p "$FRONT_PORT,80,$BACKEND_PORT" \
  --servercert "www.example.com:$WORK/site.p12:file:$WORK/site.pw" \
  --recorder "unix:$WORK/recorder.sock"
got=$("${CURL[@]}" "$URL/index.html?to=recorder") || fail "curl via the external recorder failed"
[[ $got == "hello through a config file" ]] || fail "GET (external recorder) answered '$got'"
stop_front
stop_recorder
requests=$(tshark -r "$WORK/recorder.pcap" -n -Y 'http.request.uri == "/index.html?to=recorder"' \
  2> /dev/null | wc -l)
[[ $requests == 1 ]] || fail "the recorder's capture holds $requests requests, expected 1"
note "tlstap-recorder from a config file recorded the request"

printf 'listen unix:%s\n\n-o\n' "$WORK/bad.sock" > "$WORK/recorder-bad.conf"
status=0
timeout 10 "$RECORDER" --config "$WORK/recorder-bad.conf" > "$WORK/rec-bad.out" \
  2> "$WORK/rec-bad.err" || status=$?
[[ $status == 2 ]] || fail "recorder, bad line: exit status $status, expected 2"
[[ $(wc -l < "$WORK/rec-bad.err") == 1 ]] || fail "recorder, bad line: $(cat "$WORK/rec-bad.err")"
grep -qxF -- "tlstap-recorder: --config: $WORK/recorder-bad.conf:3: --output: needs a value (DIR)" \
  "$WORK/rec-bad.err" || fail "recorder, bad line: $(cat "$WORK/rec-bad.err")"
[[ ! -e $WORK/bad.sock ]] || fail "recorder, bad line: the socket was created"
note "recorder, bad line: $(cat "$WORK/rec-bad.err")"

pass
