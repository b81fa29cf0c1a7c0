//! Bounds-checked frame parser: the fields the switch, flow director and RSS need.
//!
//! [`FrameInfo::parse`] reads Ethernet II, one 802.1Q tag, IPv4 (with options), IPv6 (skipping
//! the common extension headers), and the TCP/UDP/SCTP ports. It never panics and never
//! allocates: every read goes through a length check, and a layer that is cut short is simply
//! reported as absent (the hardware parser does the same: a truncated TCP header does not get an
//! IPv4/TCP RSS hash).
//!
//! The packet-type bits returned by [`FrameInfo::packet_type`] are the RX write-back dword 0
//! values of facts §6.1.
//!
//! ```
//! use floodgate_sim::frame::{FrameInfo, L3, L4};
//! let mut f = [0u8; 42];
//! f[12] = 0x08; // EtherType IPv4
//! f[14] = 0x45; // version 4, IHL 5
//! f[16..18].copy_from_slice(&28u16.to_be_bytes()); // total length
//! f[23] = 17; // UDP
//! f[26..30].copy_from_slice(&[10, 0, 0, 1]);
//! f[30..34].copy_from_slice(&[10, 0, 0, 2]);
//! f[34..36].copy_from_slice(&5353u16.to_be_bytes());
//! f[36..38].copy_from_slice(&53u16.to_be_bytes());
//! let info = FrameInfo::parse(&f).unwrap();
//! assert!(matches!(info.l3, L3::Ipv4 { proto: 17, .. }));
//! assert_eq!(info.l4, L4::Udp { src: 5353, dst: 53 });
//! ```

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
/// EtherType of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of SCTP.
pub const IPPROTO_SCTP: u8 = 132;

/// Packet type bits of the RX write-back descriptor, dword 0 bits 16:4 (facts §6.1).
pub mod ptype {
    /// IPv4 header present.
    pub const IPV4: u16 = 0x10;
    /// IPv4 header with options.
    pub const IPV4_EX: u16 = 0x20;
    /// IPv6 header present.
    pub const IPV6: u16 = 0x40;
    /// IPv6 with extension headers.
    pub const IPV6_EX: u16 = 0x80;
    /// TCP header present.
    pub const TCP: u16 = 0x100;
    /// UDP header present.
    pub const UDP: u16 = 0x200;
    /// SCTP header present.
    pub const SCTP: u16 = 0x400;
}

/// Why a frame could not be parsed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than an Ethernet header (14 bytes, 18 with a VLAN tag).
    #[error("frame of {len} bytes is shorter than its Ethernet header ({need} bytes)")]
    TooShort {
        /// Frame length.
        len: usize,
        /// Bytes the Ethernet (+VLAN) header needs.
        need: usize,
    },
}

/// Layer-3 summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    /// Not IP (ARP, unknown EtherType) or an IP header that is cut short or malformed.
    None,
    /// IPv4.
    Ipv4 {
        /// Source address, network order.
        src: [u8; 4],
        /// Destination address, network order.
        dst: [u8; 4],
        /// Protocol field.
        proto: u8,
        /// Header has options (IHL > 5).
        options: bool,
        /// Fragment (MF set or offset != 0): no L4 header is parsed.
        fragment: bool,
    },
    /// IPv6.
    Ipv6 {
        /// Source address.
        src: [u8; 16],
        /// Destination address.
        dst: [u8; 16],
        /// Upper-layer protocol after the extension headers that were skipped.
        proto: u8,
        /// At least one extension header was present.
        ext: bool,
        /// A fragment header was present: no L4 header is parsed.
        fragment: bool,
    },
}

/// Layer-4 summary (ports in host order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// No parsed transport header.
    None,
    /// TCP ports.
    Tcp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// UDP ports.
    Udp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// SCTP ports.
    Sctp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
}

impl L4 {
    /// (source, destination) ports, if any.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match *self {
            L4::None => None,
            L4::Tcp { src, dst } | L4::Udp { src, dst } | L4::Sctp { src, dst } => Some((src, dst)),
        }
    }
}

/// What the switch knows about a frame after parsing. `Copy`, no heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// 802.1Q tag control information (PCP/DEI/VID) if the frame is tagged.
    pub vlan_tci: Option<u16>,
    /// EtherType after the VLAN tag (if any).
    pub ethertype: u16,
    /// The two bytes at frame offset 12 (flow-director flex bytes at offset 6 words, facts §4.4).
    pub flex_bytes: u16,
    /// Offset of the L3 header.
    pub l3_offset: usize,
    /// Layer 3.
    pub l3: L3,
    /// Offset of the L4 header (0 if none).
    pub l4_offset: usize,
    /// Layer 4.
    pub l4: L4,
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn arr<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    let s = b.get(off..off.checked_add(N)?)?;
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    Some(a)
}

