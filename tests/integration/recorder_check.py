#!/usr/bin/env python3
"""Checks what tlstap-recorder wrote against what replay-client sent, and plays PCAP-over-IP peers.

check     reads pcap files (or PCAP-over-IP captures) the way a user would, through tshark, and
          verifies every flow of one or more replay-client manifests: the handshake, sequence
          numbers, segment sizes, checksums, close (FIN/RST), timestamps, and the SHA-256 of each
          direction's reassembled bytes. Also: no tcp.analysis.flags at all, HTTP dissected.
consume   a fast PCAP-over-IP consumer: connects, saves everything until EOF.
stall     a slow consumer: tiny receive buffer, reads nothing until told to, then drains and
          reports how many bytes it got and how the connection ended.
listen    the target of --pcapoveripconnect: accepts one connection and saves it until EOF.
same-packets  two captures hold the same packet records (headers aside).
garbage   sends random bytes to a port (hostile input), then closes.
selftest  builds small pcaps with a reference TCP synthesis, checks that `check` accepts them
          and rejects damaged copies (so a passing check means something).

Standard library only; tshark and mergecap are the only outside programs.
"""

import argparse
import hashlib
import json
import mmap
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

PCAP_MAGIC_US = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
MSS = {4: 1460, 6: 1440}

TSHARK_FIELDS = [
    "frame.number", "frame.time_epoch", "tcp.stream", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
    "tcp.options.mss_val", "eth.src", "eth.dst", "tcp.checksum.status", "ip.checksum.status",
    "tcp.analysis.flags", "http.request.method", "http.request.uri", "http.response.code",
    "http.content_length", "tcp.payload",
]
F = {name: i for i, name in enumerate(TSHARK_FIELDS)}

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


class Failures:
    """Collects problems; the first few are printed in full, the rest counted."""

    def __init__(self):
        self.items = []

    def add(self, text):
        self.items.append(text)

    def report(self, limit=40):
        for text in self.items[:limit]:
            print("FAIL:", text)
        if len(self.items) > limit:
            print("FAIL: ... and %d more" % (len(self.items) - limit))
        return not self.items


def read_pcap_records(path, failures):
    """Walks a classic pcap file record by record. Returns (packet count, SHA-256 of everything
    after the global header), or (0, None) when the file is not a complete pcap."""
    size = os.path.getsize(path)
    if size < 24:
        failures.add("%s: %d bytes, shorter than a pcap global header" % (path, size))
        return 0, None
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        magic, major, minor, _, _, snaplen, linktype = struct.unpack("<IHHiIII", data[:24])
        if magic != PCAP_MAGIC_US:
            failures.add("%s: magic %#x, expected little-endian microsecond pcap" % (path, magic))
            return 0, None
        if (major, minor) != (2, 4) or snaplen != 65535 or linktype != LINKTYPE_ETHERNET:
            failures.add("%s: version %d.%d snaplen %d linktype %d, expected 2.4/65535/ethernet"
                         % (path, major, minor, snaplen, linktype))
        offset, count = 24, 0
        while offset + 16 <= size:
            _, usecs, incl, orig = struct.unpack_from("<IIII", data, offset)
            if usecs >= 1000000 or incl > snaplen or incl != orig:
                failures.add("%s: bad record header at offset %d (usec %d, incl %d, orig %d)"
                             % (path, offset, usecs, incl, orig))
                return count, None
            if offset + 16 + incl > size:
                break
            offset += 16 + incl
            count += 1
        if offset != size:
            failures.add("%s: %d trailing bytes after packet %d (truncated record)"
                         % (path, size - offset, count))
            return count, None
        with memoryview(data) as view, view[24:] as records:
            return count, hashlib.sha256(records).hexdigest()


def usec(epoch_text):
    seconds, _, fraction = epoch_text.partition(".")
    return int(seconds) * 1000000 + int((fraction + "000000")[:6])


