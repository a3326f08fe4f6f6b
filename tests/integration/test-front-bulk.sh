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
start_front "$WORK/front.log" "$FRONT_PORT" --terminate --connect 127.0.0.1 \
  --servercert "bulk.example.com:$WORK/site-bundle.pem" \
  -p "$FRONT_PORT,9000,$BACKEND_PORT" --recorder "unix:$WORK/recorder.sock"

# Each client sends while it reads (a relay with bounded buffers would otherwise, rightly, stop
# reading a client that does not read), then checks the echo and notes what it relayed.
timeout 120 python3 - "$FRONT_PORT" "$WORK/site.pem" "$CONNECTIONS" "$BYTES" "$WORK/expected" \
  << 'PYTHON' || fail "bulk clients failed"
import asyncio, hashlib, random, ssl, sys
port, ca, count, size, expected_path = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                        int(sys.argv[4]), sys.argv[5])

async def client(index, context, results):
    data = random.Random(index).randbytes(size)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                   server_hostname="bulk.example.com")
    local_port = writer.get_extra_info("sockname")[1]

    async def send():
        for offset in range(0, size, 65536):
            writer.write(data[offset:offset + 65536])
            await writer.drain()

    sender = asyncio.create_task(send())
    echoed = await reader.readexactly(size)
    await sender
    writer.close()
    await writer.wait_closed()
    if echoed != data:
        raise AssertionError("connection %d: echo differs from what was sent" % index)
    digest = hashlib.sha256(data).hexdigest()
    results.append("%d %d %s %d %s fin" % (local_port, size, digest, size, digest))

async def main():
    context = ssl.create_default_context(cafile=ca)
    results = []
    outcomes = await asyncio.wait_for(asyncio.gather(
        *(client(i, context, results) for i in range(count)), return_exceptions=True), 240)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    for e in errors[:5]:
        print("client error:", repr(e))
    open(expected_path, "w").write("\n".join(results) + "\n")
    print("%d of %d connections relayed %d bytes each way intact" % (len(results), count, size))
    sys.exit(1 if errors else 0)

asyncio.run(main())
PYTHON

front_alive "$WORK/front.log"
[[ $(count_lines "$WORK/front.log" ': (error|warning|info): client') == 0 ]] ||
  fail "connection problems in the front's log: $(grep -m5 ': client' "$WORK/front.log")"
stop_front
stop_recorder

problems=$(tcp_problem_frames "$WORK/bulk.pcap")
[[ $problems == 0 ]] || fail "$problems frames with tcp.analysis.flags in the capture"
check_flows "$WORK/bulk.pcap" "$WORK/expected" || fail "the capture differs from what was relayed"
# The server side is the backend's address with the PCAPPORT of -p.
servers=$(tshark -r "$WORK/bulk.pcap" -n -Y "tcp.flags.syn == 1 && tcp.flags.ack == 0" \
  -T fields -e ip.dst -e tcp.dstport 2> /dev/null | sort -u)
[[ $servers == $'127.0.0.1\t9000' ]] || fail "recorded server addresses: $servers"

pass