impl FrameInfo {
    /// Parses `frame` (starting at the destination MAC, no preamble, FCS optional).
    ///
    /// Fails only when the Ethernet header itself is incomplete; deeper layers that are
    /// truncated or malformed come back as [`L3::None`] / [`L4::None`].
    pub fn parse(frame: &[u8]) -> Result<FrameInfo, FrameError> {
        let too_short = |need| FrameError::TooShort {
            len: frame.len(),
            need,
        };
        let dst_mac: [u8; 6] = arr(frame, 0).ok_or(too_short(14))?;
        let src_mac: [u8; 6] = arr(frame, 6).ok_or(too_short(14))?;
        let outer = be16(frame, 12).ok_or(too_short(14))?;
        let (vlan_tci, ethertype, l3_offset) = if outer == ETHERTYPE_VLAN {
            let tci = be16(frame, 14).ok_or(too_short(18))?;
            let et = be16(frame, 16).ok_or(too_short(18))?;
            (Some(tci), et, 18)
        } else {
            (None, outer, 14)
        };
        let mut info = FrameInfo {
            dst_mac,
            src_mac,
            vlan_tci,
            ethertype,
            flex_bytes: outer,
            l3_offset,
            l3: L3::None,
            l4_offset: 0,
            l4: L4::None,
        };
        let (l3, l4_at) = match ethertype {
            ETHERTYPE_IPV4 => parse_ipv4(frame, l3_offset),
            ETHERTYPE_IPV6 => parse_ipv6(frame, l3_offset),
            _ => (L3::None, None),
        };
        info.l3 = l3;
        if let Some((off, proto)) = l4_at {
            let ports = be16(frame, off).zip(be16(frame, off + 2));
            // TCP needs its 20-byte header, UDP its 8 bytes, SCTP its 12-byte common header.
            let need = match proto {
                IPPROTO_TCP => 20,
                IPPROTO_UDP => 8,
                IPPROTO_SCTP => 12,
                _ => usize::MAX,
            };
            if let Some((s, d)) = ports {
                if frame.len().saturating_sub(off) >= need {
                    info.l4_offset = off;
                    info.l4 = match proto {
                        IPPROTO_TCP => L4::Tcp { src: s, dst: d },
                        IPPROTO_UDP => L4::Udp { src: s, dst: d },
                        _ => L4::Sctp { src: s, dst: d },
                    };
                }
            }
        }
        Ok(info)
    }

    /// True for a multicast destination (group bit set), including broadcast.
    pub fn is_multicast(&self) -> bool {
        self.dst_mac[0] & 1 == 1
    }

    /// True for the broadcast destination ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        self.dst_mac == [0xff; 6]
    }

    /// VLAN ID (12 bits) if tagged.
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci.map(|t| t & 0x0FFF)
    }

    /// Packet-type bits for RX descriptor dword 0 (facts §6.1; already in bit positions 16:4).
    pub fn packet_type(&self) -> u16 {
        let mut t = match self.l3 {
            L3::None => 0,
            L3::Ipv4 { options, .. } => ptype::IPV4 | if options { ptype::IPV4_EX } else { 0 },
            L3::Ipv6 { ext, .. } => ptype::IPV6 | if ext { ptype::IPV6_EX } else { 0 },
        };
        t |= match self.l4 {
            L4::None => 0,
            L4::Tcp { .. } => ptype::TCP,
            L4::Udp { .. } => ptype::UDP,
            L4::Sctp { .. } => ptype::SCTP,
        };
        t
    }
}

/// Returns the L3 summary and, if a transport header should follow, (offset, protocol).
fn parse_ipv4(f: &[u8], off: usize) -> (L3, Option<(usize, u8)>) {
    let Some(&vihl) = f.get(off) else {
        return (L3::None, None);
    };
    let ihl = usize::from(vihl & 0x0F) * 4;
    if vihl >> 4 != 4 || ihl < 20 || f.len() < off + ihl {
        return (L3::None, None);
    }
    let (Some(flags_frag), Some(&proto), Some(src), Some(dst)) = (
        be16(f, off + 6),
        f.get(off + 9),
        arr::<4>(f, off + 12),
        arr::<4>(f, off + 16),
    ) else {
        return (L3::None, None);
    };
    let fragment = flags_frag & 0x3FFF != 0; // MF or a non-zero offset
    let l3 = L3::Ipv4 {
        src,
        dst,
        proto,
        options: ihl > 20,
        fragment,
    };
    let l4 = if fragment {
        None
    } else {
        Some((off + ihl, proto))
    };
    (l3, l4)
}

