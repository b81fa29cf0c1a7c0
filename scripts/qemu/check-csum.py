#!/usr/bin/env python3
"""Check every checksum of the IPv4 frames in a pcap file (the model server's
--pcap-out capture of what left on the wire).

    check-csum.py FILE [--src-net PREFIX]

For each Ethernet/IPv4 frame (optionally only those whose dotted source
address starts with PREFIX, e.g. "10.0.") it verifies the
IPv4 header checksum and the TCP, UDP or ICMP checksum. A UDP checksum of 0
means "none" and is accepted. It prints one summary line,

    checksums: N frames (tcp T, udp U, icmp I), B bad

then one line per bad frame, and exits 1 if any checksum is wrong (2 on a
file it cannot read). Used by guest-test.sh: ixgbevf leaves the L4 checksum
of UDP and TCP to the device (TX checksum offload), so a model that does not
insert it puts frames with bad checksums on the wire.
"""
import struct
import sys


def fold(total):
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_sum(data):
    if len(data) % 2:
        data += b"\0"
    return fold(sum(struct.unpack("!%dH" % (len(data) // 2), data)))


def frames(path):
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            raise ValueError("short pcap header")
        magic = struct.unpack("<I", head[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            endian = "<"
        elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
            endian = ">"
        else:
            raise ValueError("not a pcap file (magic %#x)" % magic)
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            _, _, incl, _ = struct.unpack(endian + "IIII", rec)
            data = f.read(incl)
            if len(data) < incl:
                return
            yield data


def check(frame):
    """Returns (protocol name, problem or None) for an IPv4 frame, else None."""
    off = 12
    ethertype = struct.unpack("!H", frame[off:off + 2])[0]
    while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 6:
        off += 4
        ethertype = struct.unpack("!H", frame[off:off + 2])[0]
    if ethertype != 0x0800:
        return None
    ip = frame[off + 2:]
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return ("ipv4", "truncated IPv4 header")
    ihl = (ip[0] & 15) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    if ihl < 20 or total < ihl or len(ip) < total:
        return ("ipv4", "bad IPv4 lengths (ihl %d, total %d, have %d)" % (ihl, total, len(ip)))
    if ones_sum(ip[:ihl]) != 0xFFFF:
        return ("ipv4", "bad IPv4 header checksum %#06x" % struct.unpack("!H", ip[10:12]))
    proto = ip[9]
    frag = struct.unpack("!H", ip[6:8])[0]
    l4 = ip[ihl:total]
    name = {1: "icmp", 6: "tcp", 17: "udp"}.get(proto)
    if name is None or frag & 0x3FFF:
        return ("other", None)
    if proto == 1:
        ok = ones_sum(l4) == 0xFFFF
    else:
        if proto == 17 and len(l4) >= 8 and l4[6:8] == b"\0\0":
            return (name, None)
        pseudo = ip[12:20] + struct.pack("!BBH", 0, proto, len(l4))
        ok = fold(ones_sum(pseudo) + ones_sum(l4)) == 0xFFFF
    if ok:
        return (name, None)
    at = {1: 2, 6: 16, 17: 6}[proto]
    field = struct.unpack("!H", l4[at:at + 2])[0] if len(l4) >= at + 2 else -1
    return (name, "bad %s checksum %#06x (%s -> %s, %d bytes)" % (
        name.upper(), field, ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20])), len(l4)))


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    path, src = args[0], None
    if len(args) == 3 and args[1] == "--src-net":
        src = args[2]
    elif len(args) != 1:
        print("usage: check-csum.py FILE [--src-net PREFIX]")
        return 2
    counts = {"tcp": 0, "udp": 0, "icmp": 0}
    n, bad = 0, []
    try:
        for fr in frames(path):
            if src is not None and (len(fr) < 34 or not ".".join(map(str, fr[26:30])).startswith(src)):
                continue
            r = check(fr)
            if r is None:
                continue
            n += 1
            if r[0] in counts:
                counts[r[0]] += 1
            if r[1]:
                bad.append(r[1])
    except (OSError, ValueError) as e:
        print("checksums: cannot read %s: %s" % (path, e))
        return 2
    print("checksums: %d frames (tcp %d, udp %d, icmp %d), %d bad" % (
        n, counts["tcp"], counts["udp"], counts["icmp"], len(bad)))
    for b in bad[:10]:
        print("  " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