class Direction:
    def __init__(self):
        self.isn = None
        self.next_seq = None
        self.hash = hashlib.sha256()
        self.bytes = 0
        self.fin = False
        self.rst = False


class Stream:
    def __init__(self, number, key, family, time_us):
        self.number = number
        self.key = key  # (client ip, client port, server ip, server port)
        self.family = family
        self.dirs = [Direction(), Direction()]
        self.syn_time = time_us
        self.last_time = time_us
        self.packets = 0
        self.handshake = 0  # 1: SYN, 2: SYN-ACK, 3: ACK seen
        self.http_requests = []
        self.http_responses = []


def run_check(args):
    failures = Failures()
    flows, unchecked = {}, set()
    for path in args.manifest:
        with open(path) as f:
            for flow in json.load(f)["flows"]:
                key = (flow["client"], flow["clientPort"], flow["server"], flow["serverPort"])
                if key in flows or key in unchecked:
                    failures.add("%s: flow %s appears twice in the manifests" % (path, key))
                if flow.get("checked", True):
                    flows[key] = flow
                else:
                    unchecked.add(key)

    total_packets = 0
    for path in args.pcap:
        count, _ = read_pcap_records(path, failures)
        total_packets += count
    if failures.items:
        return failures.report()

    with tempfile.TemporaryDirectory() as tmp:
        capture = args.pcap[0]
        if len(args.pcap) > 1:
            # Hourly rotation can split a run; concatenated in name (= time) order it is one
            # capture again.
            capture = os.path.join(tmp, "merged.pcap")
            subprocess.run(["mergecap", "-a", "-F", "pcap", "-w", capture] + sorted(args.pcap),
                           check=True)
        streams, stats = dissect(capture, failures)

    if stats["frames"] != total_packets:
        failures.add("tshark read %d frames, the files hold %d" % (stats["frames"], total_packets))
    by_key = {s.key: s for s in streams.values()}
    verified = 0
    for key, flow in flows.items():
        stream = by_key.get(key)
        if stream is None:
            failures.add("flow %s (%s, %d+%d bytes) is not in the capture"
                         % (key, flow["label"], flow["bytes"][0], flow["bytes"][1]))
            continue
        verified += check_flow(flow, stream, failures)
    for key, stream in by_key.items():
        if key not in flows and key not in unchecked:
            failures.add("tcp.stream %d %s is in no manifest" % (stream.number, key))

    print("check: %d files, %d frames, %d streams, %d flows expected, %d payload bytes verified, "
          "%d frames with tcp.analysis.flags, %d bad checksums"
          % (len(args.pcap), stats["frames"], len(streams), len(flows), verified,
             stats["analysis"], stats["bad_checksums"]))
    return failures.report()


def dissect(capture, failures):
    """One tshark pass over the capture; reassembles every stream by sequence number."""
    command = ["tshark", "-r", capture, "-n", "-o", "tcp.check_checksum:TRUE",
               "-o", "ip.check_checksum:TRUE", "-o", "tcp.relative_sequence_numbers:FALSE",
               "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for field in TSHARK_FIELDS:
        command += ["-e", field]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=1 << 20)
    streams = {}
    stats = {"frames": 0, "analysis": 0, "bad_checksums": 0}
    for raw in proc.stdout:
        row = raw.rstrip(b"\n").split(b"\t")
        stats["frames"] += 1
        if len(row) != len(TSHARK_FIELDS):
            failures.add("tshark row with %d fields: %r" % (len(row), raw[:200]))
            continue
        handle_frame([c.decode() for c in row[:-1]] + [row[-1]], streams, stats, failures)
    errors = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        failures.add("tshark failed with status %d on %s: %s"
                     % (proc.returncode, capture, errors.strip()[-500:]))
    return streams, stats


