//! RX checksum offload: the status and error bits an 82599/X540 writes back for a received frame
//! (facts §6.1: status UDPCS bit 4, L4CS bit 5, IPCS bit 6; errors TCPE bit 30, IPE bit 31).
//!
//! What the model reports, per frame (after at most one 802.1Q tag, as the packet type):
//! - IPv4 with a well-formed header (version 4, IHL ≥ 5, header present): IPCS, plus IPE when the
//!   header checksum does not verify.
//! - TCP or UDP in an unfragmented IPv4 datagram, or in IPv6 (hop-by-hop and destination options
//!   headers skipped): L4CS (and UDPCS for UDP), plus TCPE when the sum over the pseudo-header and
//!   the segment does not verify. The segment is what the IP length fields say, not the frame
//!   (Ethernet padding is not summed).
//! - UDP over IPv4 with checksum 0 means "no checksum" (RFC 768). The X540 reports L4CS|UDPCS and
//!   no error. The 82599 also sets TCPE: "82599 Specification Update, erratum 44, Integrity Error
//!   Reported for IPv4/UDP Packets With Zero Checksum" (cited by DPDK's
//!   `doc/guides/nics/ixgbe.rst`; facts §5.4 note). Linux's `ixgbe` and DPDK's `ixgbe` PMD work
//!   around it only for the 82599 (`__IXGBE_RX_CSUM_UDP_ZERO_ERR`, `rx_udp_csum_zero_err`, set
//!   when `mac.type == ixgbe_mac_82599EB`); upstream `ixgbevf` does not, and counts it in
//!   `rx_csum_offload_errors`. UDP over IPv6 with checksum 0 is checked like any other checksum
//!   (RFC 8200 forbids it), so it fails.
//! - Not checked (no L4CS): fragments, a segment shorter than its header or cut short by the
//!   frame, a UDP length outside 8..=IP payload, an IPv6 routing or fragment header, SCTP, and
//!   anything that is not IPv4/IPv6. Nothing is reported for non-IP frames.
//!
//! The cost is one pass over the IP header and the L4 segment, 8 bytes per step.
//!
//! ```
//! use floodgate_sim::rxcsum::{fix_checksums, status_bits};
//! use floodgate_sim::NicModel;
//! let mut f = vec![0u8; 60];
//! f[12] = 0x08; // IPv4
//! f[14] = 0x45;
//! f[16..18].copy_from_slice(&46u16.to_be_bytes()); // IP total length
//! f[22] = 64; // TTL
//! f[23] = 17; // UDP
//! f[26..34].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
//! f[34..36].copy_from_slice(&1234u16.to_be_bytes());
//! f[36..38].copy_from_slice(&53u16.to_be_bytes());
//! f[38..40].copy_from_slice(&26u16.to_be_bytes()); // UDP length
//! assert!(fix_checksums(&mut f));
//! const IPCS: u32 = 1 << 6;
//! const L4CS: u32 = 1 << 5;
//! const UDPCS: u32 = 1 << 4;
//! assert_eq!(status_bits(&f, NicModel::X540), IPCS | L4CS | UDPCS);
//! f[50] ^= 1; // corrupt the payload: TCPE (bit 30)
//! assert_eq!(status_bits(&f, NicModel::X540), IPCS | L4CS | UDPCS | 1 << 30);
//! ```

use crate::config::NicModel;
use crate::csum::{fold, sum};
use crate::regs::{RXD_ERR_IPE, RXD_ERR_TCPE, RXD_STAT_IPCS, RXD_STAT_L4CS, RXD_STAT_UDPCS};

const ETH_VLAN: u16 = 0x8100;
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const TCP: u8 = 6;
const UDP: u8 = 17;

#[inline(always)]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Where the L3 header starts and its EtherType (after at most one 802.1Q tag, as the packet type
/// in `rx.rs`).
#[inline]
fn l3_start(frame: &[u8]) -> Option<(u16, usize)> {
    match be16(frame, 12)? {
        ETH_VLAN => Some((be16(frame, 16)?, 18)),
        et => Some((et, 14)),
    }
}

/// The checksum status and error bits the RX write-back of `frame` carries on `model` (facts
/// §6.1; see the module docs for every case).
pub fn status_bits(frame: &[u8], model: NicModel) -> u32 {
    match l3_start(frame) {
        Some((ETH_IPV4, l3)) => ipv4(frame, l3, model == NicModel::X82599),
        Some((ETH_IPV6, l3)) => ipv6(frame, l3),
        _ => 0,
    }
}

