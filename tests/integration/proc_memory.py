#!/usr/bin/env python3
"""Searches a running process's memory for byte strings (/proc/PID/maps + /proc/PID/mem).

  proc_memory.py PID HEX [HEX...]   prints "found" if any of the strings is in a readable
                                    mapping of PID (up to 1 GiB each), "absent" otherwise, and
                                    the number of bytes scanned; needs the right to ptrace PID
                                    (root).
"""
import re
import sys

MAX_MAPPING = 1 << 30


def scan(pid, needles):
    scanned = 0
    overlap = max(len(n) for n in needles) - 1
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            match = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            start, end, perms = int(match[1], 16), int(match[2], 16), match[3]
            if perms[0] != "r" or "[vvar" in line or "[vsyscall]" in line:
                continue
            # Terabytes of reserved address space (AddressSanitizer's shadow in test builds)
            # hold no key; reading them would take hours.
            if end - start > MAX_MAPPING:
                continue
            tail = b""
            for offset in range(start, end, 1 << 20):
                try:
                    mem.seek(offset)
                    chunk = mem.read(min(1 << 20, end - offset))
                except (OSError, ValueError):
                    break
                scanned += len(chunk)
                window = tail + chunk
                if any(needle in window for needle in needles):
                    return True, scanned
                tail = window[-overlap:] if overlap else b""
    return False, scanned


def main():
    pid = int(sys.argv[1])
    needles = [bytes.fromhex(h) for h in sys.argv[2:]]
    found, scanned = scan(pid, needles)
    print("found" if found else "absent", scanned)


if __name__ == "__main__":
    main()