def handle_frame(row, streams, stats, failures):
    frame = row[F["frame.number"]]
    if row[F["tcp.stream"]] == "":
        failures.add("frame %s is not TCP" % frame)
        return
    if row[F["tcp.analysis.flags"]] != "":
        stats["analysis"] += 1
        if stats["analysis"] <= 10:
            failures.add("frame %s has tcp.analysis.flags" % frame)
    for name in ("tcp.checksum.status", "ip.checksum.status"):
        if row[F[name]] not in ("", "1"):
            stats["bad_checksums"] += 1
            failures.add("frame %s: %s is %s, not Good" % (frame, name, row[F[name]]))
    for name in ("eth.src", "eth.dst"):
        first_octet = int(row[F[name]][:2], 16)
        if not first_octet & 0x02 or first_octet & 0x01:
            failures.add("frame %s: %s %s is not a locally administered unicast MAC"
                         % (frame, name, row[F[name]]))
    family = 6 if row[F["ipv6.src"]] else 4
    src = row[F["ipv6.src"]] or row[F["ip.src"]]
    dst = row[F["ipv6.dst"]] or row[F["ip.dst"]]
    sport, dport = int(row[F["tcp.srcport"]]), int(row[F["tcp.dstport"]])
    flags = int(row[F["tcp.flags"]], 16)
    seq, ack = int(row[F["tcp.seq_raw"]]), int(row[F["tcp.ack_raw"]])
    length = int(row[F["tcp.len"]])
    time_us = usec(row[F["frame.time_epoch"]])
    number = int(row[F["tcp.stream"]])

    stream = streams.get(number)
    if stream is None:
        if flags & (SYN | ACK) != SYN:
            failures.add("frame %s: tcp.stream %d does not start with a SYN" % (frame, number))
            return
        stream = streams[number] = Stream(number, (src, sport, dst, dport), family, time_us)
    stream.packets += 1
    if time_us < stream.last_time:
        failures.add("frame %s: time goes backwards in tcp.stream %d" % (frame, number))
    stream.last_time = time_us
    side = 0 if (src, sport) == stream.key[:2] else 1
    d, other = stream.dirs[side], stream.dirs[1 - side]

    if flags & SYN:
        expected = SYN if side == 0 else SYN | ACK
        if flags & (SYN | ACK | FIN | RST) != expected or stream.handshake != side:
            failures.add("frame %s: unexpected SYN (flags %#x) in tcp.stream %d"
                         % (frame, flags, number))
        if not row[F["tcp.options.mss_val"]]:
            failures.add("frame %s: SYN without an MSS option" % frame)
        elif int(row[F["tcp.options.mss_val"]]) != MSS[family]:
            failures.add("frame %s: MSS option %s, expected %d"
                         % (frame, row[F["tcp.options.mss_val"]], MSS[family]))
        d.isn, d.next_seq = seq, (seq + 1) & 0xFFFFFFFF
        stream.handshake = side + 1
        return
    if stream.handshake == 2 and side == 0 and flags & ACK:
        stream.handshake = 3
    if stream.handshake < 2:
        failures.add("frame %s: data before the handshake in tcp.stream %d" % (frame, number))
        return
    if not flags & ACK and not flags & RST:
        failures.add("frame %s: segment without ACK in tcp.stream %d" % (frame, number))
    if flags & ACK and 0 < (ack - other.next_seq) & 0xFFFFFFFF < 0x80000000:
        failures.add("frame %s: ack %d is ahead of the other side's next sequence number %d"
                     % (frame, ack, other.next_seq))
    if length:
        if seq != d.next_seq:
            failures.add("frame %s: seq %d, expected %d in tcp.stream %d (gap or overlap)"
                         % (frame, seq, d.next_seq, number))
        if d.fin:
            failures.add("frame %s: data after FIN in tcp.stream %d" % (frame, number))
        if length > MSS[family]:
            failures.add("frame %s: %d bytes, more than the MSS" % (frame, length))
        payload = bytes.fromhex(row[F["tcp.payload"]].decode())
        if len(payload) != length:
            failures.add("frame %s: tcp.payload has %d bytes, tcp.len %d"
                         % (frame, len(payload), length))
        d.hash.update(payload)
        d.bytes += len(payload)
        d.next_seq = (seq + length) & 0xFFFFFFFF
    if flags & FIN:
        if d.fin:
            failures.add("frame %s: second FIN in tcp.stream %d" % (frame, number))
        d.fin = True
        d.next_seq = (d.next_seq + 1) & 0xFFFFFFFF
    if flags & RST:
        d.rst = True
    if row[F["http.request.method"]]:
        stream.http_requests.append((row[F["http.request.method"]], row[F["http.request.uri"]]))
    if row[F["http.response.code"]]:
        stream.http_responses.append((row[F["http.response.code"]],
                                      row[F["http.content_length"]]))