fn ipv4(f: &[u8], l3: usize, udp_zero_flagged: bool) -> u32 {
    let Some(&vihl) = f.get(l3) else { return 0 };
    let ihl = usize::from(vihl & 0x0F) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return 0;
    }
    let Some(hdr) = f.get(l3..l3 + ihl) else {
        return 0;
    };
    let mut bits = RXD_STAT_IPCS;
    if fold(sum(hdr, 0)) != 0xFFFF {
        bits |= RXD_ERR_IPE;
    }
    let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let fragment = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3FFF != 0; // MF or an offset
    if fragment || total < ihl {
        return bits;
    }
    let Some(l4) = f.get(l3 + ihl..l3 + total) else {
        return bits;
    };
    let proto = hdr[9];
    // Pseudo-header: source and destination address, protocol (the length is added per L4).
    let pseudo = sum(&hdr[12..20], u64::from(proto));
    let udp_zero = if udp_zero_flagged {
        UdpZero::Flagged
    } else {
        UdpZero::NoChecksum
    };
    bits | l4_bits(l4, proto, pseudo, udp_zero)
}

fn ipv6(f: &[u8], l3: usize) -> u32 {
    let Some(h) = f.get(l3..l3 + 40) else {
        return 0;
    };
    if h[0] >> 4 != 6 {
        return 0;
    }
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let Some(payload) = f.get(l3 + 40..l3 + 40 + plen) else {
        return 0;
    };
    let mut nh = h[6];
    let mut at = 0usize;
    for _ in 0..8 {
        match nh {
            // Hop-by-hop and destination options: skipped.
            0 | 60 => {
                let (Some(&next), Some(&len8)) = (payload.get(at), payload.get(at + 1)) else {
                    return 0;
                };
                nh = next;
                at += (usize::from(len8) + 1) * 8;
            }
            // Routing (the pseudo-header would need the final destination) and fragments: the
            // model does not check.
            43 | 44 => return 0,
            _ => break,
        }
    }
    let Some(seg) = payload.get(at..) else {
        return 0;
    };
    let pseudo = sum(&h[8..40], u64::from(nh));
    l4_bits(seg, nh, pseudo, UdpZero::Checked)
}

/// What a UDP checksum of 0 means for this datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UdpZero {
    /// IPv4 on X540: no checksum, no error.
    NoChecksum,
    /// IPv4 on 82599: no checksum, but TCPE is set anyway (erratum 44).
    Flagged,
    /// IPv6: a checksum like any other.
    Checked,
}

/// L4CS/UDPCS/TCPE for the segment `seg` of protocol `proto`; `pseudo` holds the pseudo-header's
/// addresses and protocol.
fn l4_bits(seg: &[u8], proto: u8, pseudo: u64, udp_zero: UdpZero) -> u32 {
    let (seg, bits) = match proto {
        TCP if seg.len() >= 20 => (seg, RXD_STAT_L4CS),
        UDP if seg.len() >= 8 => {
            let ulen = usize::from(u16::from_be_bytes([seg[4], seg[5]]));
            if ulen < 8 || ulen > seg.len() {
                return 0;
            }
            let bits = RXD_STAT_L4CS | RXD_STAT_UDPCS;
            if seg[6] == 0 && seg[7] == 0 {
                match udp_zero {
                    UdpZero::NoChecksum => return bits,
                    UdpZero::Flagged => return bits | RXD_ERR_TCPE,
                    UdpZero::Checked => {}
                }
            }
            (&seg[..ulen], bits)
        }
        _ => return 0,
    };
    if fold(sum(seg, pseudo + seg.len() as u64)) == 0xFFFF {
        bits
    } else {
        bits | RXD_ERR_TCPE
    }
}

