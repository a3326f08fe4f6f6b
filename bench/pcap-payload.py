#!/usr/bin/env python3
"""Sums the TCP payload bytes in a classic pcap file, per direction and per time window.

    pcap-payload.py FILE SERVER_PORT [NAME=START_EPOCH_SECONDS ...]

Direction comes from SERVER_PORT: packets to it are client->server, packets from it are
server->client. Each packet is counted in the last window whose START is not after the
packet's timestamp (packets before the first window go to "before"), so one recording made
across several benchmark phases can be checked phase by phase. Prints one line per window and
a total: "NAME c2s=BYTES s2c=BYTES packets=N".

The payload length comes from the IP header (total length minus IP and TCP headers), not from
the capture length, so Ethernet padding is never counted. Reading the headers with
struct.unpack_from over an mmap keeps it at a few seconds for a few GB; tshark would take
minutes. Exit status 1 if the file is not a pcap this reader knows, or is truncated.
"""
import bisect
import mmap
import struct
import sys

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100
IPPROTO_TCP = 6


def parse_windows(arguments):
    names, starts = ["before"], [float("-inf")]
    for argument in arguments:
        name, _, start = argument.partition("=")
        names.append(name)
        starts.append(float(start))
    if starts != sorted(starts):
        sys.exit("pcap-payload: windows must be given in time order")
    return names, starts


def read_global_header(data):
    if len(data) < 24:
        raise ValueError("shorter than a pcap global header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("not a classic pcap file (magic %s)" % magic.hex())
    nanoseconds = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW):
        raise ValueError("link type %d is neither Ethernet nor raw IP" % linktype)
    return endian, (1e-9 if nanoseconds else 1e-6), linktype


def tcp_segment(data, offset, linktype):
    """(payload length, source port, destination port) of the TCP segment in the packet at
    offset, or None for anything else."""
    if linktype == LINKTYPE_ETHERNET:
        ethertype = struct.unpack_from("!H", data, offset + 12)[0]
        offset += 14
        if ethertype == ETHERTYPE_VLAN:
            ethertype = struct.unpack_from("!H", data, offset + 2)[0]
            offset += 4
    else:
        ethertype = ETHERTYPE_IPV4 if data[offset] >> 4 == 4 else ETHERTYPE_IPV6
    if ethertype == ETHERTYPE_IPV4:
        version_ihl, total_length, protocol = (data[offset], struct.unpack_from(
            "!H", data, offset + 2)[0], data[offset + 9])
        if protocol != IPPROTO_TCP:
            return None
        ip_header = (version_ihl & 0x0F) * 4
        ip_payload = total_length - ip_header
        offset += ip_header
    elif ethertype == ETHERTYPE_IPV6:
        ip_payload, next_header = struct.unpack_from("!HB", data, offset + 4)
        if next_header != IPPROTO_TCP:  # the front writes no extension headers
            return None
        offset += 40
    else:
        return None
    source, destination = struct.unpack_from("!HH", data, offset)
    tcp_header = (data[offset + 12] >> 4) * 4
    return ip_payload - tcp_header, source, destination


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, server_port = sys.argv[1], int(sys.argv[2])
    names, starts = parse_windows(sys.argv[3:])
    c2s = [0] * len(names)
    s2c = [0] * len(names)
    packets = [0] * len(names)
    with open(path, "rb") as handle:
        try:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            sys.exit("pcap-payload: %s is empty" % path)
        try:
            endian, tick, linktype = read_global_header(data)
        except ValueError as error:
            sys.exit("pcap-payload: %s: %s" % (path, error))
        record = struct.Struct(endian + "IIII")
        offset, size, truncated = 24, len(data), False
        while offset < size:
            if offset + 16 > size:
                truncated = True
                break
            seconds, fraction, captured, _ = record.unpack_from(data, offset)
            offset += 16
            if offset + captured > size:
                truncated = True
                break
            segment = tcp_segment(data, offset, linktype)
            offset += captured
            window = bisect.bisect_right(starts, seconds + fraction * tick) - 1
            packets[window] += 1
            if segment is None:
                continue
            length, source, destination = segment
            if destination == server_port:
                c2s[window] += length
            elif source == server_port:
                s2c[window] += length
        data.close()
    for index, name in enumerate(names):
        print("%s c2s=%d s2c=%d packets=%d" % (name, c2s[index], s2c[index], packets[index]))
    print("total c2s=%d s2c=%d packets=%d" % (sum(c2s), sum(s2c), sum(packets)))
    if truncated:
        sys.exit("pcap-payload: %s ends inside a packet record (truncated)" % path)


if __name__ == "__main__":
    main()
