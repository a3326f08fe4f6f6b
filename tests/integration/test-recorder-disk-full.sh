#!/usr/bin/env bash
# The recorder's disk fills up while traffic flows (a 4 MiB tmpfs and a filler file): the front
# goes on relaying, the recorder logs the error once, a PCAP-over-IP consumer keeps getting every
# packet, and when the filler is removed writing resumes. The merged capture then holds every
# byte of every connection, no record is torn, and both counters lines say nothing was lost.
# Needs root (mount); exits 77 (skipped) otherwise.
. "$(dirname "$0")/lib.sh"
require_tools openssl tshark mergecap python3 mount umount

mount_small_disk

make_cert site full.example.com
BACKEND_PORT=$(free_port)
FRONT_PORT=$(free_port)
OVERIP_PORT=$(free_port)
start_backend echo "$BACKEND_PORT"
start_front "$WORK/front.log" "$FRONT_PORT" --terminate --connect 127.0.0.1 \
  --servercert "full.example.com:$WORK/site-bundle.pem" -p "$FRONT_PORT,443,$BACKEND_PORT" \
  -o "$DISK/captures" --pcapoverip "127.0.0.1:$OVERIP_PORT" --stats-interval 0
wait_port "$OVERIP_PORT"

# A PCAP-over-IP consumer that saves the stream as it comes.
spawn "$WORK/consumer.log" python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
with open(sys.argv[2], "wb") as out:
    while True:
        data = s.recv(65536)
        if not data:
            break
        out.write(data)
        out.flush()
' "$OVERIP_PORT" "$WORK/live.pcap"
wait_for 10 "the consumer to connect" grep -q "consumer .* connected" "$WORK/front.log"

# clients COUNT SIZE EXPECTED: COUNT TLS connections at once, each sending SIZE random bytes to
# the echo backend and reading them back; appends "PORT UP SHA DOWN SHA fin" lines.
clients() {
  timeout 60 python3 - "$FRONT_PORT" "$WORK/site.pem" "$@" << 'PYTHON' ||
import asyncio, hashlib, os, ssl, sys
port, ca, count, size, expected = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                   int(sys.argv[4]), sys.argv[5])

async def client(context):
    data = os.urandom(size)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                   server_hostname="full.example.com")
    writer.write(data)
    echoed = await reader.readexactly(size)
    local = writer.get_extra_info("sockname")[1]
    writer.close()
    await writer.wait_closed()
    assert echoed == data, "echo differs"
    digest = hashlib.sha256(data).hexdigest()
    return "%d %d %s %d %s fin" % (local, size, digest, size, digest)

async def main():
    context = ssl.create_default_context(cafile=ca)
    lines = await asyncio.gather(*(client(context) for _ in range(count)))
    with open(expected, "a") as out:
        out.write("".join(line + "\n" for line in lines))

asyncio.run(main())
PYTHON
    fail "clients failed"
}

# Before: the disk has room.
clients 2 100000 "$WORK/expected"

# Fill the disk (dd stops at ENOSPC), then relay ~2 MB while it is full.
dd if=/dev/zero of="$DISK/filler" bs=64k 2> /dev/null || true
clients 16 65536 "$WORK/expected"
wait_for 10 "the recorder to report the full disk" \
  grep -q "error: cannot write .*No space left on device" "$WORK/front.log"
front_alive "$WORK/front.log"
# The consumer was served all along: every flow so far is in its stream already.
wait_for 10 "the live stream to hold 18 flows" bash -c \
  "[[ \$(tshark -r '$WORK/live.pcap' -n -Y 'tcp.flags.syn==1 && tcp.flags.ack==0' 2> /dev/null |
     wc -l) == 18 ]]"
sleep 2  # a few failed retries

# Space returns: writing resumes within about a second.
rm "$DISK/filler"
wait_for 10 "writing to resume" grep -q "writing again after .* no packet was lost" \
  "$WORK/front.log"
clients 2 100000 "$WORK/expected"

# Counters, from both programs, on a SIGUSR1 to each (the recorder runs under its supervisor, a
# child of the front).
supervisor=$(pgrep -P "$FRONT_PID" | head -n 1)
recorder=$(pgrep -P "$supervisor" | head -n 1)
[[ -n $recorder ]] || fail "no embedded recorder process found"
kill -USR1 "$FRONT_PID" "$recorder"
wait_for 10 "both counters lines" bash -c \
  "grep -q 'tlstap-front: info: stats:' '$WORK/front.log' &&
   grep -q 'tlstap-recorder: info: stats:' '$WORK/front.log'"
front_stats=$(grep -m1 'tlstap-front: info: stats:' "$WORK/front.log")
recorder_stats=$(grep -m1 'tlstap-recorder: info: stats:' "$WORK/front.log")
relayed=$(awk '{up += $2} END {print up}' "$WORK/expected")
[[ $front_stats == *" bytes_client_to_server=$relayed "* ]] ||
  fail "front counters do not show $relayed bytes relayed: $front_stats"
[[ $front_stats == *" bytes_server_to_client=$relayed "* ]] ||
  fail "front counters do not show $relayed bytes echoed: $front_stats"
[[ $front_stats == *" bytes_lost=0"* ]] || fail "front counters show a loss: $front_stats"
[[ $recorder_stats == *" packets_lost=0 frame_bytes_lost=0 "* ]] ||
  fail "recorder counters show a loss: $recorder_stats"
[[ $recorder_stats == *" payload_bytes_closed_flows=$((2 * relayed)) "* ]] ||
  fail "recorder counters do not show $((2 * relayed)) payload bytes: $recorder_stats"

stop_front
[[ $(count_lines "$WORK/front.log" 'error: cannot write') == 1 ]] ||
  fail "the write error was not logged exactly once"
[[ $(count_lines "$WORK/front.log" 'not recorded|could not be recorded|were lost') == 0 ]] ||
  fail "something was lost: $(grep -E 'not recorded|could not be recorded|were lost' \
    "$WORK/front.log")"

# Every byte of the 20 connections in the files (readable to the end: no torn record) and in the
# live stream.
one_capture "$DISK/captures" "$WORK/all.pcap"
check_flows "$WORK/all.pcap" "$WORK/expected" || fail "the capture files differ from the traffic"
check_flows "$WORK/live.pcap" "$WORK/expected" || fail "the live stream differs from the traffic"
problems=$(tcp_problem_frames "$WORK/all.pcap")
[[ $problems == 0 ]] || fail "$problems frames with tcp.analysis.flags in the capture"
note "relayed $relayed bytes each way in 20 connections; all of them in the files and live"
pass
