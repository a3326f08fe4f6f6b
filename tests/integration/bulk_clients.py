"""COUNT TLS clients at once to an echo service, each uploading BYTES of random data while it
reads the echo back; exits non-zero unless every echo is exact. Writes what each relayed to
EXPECTED, one line "CLIENT-PORT UP-BYTES UP-SHA256 DOWN-BYTES DOWN-SHA256 fin", as check_flows
(lib.sh) reads it.

Usage: bulk_clients.py PORT CA-FILE SNI-NAME COUNT BYTES EXPECTED
"""
import asyncio, hashlib, random, ssl, sys
port, ca, name, count, size, expected_path = (int(sys.argv[1]), sys.argv[2], sys.argv[3],
                                              int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])

async def client(index, context, results):
    data = random.Random(index).randbytes(size)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                   server_hostname=name)
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
