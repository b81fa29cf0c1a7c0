#!/usr/bin/env python3
"""Send a counted DNS mix on a host interface (AF_PACKET; needs root).

    send-frames.py IFACE DST_MAC FLOOD FLOOD_LEN LEGIT LEGIT_LEN

For the daemon guest test (scripts/qemu/guest-test.sh): the model server reads IFACE's peer
with --af-packet, so every frame sent here enters the model's wire side and, addressed to
DST_MAC (the VF's MAC, which the guest printed), lands in the VF's RX ring.

  FLOOD frames of FLOOD_LEN bytes: UDP to 10.0.0.2:53 from 198.18.0.0/15 sources (unknown
        clients, the daemon's "dns-flood" rule drops them);
  LEGIT frames of LEGIT_LEN bytes: UDP to 10.0.0.2:53 from the four known clients of
        examples/demo.toml (192.0.2.10, 192.0.2.11, 198.51.100.7, 203.0.113.53; passed).

The two kinds are interleaved evenly. Frames go out in bursts of 32 with a 2 ms pause, so the
model's AF_PACKET socket never holds more than a few bursts (its receive buffer would drop the
excess silently). Lengths exclude the FCS. Prints "sent N" and exits 0.
"""
import socket
import struct
import sys
import time

KNOWN = ["192.0.2.10", "192.0.2.11", "198.51.100.7", "203.0.113.53"]
SRC_MAC = bytes.fromhex("020000fd0001")  # locally administered, unicast
DST_IP = socket.inet_aton("10.0.0.2")


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def dns_query(qid):
    # One A query for example.com (RD set): a plausible payload, padded below.
    q = b"".join(bytes([len(p)]) + p for p in (b"example", b"com")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


def frame(dst_mac, src_ip, sport, length, qid):
    payload = dns_query(qid)
    hdrs = 14 + 20 + 8
    if length < hdrs + len(payload):
        payload = payload[: max(0, length - hdrs)]
    payload += b"\0" * (length - hdrs - len(payload))
    udp_len = 8 + len(payload)
    src = socket.inet_aton(src_ip)
    pseudo = src + DST_IP + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, 53, udp_len, 0) + payload
    uc = csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", uc) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, qid & 0xFFFF, 0, 64, 17, 0, src, DST_IP)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dst_mac + SRC_MAC + b"\x08\x00" + ip + udp


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    ifname, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
    flood, flen, legit, llen = (int(a) for a in sys.argv[3:])
    if len(mac) != 6 or min(flen, llen) < 60 or max(flen, llen) > 1514:
        sys.exit("send-frames: bad MAC or a length outside 60..1514")
    frames = []
    total = flood + legit
    li = 0
    for i in range(total):
        # Legit frame number k goes at position about k * total / legit: evenly spread.
        if li < legit and i * legit >= li * total:
            frames.append(frame(mac, KNOWN[li % len(KNOWN)], 20000 + li, llen, i))
            li += 1
        else:
            n = i - li
            src = "198.%d.%d.%d" % (18 + (n >> 16 & 1), n >> 8 & 0xFF, n & 0xFF or 1)
            frames.append(frame(mac, src, 1024 + n % 60000, flen, i))
    assert li == legit and len(frames) == total
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    for i in range(0, total, 32):
        for f in frames[i : i + 32]:
            s.send(f)
        time.sleep(0.002)
    print("sent %d" % total)


if __name__ == "__main__":
    main()
