#!/usr/bin/env python3
"""Send UDP frames with good and with bad checksums on a host interface (AF_PACKET; root).

    send-csum-frames.py IFACE DST_MAC GOOD BAD_UDP BAD_IP ZERO

For the ixgbevf guest test (scripts/qemu/guest-test.sh, scenarios/ixgbevf.sh): the model
server reads IFACE's peer with --af-packet, so every frame sent here enters the model's wire
side and, addressed to DST_MAC (the VF's MAC, which the guest printed), lands in the VF's RX
ring with the checksum status the model computes (docs/model.md, "RX checksum offload").

All frames are UDP from 10.0.0.1 to 10.0.0.2 port 9, 64 bytes without FCS, sent in this order:
  GOOD     correct IPv4 header and UDP checksums;
  BAD_UDP  correct IPv4 header checksum, UDP checksum off by one bit pattern (never 0);
  BAD_IP   IPv4 header checksum wrong, UDP checksum correct;
  ZERO     UDP checksum 0 ("no checksum", legal over IPv4), IPv4 header correct.
Bursts of 32 with a 2 ms pause, as send-frames.py. Prints "sent N" and exits 0.
"""
import socket
import struct
import sys
import time

SRC_MAC = bytes.fromhex("020000fd0002")  # locally administered, unicast
SRC_IP = socket.inet_aton("10.0.0.1")
DST_IP = socket.inet_aton("10.0.0.2")
PORT = 9
LEN = 64


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(dst_mac, kind, i):
    payload = b"fg-csum %-7s %5d " % (kind.encode(), i)
    payload += b"\0" * (LEN - 14 - 20 - 8 - len(payload))
    udp_len = 8 + len(payload)
    pseudo = SRC_IP + DST_IP + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", 40000 + i % 1000, PORT, udp_len, 0) + payload
    uc = csum(pseudo + udp) or 0xFFFF
    if kind == "bad_udp":
        uc ^= 0x0101  # still non-zero: a wrong checksum, not "none"
    elif kind == "zero":
        uc = 0
    udp = udp[:6] + struct.pack("!H", uc) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, i & 0xFFFF, 0, 64, 17, 0, SRC_IP, DST_IP)
    ic = csum(ip)
    if kind == "bad_ip":
        ic ^= 0x0101
    ip = ip[:10] + struct.pack("!H", ic) + ip[12:]
    return dst_mac + SRC_MAC + b"\x08\x00" + ip + udp


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    ifc, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
    counts = [int(x) for x in sys.argv[3:7]]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifc, 0))
    sent = 0
    for kind, n in zip(("good", "bad_udp", "bad_ip", "zero"), counts):
        for i in range(n):
            s.send(frame(mac, kind, i))
            sent += 1
            if sent % 32 == 0:
                time.sleep(0.002)
        time.sleep(0.05)
    print("sent %d" % sent)


if __name__ == "__main__":
    main()