def check_flow(flow, stream, failures):
    """Compares one manifest flow with its stream; returns the payload bytes verified."""
    name = "flow %s:%d (%s, tcp.stream %d)" % (flow["client"], flow["clientPort"], flow["label"],
                                               stream.number)
    ok = True
    for side, label in ((0, "client->server"), (1, "server->client")):
        d = stream.dirs[side]
        if d.bytes != flow["bytes"][side] or d.hash.hexdigest() != flow["sha256"][side]:
            failures.add("%s %s: %d bytes sha256 %s, sent %d bytes sha256 %s"
                         % (name, label, d.bytes, d.hash.hexdigest()[:16], flow["bytes"][side],
                            flow["sha256"][side][:16]))
            ok = False
    if stream.handshake != 3:
        failures.add("%s: incomplete handshake (%d of 3 packets)" % (name, stream.handshake))
    if stream.syn_time != flow["startUs"]:
        failures.add("%s: SYN at %d us, the flow started at %d"
                     % (name, stream.syn_time, flow["startUs"]))
    end = flow["closeUs"] or flow["lastUs"]
    if stream.last_time > end:
        failures.add("%s: last packet at %d us, after the flow ended (%d)"
                     % (name, stream.last_time, end))
    fins = [d.fin for d in stream.dirs]
    rsts = [d.rst for d in stream.dirs]
    expected = {
        "fin": ([True, True], [False, False]), "fin-chunks": ([True, True], [False, False]),
        "reset-client": ([False, False], [True, False]),
        "reset-server": ([False, False], [False, True]),
        "open": ([False, False], [False, False]),
    }[flow["close"]]
    if (fins, rsts) != expected:
        failures.add("%s: close %s, capture has FIN %s RST %s"
                     % (name, flow["close"], fins, rsts))
    if flow["label"] == "http":
        if [m for m, _ in stream.http_requests] != ["GET"]:
            failures.add("%s: HTTP requests dissected: %s" % (name, stream.http_requests))
        responses = [(code, length) for code, length in stream.http_responses]
        body = flow.get("httpBody")
        if len(responses) != 1 or responses[0][0] != "200" or (
                body is not None and responses[0][1] != str(body)):
            failures.add("%s: HTTP responses dissected: %s" % (name, responses))
    return stream.dirs[0].bytes + stream.dirs[1].bytes if ok else 0


# --- PCAP-over-IP peers ----------------------------------------------------------------------

def touch(path, text=""):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def drain(sock, out_path):
    """Reads until EOF; returns (bytes, how it ended)."""
    total, ending = 0, "eof"
    with open(out_path, "wb") as out:
        while True:
            try:
                data = sock.recv(1 << 20)
            except ConnectionResetError:
                ending = "reset"
                break
            if not data:
                break
            out.write(data)
            total += len(data)
    return total, ending


def wait_for_header(sock, timeout):
    """Waits until the pcap global header is readable, without consuming it."""
    sock.settimeout(timeout)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(sock.recv(24, socket.MSG_PEEK)) >= 24:
            sock.settimeout(None)
            return True
        time.sleep(0.05)
    return False


