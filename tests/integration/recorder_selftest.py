"""Self-test of recorder_check.py: a small reference TCP synthesis builds captures the way the
recorder should, then `check` must accept the clean capture and reject each damaged copy. Run it
as `recorder_check.py selftest`; it shows that a passing check means something."""

import argparse
import hashlib
import json
import os
import random
import socket
import struct
import tempfile

from recorder_check import ACK, FIN, LINKTYPE_ETHERNET, MSS, PCAP_MAGIC_US, RST, SYN, run_check


# --- selftest: a reference synthesis, so the checker is shown to accept and to reject ---------

def ip_checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_frame(family, src, dst, sport, dport, seq, ack, flags, payload=b"", mss=None):
    options = struct.pack("!BBH", 2, 4, mss) if mss else b""
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (5 + len(options) // 4) << 4,
                         flags, 65535, 0, 0) + options
    segment = header + payload
    if family == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(segment))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(segment), 6)
    segment = segment[:16] + struct.pack("!H", ip_checksum(pseudo + segment)) + segment[18:]
    if family == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 0, 0x4000, 64, 6, 0, src,
                         dst)
        ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
        ethertype = 0x0800
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(segment), 6, 64, src, dst)
        ethertype = 0x86DD
    macs = bytes.fromhex("020000000002020000000001") if sport > dport else \
        bytes.fromhex("020000000001020000000002")
    return macs + struct.pack("!H", ethertype) + ip + segment


def synthesize(flow, chunks, records):
    """Appends the packets of one flow to records: [(time_us, frame)]."""
    family = flow["family"]
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    ends = [(socket.inet_pton(af, flow["client"]), flow["clientPort"]),
            (socket.inet_pton(af, flow["server"]), flow["serverPort"])]
    seq = [1000 + flow["clientPort"], 900000]
    fin = [False, False]
    acked = [None, None]

    def send(side, t, flags, payload=b"", mss=None, ack=True):
        if flags == ACK and not payload and acked[side] == seq[1 - side]:
            return  # nothing new to acknowledge: a second ACK would be a duplicate
        (src, sport), (dst, dport) = ends[side], ends[1 - side]
        acked[side] = seq[1 - side] if ack else None
        records.append((t, flow["clientPort"], tcp_frame(
            family, src, dst, sport, dport, seq[side], seq[1 - side] if ack else 0, flags,
            payload, mss)))
        seq[side] += len(payload) + (1 if flags & (SYN | FIN) else 0)

    t = flow["startUs"]
    send(0, t, SYN, mss=MSS[family], ack=False)
    send(1, t, SYN | ACK, mss=MSS[family])
    send(0, t, ACK)
    for side, t, data, last in chunks:
        for i in range(0, len(data), MSS[family]):
            send(side, t, ACK, data[i:i + MSS[family]])
        if last:
            send(side, t, FIN | ACK)
            fin[side] = True
        send(1 - side, t, ACK)
    t = flow["closeUs"] or t
    if flow["close"].startswith("reset"):
        send(0 if flow["close"] == "reset-client" else 1, t, RST | ACK)
    elif flow["close"] != "open":
        for side in (0, 1):
            if not fin[side]:
                send(side, t, FIN | ACK)
        send(0, t, ACK)


def write_pcap(path, records):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        for t, _, frame in records:
            f.write(struct.pack("<IIII", t // 1000000, t % 1000000, len(frame), len(frame)))
            f.write(frame)


def run_selftest(args):
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="recorder-check-selftest-") as tmp:
        return selftest_in(tmp, rng)


def selftest_in(tmp, rng):
    flows, records = [], []
    start = 1700000000000000
    kinds = ["fin", "fin-chunks", "reset-client", "reset-server", "open", "fin"]
    for i, kind in enumerate(kinds):
        family = 6 if i % 2 else 4
        flow = {"label": "random", "family": family,
                "client": "fd00::1:%x" % i if family == 6 else "127.0.1.%d" % (i + 1),
                "clientPort": 20000 + i, "server": "::1" if family == 6 else "127.0.0.1",
                "serverPort": 40001, "close": kind, "startUs": start + i * 10, "checked": True}
        sizes = [rng.choice([0, 1, 1460, 5000, 70000]), rng.choice([0, 1440, 1441, 30000])]
        data = [rng.randbytes(sizes[0]), rng.randbytes(sizes[1])]
        chunks, t, offsets = [], flow["startUs"], [0, 0]
        while offsets[0] < sizes[0] or offsets[1] < sizes[1]:
            side = rng.choice([s for s in (0, 1) if offsets[s] < sizes[s]])
            n = min(sizes[side] - offsets[side], rng.randint(1, 9000))
            t += rng.randint(0, 50)
            offsets[side] += n
            last = kind == "fin-chunks" and offsets[side] == sizes[side]
            chunks.append((side, t, data[side][offsets[side] - n:offsets[side]], last))
        flow.update(bytes=sizes, sha256=[hashlib.sha256(d).hexdigest() for d in data],
                    lastUs=t, closeUs=0 if kind == "open" else t + 5)
        flows.append(flow)
        synthesize(flow, chunks, records)
    request = b"GET /x HTTP/1.1\r\nHost: selftest\r\n\r\n"
    body = b"selftest body line\n" * 300
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    http = {"label": "http", "family": 4, "client": "127.0.0.80", "clientPort": 19080,
            "server": "127.0.0.1", "serverPort": 80, "close": "fin", "startUs": start + 500,
            "bytes": [len(request), len(response)], "httpBody": len(body),
            "sha256": [hashlib.sha256(request).hexdigest(), hashlib.sha256(response).hexdigest()],
            "lastUs": start + 502, "closeUs": start + 503, "checked": True}
    flows.append(http)
    synthesize(http, [(0, start + 501, request, False), (1, start + 502, response, False)],
               records)
    records.sort(key=lambda r: r[0])
    manifest = os.path.join(tmp, "manifest.json")
    with open(manifest, "w") as f:
        json.dump({"flows": flows}, f)

    clean = os.path.join(tmp, "clean.pcap")
    write_pcap(clean, records)
    data_frames = [i for i, (_, _, frame) in enumerate(records) if len(frame) > 100]
    victim = data_frames[len(data_frames) // 2]
    t, port, frame = records[victim]
    damaged = {
        "flipped-byte": records[:victim] + [(t, port, frame[:-1] + bytes([frame[-1] ^ 1]))]
        + records[victim + 1:],
        "dropped-segment": records[:victim] + records[victim + 1:],
        "missing-flow": [r for r in records if r[1] != 20003],
    }
    ok = True
    print("selftest: clean capture (%d packets)" % len(records))
    if not run_check(argparse.Namespace(manifest=[manifest], pcap=[clean])):
        print("selftest: FAILED: the checker rejects a correct capture")
        ok = False
    for name, damaged_records in damaged.items():
        path = os.path.join(tmp, name + ".pcap")
        write_pcap(path, damaged_records)
        print("selftest: damaged capture, %s (must fail)" % name)
        if run_check(argparse.Namespace(manifest=[manifest], pcap=[path])):
            print("selftest: FAILED: the checker accepts a capture with a %s" % name)
            ok = False
    truncated = os.path.join(tmp, "truncated.pcap")
    with open(clean, "rb") as f, open(truncated, "wb") as out:
        out.write(f.read()[:-10])
    print("selftest: truncated file (must fail)")
    if run_check(argparse.Namespace(manifest=[manifest], pcap=[truncated])):
        print("selftest: FAILED: the checker accepts a truncated file")
        ok = False
    print("selftest: %s" % ("PASS" if ok else "FAIL"))
    return ok