/// Writes correct checksums into `frame` (at most one 802.1Q tag): the IPv4 header checksum, and
/// the TCP or UDP checksum of an unfragmented IPv4 datagram or an IPv6 packet without extension
/// headers (a UDP checksum that sums to 0 is sent as 0xFFFF). Returns false, changing nothing,
/// when the frame is not such a packet or its lengths do not fit. Meant for test fixtures.
pub fn fix_checksums(frame: &mut [u8]) -> bool {
    let Some((et, l3)) = l3_start(frame) else {
        return false;
    };
    let (l4_at, l4_end, proto, pseudo) = match et {
        ETH_IPV4 => {
            let Some(&vihl) = frame.get(l3) else {
                return false;
            };
            let ihl = usize::from(vihl & 0x0F) * 4;
            let Some(total) = be16(frame, l3 + 2).map(usize::from) else {
                return false;
            };
            if vihl >> 4 != 4 || ihl < 20 || total < ihl || frame.len() < l3 + total {
                return false;
            }
            frame[l3 + 10] = 0;
            frame[l3 + 11] = 0;
            let c = !fold(sum(&frame[l3..l3 + ihl], 0));
            frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            if be16(frame, l3 + 6).unwrap_or(0) & 0x3FFF != 0 {
                return true;
            }
            let proto = frame[l3 + 9];
            let pseudo = sum(&frame[l3 + 12..l3 + 20], u64::from(proto));
            (l3 + ihl, l3 + total, proto, pseudo)
        }
        ETH_IPV6 => {
            let Some(plen) = be16(frame, l3 + 4).map(usize::from) else {
                return false;
            };
            if frame.len() < l3 + 40 + plen {
                return false;
            }
            let proto = frame[l3 + 6];
            let pseudo = sum(&frame[l3 + 8..l3 + 40], u64::from(proto));
            (l3 + 40, l3 + 40 + plen, proto, pseudo)
        }
        _ => return false,
    };
    let (at, len) = match proto {
        TCP if l4_end - l4_at >= 20 => (l4_at + 16, l4_end - l4_at),
        UDP if l4_end - l4_at >= 8 => {
            let ulen = usize::from(u16::from_be_bytes([frame[l4_at + 4], frame[l4_at + 5]]));
            if ulen < 8 || ulen > l4_end - l4_at {
                return et == ETH_IPV4;
            }
            (l4_at + 6, ulen)
        }
        _ => return et == ETH_IPV4,
    };
    frame[at] = 0;
    frame[at + 1] = 0;
    let mut c = !fold(sum(&frame[l4_at..l4_at + len], pseudo + len as u64));
    if c == 0 && proto == UDP {
        c = 0xFFFF;
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-serial reference: 16-bit words, folded at every step.
    fn ref_sum(parts: &[&[u8]]) -> u16 {
        let mut all = Vec::new();
        for p in parts {
            all.extend_from_slice(p);
        }
        if all.len() % 2 == 1 {
            all.push(0);
        }
        let mut s: u32 = 0;
        for w in all.chunks(2) {
            s += u32::from(u16::from_be_bytes([w[0], w[1]]));
            s = (s & 0xFFFF) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn wide_sum_matches_the_word_by_word_sum() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..200usize {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(fold(sum(&b, 0)), ref_sum(&[&b]), "len {len}");
        }
    }

    fn udp4(vlan: bool, payload: &[u8]) -> Vec<u8> {
        let l3 = if vlan { 18 } else { 14 };
        let mut f = vec![0u8; (l3 + 28 + payload.len()).max(60)];
        if vlan {
            f[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        f[l3 - 2..l3].copy_from_slice(&ETH_IPV4.to_be_bytes());
        f[l3] = 0x45;
        f[l3 + 2..l3 + 4].copy_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
        f[l3 + 8] = 64;
        f[l3 + 9] = UDP;
        f[l3 + 12..l3 + 20].copy_from_slice(&[192, 0, 2, 1, 198, 51, 100, 7]);
        f[l3 + 20..l3 + 22].copy_from_slice(&5353u16.to_be_bytes());
        f[l3 + 22..l3 + 24].copy_from_slice(&53u16.to_be_bytes());
        f[l3 + 24..l3 + 26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f[l3 + 28..l3 + 28 + payload.len()].copy_from_slice(payload);
        // Independent of fix_checksums: the reference sum.
        let c = !ref_sum(&[&f[l3..l3 + 20]]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        let ulen = (8 + payload.len()) as u16;
        let c = !ref_sum(&[
            &f[l3 + 12..l3 + 20],
            &[0, UDP],
            &ulen.to_be_bytes(),
            &f[l3 + 20..l3 + 28 + payload.len()],
        ]);
        f[l3 + 26..l3 + 28].copy_from_slice(&(if c == 0 { 0xFFFF } else { c }).to_be_bytes());
        f
    }

    const GOOD_UDP: u32 = RXD_STAT_IPCS | RXD_STAT_L4CS | RXD_STAT_UDPCS;

    #[test]
    fn ipv4_udp_good_bad_header_bad_payload_with_and_without_vlan() {
        for vlan in [false, true] {
            let l3 = if vlan { 18 } else { 14 };
            let f = udp4(vlan, b"hello, odd payload");
            for m in [NicModel::X82599, NicModel::X540] {
                assert_eq!(status_bits(&f, m), GOOD_UDP);
            }
            let mut g = f.clone();
            g[l3 + 8] = 63; // TTL changed, header checksum not updated
            assert_eq!(status_bits(&g, NicModel::X540), GOOD_UDP | RXD_ERR_IPE);
            let mut g = f.clone();
            g[l3 + 30] ^= 0x40;
            assert_eq!(status_bits(&g, NicModel::X540), GOOD_UDP | RXD_ERR_TCPE);
            let mut g = udp4(vlan, b"hi");
            let n = g.len();
            assert!(n > l3 + 30);
            g[n - 1] ^= 0xFF; // Ethernet padding is not part of the datagram
            assert_eq!(status_bits(&g, NicModel::X540), GOOD_UDP);
        }
    }

    #[test]
    fn udp_checksum_zero_per_model() {
        let mut f = udp4(false, b"no checksum");
        f[40] = 0;
        f[41] = 0;
        assert_eq!(status_bits(&f, NicModel::X540), GOOD_UDP);
        assert_eq!(status_bits(&f, NicModel::X82599), GOOD_UDP | RXD_ERR_TCPE);
    }

    #[test]
    fn fragments_non_ip_and_short_segments_are_not_checked() {
        let mut f = udp4(false, b"x");
        f[20] = 0x20; // MF
        let c = !ref_sum(&[&{
            let mut h = f[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        }]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(status_bits(&f, NicModel::X540), RXD_STAT_IPCS);
        let mut arp = udp4(false, b"x");
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(status_bits(&arp, NicModel::X540), 0);
        let mut short = udp4(false, b"x");
        short.truncate(40); // UDP length says 9 bytes, 6 are there
        assert_eq!(status_bits(&short, NicModel::X540), RXD_STAT_IPCS);
    }

    #[test]
    fn fix_checksums_agrees_with_the_check_for_tcp_udp_ipv4_ipv6() {
        let mut f = udp4(true, b"abc");
        let l3 = 18;
        f[l3 + 10] ^= 0x55;
        f[l3 + 26] ^= 0x55;
        assert!(fix_checksums(&mut f));
        assert_eq!(f, udp4(true, b"abc"));
        // IPv6/TCP, no extension headers.
        let mut t = vec![0u8; 14 + 40 + 20 + 5];
        t[12..14].copy_from_slice(&ETH_IPV6.to_be_bytes());
        t[14] = 0x60;
        t[18..20].copy_from_slice(&25u16.to_be_bytes());
        t[20] = TCP;
        t[21] = 64;
        t[22] = 0x20;
        t[38] = 0x20;
        t[53] = 1;
        t[69] = 2;
        t[54 + 12] = 0x50;
        t[74..79].copy_from_slice(b"hello");
        assert!(fix_checksums(&mut t));
        assert_eq!(status_bits(&t, NicModel::X82599), RXD_STAT_L4CS);
        t[78] ^= 1;
        assert_eq!(
            status_bits(&t, NicModel::X82599),
            RXD_STAT_L4CS | RXD_ERR_TCPE
        );
        // IPv6/UDP with checksum 0 is checked (and fails).
        let mut u = vec![0u8; 14 + 40 + 8 + 4];
        u[12..14].copy_from_slice(&ETH_IPV6.to_be_bytes());
        u[14] = 0x60;
        u[18..20].copy_from_slice(&12u16.to_be_bytes());
        u[20] = UDP;
        u[58..60].copy_from_slice(&12u16.to_be_bytes());
        u[62..66].copy_from_slice(b"data");
        assert!(fix_checksums(&mut u));
        assert_eq!(
            status_bits(&u, NicModel::X540),
            RXD_STAT_L4CS | RXD_STAT_UDPCS
        );
        u[60] = 0;
        u[61] = 0;
        assert_eq!(
            status_bits(&u, NicModel::X540),
            RXD_STAT_L4CS | RXD_STAT_UDPCS | RXD_ERR_TCPE
        );
    }
}