def run_consume(args):
    host, _, port = args.connect.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    if not wait_for_header(sock, 10):
        print("consume: no pcap header within 10 s", file=sys.stderr)
        return False
    touch(args.ready, str(sock.getsockname()[1]))
    total, ending = drain(sock, args.out)
    print("consume: %d bytes, ended by %s" % (total, ending))
    return True


def run_stall(args):
    host, _, port = args.connect.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small buffer set before connect, so the window the recorder sees stays small too.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    if not wait_for_header(sock, 10):
        print("stall: no pcap header within 10 s", file=sys.stderr)
        return False
    touch(args.ready, str(sock.getsockname()[1]))
    while not os.path.exists(args.go):
        time.sleep(0.1)
    total, ending = drain(sock, args.out)
    with open(args.report, "w") as f:
        json.dump({"bytes": total, "ending": ending, "port": sock.getsockname()[1]}, f)
    print("stall: %d bytes once it started reading, ended by %s" % (total, ending))
    return True


def run_listen(args):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen(1)
    touch(args.ready, str(server.getsockname()[1]))
    server.settimeout(args.timeout)
    sock, peer = server.accept()
    sock.settimeout(None)
    if not wait_for_header(sock, 10):
        print("listen: no pcap header within 10 s from %s" % (peer,), file=sys.stderr)
        return False
    touch(args.connected, "%s:%d" % peer)
    total, ending = drain(sock, args.out)
    print("listen: %d bytes from %s:%d, ended by %s" % (total, peer[0], peer[1], ending))
    return True


def run_same_packets(args):
    failures = Failures()
    first = read_pcap_records(args.first, failures)
    second = read_pcap_records(args.second, failures)
    if not failures.items and first[1] != second[1]:
        failures.add("%s (%d packets) and %s (%d packets) hold different packet records"
                     % (args.first, first[0], args.second, second[0]))
    if not failures.items:
        print("same-packets: %d packets, records sha256 %s" % (first[0], first[1][:16]))
    return failures.report()


def run_garbage(args):
    """Sends random bytes to a socket (the RPC or PCAP-over-IP port) and closes it."""
    import random
    if args.connect.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(args.connect[5:])
    else:
        host, _, port = args.connect.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
    sock.settimeout(10)
    try:
        sock.sendall(random.Random(args.seed).randbytes(args.bytes))
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
        print("garbage: the peer closed the connection")
    except socket.timeout:
        print("garbage: the connection is still open after 10 s")
    except OSError as e:
        print("garbage: the peer ended the connection: %s" % e)
    sock.close()
    return True


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_selftest(args):
    import recorder_selftest
    return recorder_selftest.run_selftest(args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check")
    p.add_argument("--manifest", action="append", required=True)
    p.add_argument("pcap", nargs="+")
    p = sub.add_parser("consume")
    p.add_argument("--connect", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ready", required=True)
    p = sub.add_parser("stall")
    p.add_argument("--connect", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--go", required=True)
    p.add_argument("--report", required=True)
    p = sub.add_parser("listen")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--connected", required=True)
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("same-packets")
    p.add_argument("first")
    p.add_argument("second")
    p = sub.add_parser("garbage")
    p.add_argument("--connect", required=True)
    p.add_argument("--bytes", type=int, default=65536)
    p.add_argument("--seed", type=int, default=1)
    sub.add_parser("free-port")
    sub.add_parser("selftest")
    args = parser.parse_args()
    if args.command == "free-port":
        print(free_port())
        return 0
    run = {"check": run_check, "consume": run_consume, "stall": run_stall, "listen": run_listen,
           "same-packets": run_same_packets, "garbage": run_garbage,
           "selftest": run_selftest}[args.command]
    return 0 if run(args) else 1


if __name__ == "__main__":
    sys.exit(main())
