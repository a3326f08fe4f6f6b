#!/usr/bin/env python3
"""Opens COUNT TLS connections to a proxy, makes one small HTTP request on each, then holds
them all idle until SIGTERM, and closes them cleanly.

    idle-connections.py HOST PORT SNI CAFILE COUNT PATH

Each connection completes a full TLS handshake (Python offers a session for resumption only
when given one, and none is given here) and one keep-alive GET of PATH, so the proxy has
connected its backend and relayed both ways before the connection goes idle: the state of an
idle keep-alive connection in production. When all are open it prints
one line and flushes:

    ready connections=N sent=BYTES received=BYTES

(BYTES are the decrypted HTTP bytes written and read, for the recording check), then waits for
SIGTERM, closes every connection with a TLS close_notify and a FIN, prints "closed", exits 0.
Any connection that fails to open or to get a complete response: a line on stderr, exit 1.
"""
import asyncio
import signal
import ssl
import sys

# Handshakes in flight at once: enough to open thousands in a few seconds, few enough not to
# overflow a listen backlog of 100 (hitch's default, raised anyway by run.sh).
CONCURRENCY = 64


async def read_response(reader):
    """Reads one HTTP/1.1 response with a Content-Length; returns its raw bytes."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("answer was %r" % head.split(b"\r\n")[0])
    return head + body


async def open_one(host, port, sni, context, request, limit):
    async with limit:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=sni)
        writer.write(request)
        await writer.drain()
        response = await read_response(reader)
        return reader, writer, len(response)


async def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    host, port, sni, cafile, count, path = sys.argv[1:]
    port, count = int(port), int(count)
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["http/1.1"])
    request = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, sni)).encode()
    limit = asyncio.Semaphore(CONCURRENCY)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    results = await asyncio.gather(
        *(open_one(host, port, sni, context, request, limit) for _ in range(count)),
        return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    connections = [result for result in results if not isinstance(result, BaseException)]
    received = sum(result[2] for result in connections)
    print("ready connections=%d sent=%d received=%d"
          % (len(connections), len(connections) * len(request), received), flush=True)
    if failures:
        print("idle-connections: %d of %d connections failed, first: %r"
              % (len(failures), count, failures[0]), file=sys.stderr, flush=True)

    await stop.wait()
    for _, writer, _ in connections:
        writer.close()
    await asyncio.gather(*(writer.wait_closed() for _, writer, _ in connections),
                         return_exceptions=True)
    print("closed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