fn parse_ipv6(f: &[u8], off: usize) -> (L3, Option<(usize, u8)>) {
    let (Some(&v), Some(&first_nh), Some(src), Some(dst)) = (
        f.get(off),
        f.get(off + 6),
        arr::<16>(f, off + 8),
        arr::<16>(f, off + 24),
    ) else {
        return (L3::None, None);
    };
    if v >> 4 != 6 {
        return (L3::None, None);
    }
    let mut nh = first_nh;
    let mut at = off + 40;
    let mut ext = false;
    let mut fragment = false;
    // Skip a bounded number of extension headers: hop-by-hop (0), routing (43),
    // fragment (44), destination options (60).
    for _ in 0..8 {
        match nh {
            0 | 43 | 60 => {
                let (Some(&next), Some(&len8)) = (f.get(at), f.get(at + 1)) else {
                    return (L3::None, None);
                };
                ext = true;
                nh = next;
                at += (usize::from(len8) + 1) * 8;
            }
            44 => {
                let Some(&next) = f.get(at) else {
                    return (L3::None, None);
                };
                ext = true;
                fragment = true;
                nh = next;
                at += 8;
            }
            _ => break,
        }
    }
    let l3 = L3::Ipv6 {
        src,
        dst,
        proto: nh,
        ext,
        fragment,
    };
    (l3, if fragment { None } else { Some((at, nh)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_udp(vlan: Option<u16>) -> Vec<u8> {
        let mut f = vec![0u8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        if let Some(t) = vlan {
            f.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            f.extend_from_slice(&t.to_be_bytes());
        }
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        f.extend_from_slice(&[0x12, 0x34, 0, 53, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn parses_tagged_udp() {
        let f = ipv4_udp(Some(0x2005));
        let i = FrameInfo::parse(&f).unwrap();
        assert_eq!(i.vlan_tci, Some(0x2005));
        assert_eq!(i.vlan_id(), Some(5));
        assert_eq!(i.l3_offset, 18);
        assert_eq!(i.flex_bytes, ETHERTYPE_VLAN);
        assert_eq!(
            i.l4,
            L4::Udp {
                src: 0x1234,
                dst: 53
            }
        );
        assert_eq!(i.packet_type(), ptype::IPV4 | ptype::UDP);
    }

    #[test]
    fn every_truncation_is_safe() {
        let f = ipv4_udp(Some(7));
        for n in 0..f.len() {
            let r = FrameInfo::parse(&f[..n]);
            if n < 18 {
                assert!(r.is_err(), "len {n}");
            } else {
                let i = r.unwrap();
                // The UDP header needs all 8 bytes.
                assert_eq!(i.l4 != L4::None, n == f.len(), "len {n}");
            }
        }
    }

    #[test]
    fn fragments_have_no_ports() {
        let mut f = ipv4_udp(None);
        f[14 + 6] = 0x20; // MF
        let i = FrameInfo::parse(&f).unwrap();
        assert!(matches!(i.l3, L3::Ipv4 { fragment: true, .. }));
        assert_eq!(i.l4, L4::None);
    }

    #[test]
    fn bad_ihl_is_not_ip() {
        let mut f = ipv4_udp(None);
        f[14] = 0x44;
        assert_eq!(FrameInfo::parse(&f).unwrap().l3, L3::None);
    }

    #[test]
    fn ipv6_with_hop_by_hop_then_tcp() {
        let mut f = vec![0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xDD];
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[6] = 0; // hop-by-hop
        ip[8] = 0xfe;
        ip[24] = 0xff;
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]); // HBH: next TCP, len 0 -> 8 bytes
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&443u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        f.extend_from_slice(&tcp);
        let i = FrameInfo::parse(&f).unwrap();
        assert!(i.is_multicast());
        assert!(matches!(
            i.l3,
            L3::Ipv6 {
                proto: 6,
                ext: true,
                ..
            }
        ));
        assert_eq!(i.l4, L4::Tcp { src: 443, dst: 80 });
        assert_eq!(i.packet_type(), ptype::IPV6 | ptype::IPV6_EX | ptype::TCP);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let mut buf = [0u8; 96];
        for round in 0..3000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Force interesting EtherTypes half the time.
            if round % 2 == 0 {
                buf[12..14].copy_from_slice(&[0x08, 0x00]);
                buf[14] = 0x40 | (buf[14] & 0x0F);
            } else if round % 3 == 0 {
                buf[12..14].copy_from_slice(&[0x86, 0xDD]);
                buf[14] = 0x60;
            }
            let n = (x as usize) % buf.len();
            let _ = FrameInfo::parse(&buf[..n]);
        }
    }
}
